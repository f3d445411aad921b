"""Webhook secrets at rest (DESIGN §8): the database files and the log hold no
secret in any encoding the service uses, and deliveries still sign with it."""

from __future__ import annotations

import base64
import contextlib
import logging
import sqlite3
import stat
import subprocess
import threading

import psycopg2
import pytest
from conftest import BACKEND

from hookline import signing
from hookline.client import DeliveryState, RotateWebhookSecretRequest, SendTestEventRequest

from .helpers import make_webhook, unique, wait_delivery


def secret_encodings(secret: str) -> list[bytes]:
    """Every form a secret takes inside hookline: the whsec_ string, its base64
    part, the raw HMAC key, and that key as hex and as URL-safe base64."""
    encoded = secret.removeprefix(signing.SECRET_PREFIX)
    key = base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    urlsafe = base64.urlsafe_b64encode(key)
    return [
        secret.encode(),
        encoded.encode(),
        encoded.rstrip("=").encode(),
        key,
        key.hex().encode(),
        key.hex().upper().encode(),
        urlsafe,
        urlsafe.rstrip(b"="),
    ]


def assert_absent(data: bytes, secrets: list[str], where: str) -> None:
    for secret in secrets:
        # A bare bool: pytest would print all of `data` for a failing `in`.
        leaked = any(form in data for form in secret_encodings(secret))
        assert not leaked, f"a webhook secret appears in {where}"


def test_secrets_are_in_no_database_file_or_log_line_and_still_sign(client, receiver, hookline_app, caplog):
    # The worker and runner log from their own threads; caplog's handler sits on
    # the root logger, so DEBUG there (and on hookline's loggers) sees them all.
    caplog.set_level(logging.DEBUG)
    for name in ("hookline", "hookline.api", "hookline.delivery", "hookline.jobs", "hookline.retention"):
        caplog.set_level(logging.DEBUG, logger=name)

    generated_path, imported_path = "/enc-" + unique(), "/enc-imported-" + unique()
    receiver.respond(generated_path, [500, 200])  # a failed attempt and its retry log too
    generated = make_webhook(client, receiver.url(generated_path))
    imported_secret = signing.generate_secret()
    imported = make_webhook(client, receiver.url(imported_path), secret=imported_secret)
    assert imported.secret == imported_secret
    rotated = client.webhooks.RotateWebhookSecret(RotateWebhookSecretRequest(id=generated.webhook.id)).secret
    secrets = [generated.secret, rotated, imported_secret]

    sent = [
        client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
        for hook in (generated.webhook, imported.webhook)
    ]
    for s in sent:
        assert wait_delivery(client, s.delivery.id).state == DeliveryState.DELIVERY_STATE_SUCCEEDED

    # Decryption round-trips: the receiver verifies with the secrets it was given
    # (during the rotation's grace period the old one still signs too).
    *_, last = receiver.wait_for(generated_path, 2)
    signing.verify(last.body, last.headers, rotated)
    signing.verify(last.body, last.headers, generated.secret)
    [request] = receiver.wait_for(imported_path, 1)
    signing.verify(request.body, request.headers, imported_secret)

    # Every log line of creation, rotation and delivery, including the worker's.
    assert any(r.name == "hookline.delivery" and r.thread != threading.get_ident() for r in caplog.records), (
        "the delivery worker's log lines were not captured"
    )
    lines = [caplog.text] + [f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records]
    assert_absent("\n".join(lines).encode("utf-8", "surrogateescape"), secrets, "a log line")

    dump, stored = _dump(hookline_app.settings, secrets)
    assert_absent(dump.encode(), secrets, "a dump of the database")
    assert stored and all(value.startswith("v1:") for value in stored)


def _dump(settings, secrets: list[str]) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    """A dump of the whole database and the stored secrets; on SQLite the raw
    files (write-ahead log included) are checked on the way."""
    if settings.database:
        dump = subprocess.run(["pg_dump", settings.database], capture_output=True, text=True, check=True).stdout
        with contextlib.closing(psycopg2.connect(settings.database)) as db, db.cursor() as cursor:
            cursor.execute("SELECT secret FROM webhook_secret")
            return dump, [value for (value,) in cursor.fetchall()]
    db_path = settings.data_dir / "hookline.db"
    for suffix in ("", "-wal", "-shm"):
        path = db_path.with_name(db_path.name + suffix)
        if path.exists():
            assert_absent(path.read_bytes(), secrets, path.name)
    with contextlib.closing(sqlite3.connect(db_path)) as db:
        dump = "\n".join(db.iterdump())
        return dump, [value for (value,) in db.execute("SELECT secret FROM webhook_secret")]


@pytest.mark.skipif(BACKEND != "sqlite", reason="the master key file belongs to the embedded default")
def test_the_embedded_default_keeps_its_master_key_private(hookline_app):
    key_file = hookline_app.settings.data_dir / "master.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = base64.urlsafe_b64decode(key_file.read_text().strip())
    assert len(key) == 32

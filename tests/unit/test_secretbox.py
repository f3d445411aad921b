"""Sealing webhook secrets, and the master key checks a server makes at startup."""

from __future__ import annotations

import base64
import sqlite3
import stat
from contextlib import closing
from pathlib import Path

import pytest

from hookline import signing
from hookline.server import secretbox
from hookline.server.app import Hookline, StartupError
from hookline.server.secretbox import SealError, SecretBox
from hookline.server.settings import Settings
from hookline.server.storage import models, webhooks

# --- SecretBox ------------------------------------------------------------------------


@pytest.fixture
def box() -> SecretBox:
    return SecretBox.from_text(secretbox.generate_key())


def test_a_sealed_secret_opens_to_itself_and_hides_it(box: SecretBox) -> None:
    secret = signing.generate_secret()
    sealed = box.seal("wh_1", secret)
    assert sealed.startswith("v1:")
    assert secret not in sealed and secret.removeprefix("whsec_") not in sealed
    assert box.open("wh_1", sealed) == secret


def test_each_seal_uses_a_fresh_nonce(box: SecretBox) -> None:
    secret = signing.generate_secret()
    assert box.seal("wh_1", secret) != box.seal("wh_1", secret)


def test_a_secret_moved_to_another_webhook_does_not_open(box: SecretBox) -> None:
    sealed = box.seal("wh_1", signing.generate_secret())
    with pytest.raises(SealError, match="wh_2"):
        box.open("wh_2", sealed)


def test_another_key_does_not_open(box: SecretBox) -> None:
    sealed = box.seal("wh_1", signing.generate_secret())
    with pytest.raises(SealError):
        SecretBox.from_text(secretbox.generate_key()).open("wh_1", sealed)


def test_tampered_ciphertext_does_not_open(box: SecretBox) -> None:
    secret = signing.generate_secret()
    raw = bytearray(base64.urlsafe_b64decode(box.seal("wh_1", secret).removeprefix("v1:")))
    for index in (0, 12, len(raw) - 1):  # nonce, ciphertext, tag
        tampered = bytearray(raw)
        tampered[index] ^= 1
        with pytest.raises(SealError) as caught:
            box.open("wh_1", "v1:" + base64.urlsafe_b64encode(bytes(tampered)).decode())
        assert secret not in str(caught.value)
    with pytest.raises(SealError):
        box.open("wh_1", "v1:" + base64.urlsafe_b64encode(bytes(raw[:-1])).decode())  # truncated
    with pytest.raises(SealError):
        box.open("wh_1", secret)  # never sealed


def test_the_key_check_opens_only_with_its_key(box: SecretBox) -> None:
    check = box.key_check()
    assert box.matches(check)
    assert not SecretBox.from_text(secretbox.generate_key()).matches(check)
    # A sealed secret is not a key check, even under the same key.
    assert not box.matches(box.seal("wh_1", signing.generate_secret()))


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "0 bytes"),
        ("not base64!", "URL-safe base64"),
        (base64.urlsafe_b64encode(b"k" * 16).decode(), "16 bytes"),
        (base64.urlsafe_b64encode(b"k" * 33).decode(), "33 bytes"),
        (base64.b64encode(b"\xfb\xff" * 16).decode(), "URL-safe base64"),  # standard alphabet: + and /
    ],
)
def test_a_malformed_key_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        SecretBox.from_text(text)


def test_a_key_without_padding_or_with_a_newline_is_accepted() -> None:
    key = secretbox.generate_key()
    assert SecretBox.from_text(key.rstrip("=")).matches(SecretBox.from_text(key + "\n").key_check())


# --- the master key at startup ----------------------------------------------------------


def start(data_dir: Path, **fields: object) -> Hookline:
    """A server's storage and checks, without its gRPC port or background threads."""
    return Hookline(Settings(data_dir=data_dir, **fields))  # type: ignore[arg-type]


def test_the_embedded_default_creates_a_private_master_key_and_reuses_it(tmp_path: Path) -> None:
    start(tmp_path).stop()
    key_file = tmp_path / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    start(tmp_path).stop()
    assert key_file.read_text() == key
    # The same key given in HOOKLINE_MASTER_KEY opens the same database.
    start(tmp_path, master_key=key.strip()).stop()


def test_a_wrong_master_key_is_refused_and_leaves_the_data_dir_usable(tmp_path: Path) -> None:
    start(tmp_path).stop()
    with pytest.raises(StartupError, match="does not match the one this database was created with"):
        start(tmp_path, master_key=secretbox.generate_key())
    start(tmp_path).stop()  # the failed start released the data dir


def test_a_lost_master_key_file_is_refused_not_replaced(tmp_path: Path) -> None:
    start(tmp_path).stop()
    (tmp_path / "master.key").unlink()
    with pytest.raises(StartupError, match="master.key is missing.*restore the file"):
        start(tmp_path)
    assert not (tmp_path / "master.key").exists()


def test_a_shared_database_needs_hookline_master_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with pytest.raises(StartupError, match="HOOKLINE_MASTER_KEY"):
        start(tmp_path / "data", database=url)
    assert not (tmp_path / "shared.db").exists()
    assert not (tmp_path / "data" / "master.key").exists()

    key = secretbox.generate_key()
    start(tmp_path / "data", database=url, master_key=key).stop()
    assert not (tmp_path / "data" / "master.key").exists()  # only the embedded default keeps a key file
    with pytest.raises(StartupError, match="does not match.*HOOKLINE_MASTER_KEY"):
        start(tmp_path / "data", database=url, master_key=secretbox.generate_key())
    start(tmp_path / "data", database=url, master_key=key).stop()


def test_a_malformed_master_key_names_where_it_came_from(tmp_path: Path) -> None:
    short = base64.urlsafe_b64encode(b"k" * 16).decode()
    with pytest.raises(StartupError, match="HOOKLINE_MASTER_KEY is malformed: it decodes to 16 bytes"):
        start(tmp_path, master_key=short)
    start(tmp_path, master_key=secretbox.generate_key()).stop()  # a database; its key goes in the file
    (tmp_path / "master.key").write_text("not a key\n")
    with pytest.raises(StartupError, match=r"master\.key is malformed: it is not URL-safe base64"):
        start(tmp_path)


def test_secrets_stored_in_the_clear_by_an_older_server_are_encrypted_at_start(tmp_path: Path) -> None:
    secret = signing.generate_secret()
    app = start(tmp_path)
    models.WebhookSecret.insert(webhook_id="wh_old", secret=secret, create_time=0).execute()
    app.stop()

    app = start(tmp_path)
    try:
        [row] = models.WebhookSecret.select().where(models.WebhookSecret.webhook_id == "wh_old")
        assert webhooks.unseal(row) == secret
    finally:
        app.stop()
    with closing(sqlite3.connect(tmp_path / "hookline.db")) as db:
        [(stored,)] = db.execute("SELECT secret FROM webhook_secret WHERE webhook_id = 'wh_old'")
    assert stored.startswith("v1:") and secret not in stored

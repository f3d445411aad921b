"""Webhook and webhook-secret queries."""

from __future__ import annotations

import json
from typing import Any

from peewee import IntegrityError

from .. import events, ids, secretbox
from ..errors import AlreadyExists, FailedPrecondition
from . import deliveries
from . import models as m
from .database import now_ms
from .lookup import webhook_row
from .paging import paginate
from .records import Delivery, Event, Webhook


def seal(webhook_id: str, secret: str) -> str:
    """How a secret is stored: encrypted, bound to its webhook."""
    return secretbox.current().seal(webhook_id, secret)


def unseal(row: m.WebhookSecret) -> str:
    return open_sealed(row.webhook_id, row.secret)


def open_sealed(webhook_id: str, sealed: str) -> str:
    """A webhook's secret from how it is stored (see seal)."""
    return secretbox.current().open(webhook_id, sealed)


def seal_plaintext_secrets() -> int:
    """Encrypt secrets stored in the clear by servers older than encryption at
    rest; returns how many. Sealed values all start with the version prefix."""
    count = 0
    with m.db.atomic():
        rows = list(m.WebhookSecret.select().where(~m.WebhookSecret.secret.startswith(secretbox.VERSION)))
        for row in rows:
            m.WebhookSecret.update(secret=seal(row.webhook_id, row.secret)).where(
                (m.WebhookSecret.id == row.id) & (m.WebhookSecret.secret == row.secret)
            ).execute()
            count += 1
    return count


def get_webhook(space_id: str, ref: str) -> Webhook:
    return Webhook.from_row(webhook_row(space_id, ref))


def resolve_ids(space_id: str, refs: list[str]) -> list[str]:
    """Ids of the webhooks named by id or alias, in order; NOT_FOUND for any unknown."""
    return [webhook_row(space_id, ref).id for ref in refs]


def list_webhooks(
    space_id: str, page_size: int, page_token: str, only_ids: list[str] | None = None
) -> tuple[list[Webhook], str]:
    q = m.Webhook.select().where(m.Webhook.space_id == space_id)
    if only_ids is not None:
        q = q.where(m.Webhook.id.in_(only_ids))
    return paginate(q, m.Webhook.id, page_size, page_token, [only_ids], Webhook.from_row)


def _duplicate(alias: str) -> AlreadyExists:
    return AlreadyExists(f"a webhook with alias {alias!r} already exists in this space")


def create_webhook(space_id: str, fields: dict[str, Any], secret: str) -> Webhook:
    now = now_ms()
    webhook_id = ids.new_id("wh")
    row = dict(fields, event_types=json.dumps(fields["event_types"]), headers=json.dumps(fields["headers"]))
    try:
        with m.db.atomic():
            m.Webhook.insert(id=webhook_id, space_id=space_id, create_time=now, update_time=now, **row).execute()
            m.WebhookSecret.insert(webhook_id=webhook_id, secret=seal(webhook_id, secret), create_time=now).execute()
    except IntegrityError:
        raise _duplicate(fields["alias"]) from None
    return get_webhook(space_id, webhook_id)


def update_webhook(space_id: str, ref: str, fields: dict[str, Any]) -> Webhook:
    """Replace the given fields. Disabling fails the webhook's PENDING deliveries."""
    try:
        with m.db.atomic():
            row = webhook_row(space_id, ref)
            values = dict(fields)
            for key in ("event_types", "headers"):
                if key in values:
                    values[key] = json.dumps(values[key])
            if "enabled" in values:
                if values["enabled"]:
                    values["disabled_reason"] = ""
                    values["failing_since"] = None  # a fresh start for auto-disable
                elif row.enabled:
                    deliveries.fail_pending_of_webhook(row.id, "webhook disabled")
            if values:
                m.Webhook.update(update_time=now_ms(), **values).where(m.Webhook.id == row.id).execute()
    except IntegrityError:
        raise _duplicate(fields.get("alias", "")) from None
    return get_webhook(space_id, row.id)


def delete_webhook(space_id: str, ref: str) -> None:
    with m.db.atomic():
        row = webhook_row(space_id, ref)
        deliveries.cancel_unfinished_of_webhook(row.id)
        m.FlowWebhook.delete().where(m.FlowWebhook.webhook_id == row.id).execute()
        m.WebhookSecret.delete().where(m.WebhookSecret.webhook_id == row.id).execute()
        m.Webhook.delete().where(m.Webhook.id == row.id).execute()


def rotate_secret(space_id: str, ref: str, secret: str, grace_ms: int) -> Webhook:
    """Make `secret` the signing secret; the ones signing now keep signing for `grace_ms`."""
    with m.db.atomic():
        row = webhook_row(space_id, ref)
        now = now_ms()
        m.WebhookSecret.update(expire_time=now + grace_ms).where(
            (m.WebhookSecret.webhook_id == row.id)
            & (m.WebhookSecret.expire_time.is_null() | (m.WebhookSecret.expire_time > now + grace_ms))
        ).execute()
        m.WebhookSecret.insert(webhook_id=row.id, secret=seal(row.id, secret), create_time=now).execute()
        m.Webhook.update(update_time=now).where(m.Webhook.id == row.id).execute()
    return get_webhook(space_id, row.id)


def space_webhooks(space_id: str) -> list[m.Webhook]:
    return list(m.Webhook.select().where(m.Webhook.space_id == space_id))


def flow_webhooks(flow_id: str) -> list[m.Webhook]:
    # Asked at every job's end: SQL written out rather than built each time.
    sql = (
        f'SELECT w.* FROM "webhook" w JOIN "flow_webhook" l ON l."webhook_id" = w."id" WHERE l."flow_id" = {m.db.param}'
    )
    return list(m.Webhook.raw(sql, flow_id))


def send_test_event(space_id: str, ref: str, message: str) -> tuple[Event, Delivery]:
    """A WEBHOOK.TEST event for this one webhook."""
    with m.db.atomic():
        row = webhook_row(space_id, ref)
        if not row.enabled:
            raise FailedPrecondition(f"webhook {row.alias!r} is disabled; enable it before sending a test event")
        event, [delivery] = deliveries.record_event(
            space_id,
            "WEBHOOK.TEST",
            lambda event_id, time_ms: events.test_event_body(row.id, row.alias, message, space_id, event_id, time_ms),
            [row],
            webhook_id=row.id,
            filtered=False,  # sent to this webhook alone, whatever its filter
        )
    return event, delivery


def disable(webhook_id: str, reason: str, now: int) -> None:
    """The service switches a webhook off ("gone", "failing") at `now`: its
    PENDING deliveries fail and the space's subscribers get WEBHOOK.DISABLED.
    Call inside the transaction that decided it."""
    row = m.Webhook.get_by_id(webhook_id)
    m.Webhook.update(enabled=False, disabled_reason=reason, update_time=now).where(m.Webhook.id == webhook_id).execute()
    deliveries.fail_pending_of_webhook(webhook_id, f"webhook disabled ({reason})", now)
    deliveries.record_event(
        row.space_id,
        "WEBHOOK.DISABLED",
        lambda event_id, time_ms: events.webhook_disabled_body(
            row.id, row.alias, reason, row.space_id, event_id, time_ms
        ),
        [w for w in deliveries.subscribers(space_webhooks(row.space_id), "WEBHOOK.DISABLED") if w.id != webhook_id],
        webhook_id=webhook_id,
        now=now,
    )

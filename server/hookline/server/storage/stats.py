"""Aggregates: for the metrics endpoint, and a webhook's health."""

from __future__ import annotations

from peewee import fn

from ..states import DeliveryState
from . import models as m
from .lookup import webhook_row
from .records import WebhookStats


def pending_deliveries() -> tuple[int, int | None]:
    """How many deliveries are PENDING and when the oldest of them was created."""
    count, oldest = (
        m.Delivery.select(fn.COUNT(m.Delivery.id), fn.MIN(m.Delivery.create_time))
        .where(m.Delivery.state == DeliveryState.PENDING)
        .tuples()
        .get()
    )
    return int(count), oldest


def jobs_by_state() -> dict[str, int]:
    return dict(m.Job.select(m.Job.state, fn.COUNT(m.Job.id)).group_by(m.Job.state).tuples())  # type: ignore[arg-type]


def webhook_stats(space_id: str, ref: str, since: int) -> WebhookStats:
    """The health of webhook `ref` (id or alias; NOT_FOUND unless in the space),
    with its deliveries created at or after `since` counted by state."""
    webhook = webhook_row(space_id, ref)
    rows = (
        m.Delivery.select(m.Delivery.state, fn.COUNT(m.Delivery.id))
        .where((m.Delivery.webhook_id == webhook.id) & (m.Delivery.create_time >= since))
        .group_by(m.Delivery.state)
        .tuples()
    )
    counts = dict.fromkeys(DeliveryState, 0)
    for state, count in rows:
        counts[DeliveryState(state)] = int(count)
    return WebhookStats(webhook.id, webhook.last_success_time, webhook.failing_since, since, counts)

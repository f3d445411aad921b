"""Aggregates for the metrics endpoint."""

from __future__ import annotations

from peewee import fn

from ..states import DeliveryState
from . import models as m


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

"""Purging what is older than the retention ages, in small batches so each
transaction is short and delivery never waits long behind it."""

from __future__ import annotations

from peewee import EXCLUDED, JOIN, Cast

from ..states import DELIVERY_UNFINISHED, JOB_ENDED
from . import models as m


def purge_deliveries(cutoff: int, batch: int) -> int:
    """Finished deliveries created before `cutoff`, with their attempts."""
    with m.db.atomic():
        ids = [
            d
            for (d,) in m.Delivery.select(m.Delivery.id)
            .where((m.Delivery.create_time < cutoff) & m.Delivery.state.not_in(DELIVERY_UNFINISHED))
            .limit(batch)
            .tuples()
        ]
        if ids:
            m.Attempt.delete().where(m.Attempt.delivery_id.in_(ids)).execute()
            m.Delivery.delete().where(m.Delivery.id.in_(ids)).execute()
    return len(ids)


def purge_events(cutoff: int, batch: int) -> int:
    """Events created before `cutoff` that no delivery refers to any more."""
    with m.db.atomic():
        ids = [
            e
            for (e,) in m.Event.select(m.Event.id)
            .join(m.Delivery, JOIN.LEFT_OUTER, on=(m.Delivery.event_id == m.Event.id))
            .where((m.Event.create_time < cutoff) & m.Delivery.id.is_null())
            .limit(batch)
            .tuples()
        ]
        if ids:
            m.Event.delete().where(m.Event.id.in_(ids)).execute()
    return len(ids)


def purge_changes(cutoff: int, batch: int) -> int:
    """Change-log entries older than `cutoff`; remembers how far the log was cut,
    so a stream cursor from before it is refused instead of silently skipping.
    The mark only moves forward, whichever purger (of any process) writes last."""
    with m.db.atomic():
        seqs = [
            s
            for (s,) in m.DeliveryChange.select(m.DeliveryChange.seq)
            .where(m.DeliveryChange.time < cutoff)
            .order_by(m.DeliveryChange.seq)
            .limit(batch)
            .tuples()
        ]
        if seqs:
            m.DeliveryChange.delete().where(m.DeliveryChange.seq.in_(seqs)).execute()
            m.Meta.insert(key=m.CHANGES_PURGED_THROUGH, value=str(seqs[-1])).on_conflict(
                conflict_target=[m.Meta.key],
                update={m.Meta.value: EXCLUDED.value},
                where=Cast(m.Meta.value, "BIGINT") < Cast(EXCLUDED.value, "BIGINT"),
            ).execute()
    return len(seqs)


def purge_jobs(cutoff: int, batch: int) -> int:
    """Jobs that ended before `cutoff`."""
    with m.db.atomic():
        ids = [
            j
            for (j,) in m.Job.select(m.Job.id)
            .where(m.Job.state.in_(JOB_ENDED) & (m.Job.end_time < cutoff))
            .limit(batch)
            .tuples()
        ]
        if ids:
            m.Job.delete().where(m.Job.id.in_(ids)).execute()
    return len(ids)

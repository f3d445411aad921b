"""Events, their deliveries, attempts and the delivery change log.

Every function that changes a delivery also appends to the change log in the
same transaction, so WatchDeliveries sees each change exactly once."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from peewee import fn

from .. import ids, notify
from ..errors import FailedPrecondition, NotFound
from . import models as m
from .database import now_ms
from .paging import paginate
from .records import Attempt, Change, Delivery, Event, SendTask

UNFINISHED = ("PENDING", "SENDING")


def subscribers(webhooks: Iterable[m.Webhook], event_type: str) -> list[m.Webhook]:
    return [w for w in webhooks if w.enabled and event_type in json.loads(w.event_types)]


def _log(changes: list[dict[str, Any]], delivery: Delivery, kind: str, time: int, attempt_id: str | None = None) -> None:
    changes.append(
        dict(
            space_id=delivery.space_id,
            delivery_id=delivery.id,
            webhook_id=delivery.webhook_id,
            flow_id=delivery.flow_id,
            job_id=delivery.job_id,
            kind=kind,
            delivery=delivery.snapshot(),
            attempt_id=attempt_id,
            time=time,
        )
    )


def _flush(changes: list[dict[str, Any]]) -> None:
    if changes:
        notify.after_commit("changes")
    for start in range(0, len(changes), 500):
        m.DeliveryChange.insert_many(changes[start : start + 500]).execute()


def record_event(
    space_id: str,
    event_type: str,
    build_body: Callable[[str, int], bytes],
    targets: Sequence[m.Webhook],
    *,
    job_id: str = "",
    flow_id: str = "",
    webhook_id: str = "",
) -> tuple[Event, list[Delivery]]:
    """Store an event and one PENDING delivery per target webhook.

    Call inside the transaction that caused the event (transactional outbox).
    `build_body(event_id, time_ms)` makes the body bytes, fixed from now on."""
    now = now_ms()
    event_id = ids.new_id("evt")
    body = build_body(event_id, now)
    m.Event.insert(
        id=event_id, space_id=space_id, event_type=event_type, job_id=job_id,
        flow_id=flow_id, webhook_id=webhook_id, body=body, create_time=now,
    ).execute()
    deliveries = [
        Delivery(
            id=ids.new_id("dlv"), space_id=space_id, webhook_id=w.id, event_id=event_id,
            event_type=event_type, job_id=job_id, flow_id=flow_id, state="PENDING",
            attempt_count=0, next_attempt_time=now, last_status_code=0, last_error="",
            create_time=now, update_time=now,
        )
        for w in targets
    ]
    rows = [dataclasses.asdict(d) for d in deliveries]
    for start in range(0, len(rows), 500):
        m.Delivery.insert_many(rows[start : start + 500]).execute()
    changes: list[dict[str, Any]] = []
    for d in deliveries:
        _log(changes, d, "QUEUED", now)
    _flush(changes)
    if deliveries:
        notify.after_commit("deliveries")
    event = Event(id=event_id, space_id=space_id, event_type=event_type, job_id=job_id,
                  flow_id=flow_id, webhook_id=webhook_id, body=body, create_time=now)
    return event, deliveries


def get_event(space_id: str, event_id: str) -> Event:
    row = m.Event.get_or_none((m.Event.id == event_id) & (m.Event.space_id == space_id))
    if row is None:
        raise NotFound(f"event {event_id!r} not found")
    return Event.from_row(row)


def list_events(space_id: str, page_size: int, page_token: str, *, event_type: str = "",
                job_id: str = "", flow_id: str = "", after: int | None = None,
                before: int | None = None) -> tuple[list[Event], str]:
    q = m.Event.select().where(m.Event.space_id == space_id)
    if event_type:
        q = q.where(m.Event.event_type == event_type)
    if job_id:
        q = q.where(m.Event.job_id == job_id)
    if flow_id:
        q = q.where(m.Event.flow_id == flow_id)
    if after is not None:
        q = q.where(m.Event.create_time >= after)
    if before is not None:
        q = q.where(m.Event.create_time < before)
    filters = [event_type, job_id, flow_id, after, before]
    return paginate(q, m.Event.id, page_size, page_token, filters, Event.from_row)


def get_delivery(space_id: str, delivery_id: str) -> Delivery:
    row = m.Delivery.get_or_none((m.Delivery.id == delivery_id) & (m.Delivery.space_id == space_id))
    if row is None:
        raise NotFound(f"delivery {delivery_id!r} not found")
    return Delivery.from_row(row)


def list_deliveries(space_id: str, page_size: int, page_token: str, *, webhook_id: str = "",
                    job_id: str = "", event_id: str = "", state: str = "",
                    after: int | None = None, before: int | None = None) -> tuple[list[Delivery], str]:
    q = m.Delivery.select().where(m.Delivery.space_id == space_id)
    if webhook_id:
        q = q.where(m.Delivery.webhook_id == webhook_id)
    if job_id:
        q = q.where(m.Delivery.job_id == job_id)
    if event_id:
        q = q.where(m.Delivery.event_id == event_id)
    if state:
        q = q.where(m.Delivery.state == state)
    if after is not None:
        q = q.where(m.Delivery.create_time >= after)
    if before is not None:
        q = q.where(m.Delivery.create_time < before)
    filters = [webhook_id, job_id, event_id, state, after, before]
    return paginate(q, m.Delivery.id, page_size, page_token, filters, Delivery.from_row)


def list_attempts(space_id: str, delivery_id: str, page_size: int, page_token: str) -> tuple[list[Attempt], str]:
    get_delivery(space_id, delivery_id)
    q = m.Attempt.select().where(m.Attempt.delivery_id == delivery_id)
    return paginate(q, m.Attempt.id, page_size, page_token, [delivery_id], Attempt.from_row)


def _update(delivery: Delivery, changes: list[dict[str, Any]], kind: str, now: int,
            attempt_id: str | None = None, **fields: Any) -> Delivery:
    for key, value in fields.items():
        if hasattr(delivery, key):  # columns such as the lease are not part of the record
            setattr(delivery, key, value)
    delivery.update_time = now
    m.Delivery.update(update_time=now, **fields).where(m.Delivery.id == delivery.id).execute()
    _log(changes, delivery, kind, now, attempt_id)
    return delivery


def retry_delivery(space_id: str, delivery_id: str) -> Delivery:
    """Queue one more attempt now (RetryDelivery)."""
    with m.db.atomic():
        delivery = get_delivery(space_id, delivery_id)
        if delivery.state in ("SENDING", "CANCELED"):
            raise FailedPrecondition(
                f"delivery {delivery_id} is {delivery.state}; it can be retried once it is not "
                "SENDING, and never once CANCELED"
            )
        hook = m.Webhook.get_or_none(m.Webhook.id == delivery.webhook_id)
        if hook is None or not hook.enabled:
            raise FailedPrecondition(
                f"webhook {delivery.webhook_id} is disabled; enable it (UpdateWebhook) before retrying"
            )
        now = now_ms()
        changes: list[dict[str, Any]] = []
        _update(delivery, changes, "RETRY_SCHEDULED", now, state="PENDING", next_attempt_time=now)
        _flush(changes)
        notify.after_commit("deliveries")
    return delivery


def recover_deliveries(space_id: str, webhook_id: str, since: int) -> int:
    """Re-queue every FAILED delivery of a webhook created since `since`."""
    with m.db.atomic():
        rows = list(
            m.Delivery.select().where(
                (m.Delivery.space_id == space_id) & (m.Delivery.webhook_id == webhook_id)
                & (m.Delivery.state == "FAILED") & (m.Delivery.create_time >= since)
            )
        )
        now = now_ms()
        changes: list[dict[str, Any]] = []
        for row in rows:
            _update(Delivery.from_row(row), changes, "RETRY_SCHEDULED", now,
                    state="PENDING", next_attempt_time=now)
        _flush(changes)
        notify.after_commit("deliveries")
    return len(rows)


def fail_pending_of_webhook(webhook_id: str, reason: str) -> None:
    """A disabled webhook's PENDING deliveries become FAILED (in-flight ones finish)."""
    _finish_unfinished(webhook_id, ("PENDING",), "FAILED", reason)


def cancel_unfinished_of_webhook(webhook_id: str) -> None:
    """A deleted webhook's unfinished deliveries become CANCELED, which is final."""
    _finish_unfinished(webhook_id, UNFINISHED, "CANCELED", "webhook deleted")


def _finish_unfinished(webhook_id: str, states: tuple[str, ...], state: str, reason: str) -> None:
    rows = m.Delivery.select().where((m.Delivery.webhook_id == webhook_id) & (m.Delivery.state.in_(states)))
    now = now_ms()
    changes: list[dict[str, Any]] = []
    for row in rows:
        _update(Delivery.from_row(row), changes, state, now, state=state,
                next_attempt_time=None, last_error=reason, lease_expire_time=None)
    _flush(changes)


# --- the delivery worker's side -------------------------------------------------


def claim_due(now: int, capacity: int, lease_ms: int, room: Callable[[str], int], per_webhook_cap: int) -> list[SendTask]:
    """Claim up to `capacity` due PENDING deliveries (SENDING, under a lease),
    at most `room(webhook_id)` for each webhook, with everything needed to send them.

    Candidates are ranked within their webhook, so a webhook with a large backlog
    cannot crowd the others out of a claim."""
    if capacity <= 0:
        return []
    with m.db.atomic():
        rank = fn.ROW_NUMBER().over(partition_by=[m.Delivery.webhook_id], order_by=[m.Delivery.next_attempt_time])
        due = (
            m.Delivery.select(m.Delivery.id, m.Delivery.webhook_id, m.Delivery.next_attempt_time, rank.alias("rank"))
            .where((m.Delivery.state == "PENDING") & (m.Delivery.next_attempt_time <= now))
        )
        candidates = (
            m.Delivery.select(due.c.id, due.c.webhook_id)
            .from_(due)
            .where(due.c.rank <= per_webhook_cap)
            .order_by(due.c.next_attempt_time)
            .limit(capacity * 2)
            .tuples()
        )
        chosen: list[str] = []
        taken: dict[str, int] = {}
        for delivery_id, webhook_id in candidates:
            if len(chosen) >= capacity:
                break
            if taken.get(webhook_id, 0) < room(webhook_id):
                taken[webhook_id] = taken.get(webhook_id, 0) + 1
                chosen.append(delivery_id)
        if not chosen:
            return []
        rows = list(
            m.Delivery.update(state="SENDING", lease_expire_time=now + lease_ms, update_time=now)
            .where(m.Delivery.id.in_(chosen) & (m.Delivery.state == "PENDING"))
            .returning(m.Delivery)
            .execute()
        )
        if not rows:
            return []
        deliveries = [Delivery.from_row(r) for r in rows]
        hooks = {w.id: w for w in m.Webhook.select().where(m.Webhook.id.in_({d.webhook_id for d in deliveries}))}
        secrets = _active_secrets({d.webhook_id for d in deliveries}, now)
        bodies = dict(
            m.Event.select(m.Event.id, m.Event.body)
            .where(m.Event.id.in_({d.event_id for d in deliveries}))
            .tuples()
        )
        changes: list[dict[str, Any]] = []
        tasks = []
        for d in deliveries:
            d.state = "SENDING"
            _log(changes, d, "ATTEMPT_STARTED", now)
            hook = hooks[d.webhook_id]
            tasks.append(
                SendTask(
                    delivery=d, url=hook.url, headers=json.loads(hook.headers),
                    secrets=secrets.get(d.webhook_id, []), body=bytes(bodies[d.event_id]),
                    attempt_number=d.attempt_count + 1,
                )
            )
        _flush(changes)
    return tasks


def release(delivery_ids: Sequence[str]) -> None:
    """Give SENDING deliveries back unsent (graceful shutdown): PENDING, due now."""
    if not delivery_ids:
        return
    with m.db.atomic():
        rows = m.Delivery.select().where(m.Delivery.id.in_(list(delivery_ids)) & (m.Delivery.state == "SENDING"))
        now = now_ms()
        changes: list[dict[str, Any]] = []
        for row in list(rows):
            _update(Delivery.from_row(row), changes, "RETRY_SCHEDULED", now, state="PENDING",
                    next_attempt_time=now, lease_expire_time=None)
        _flush(changes)
        notify.after_commit("deliveries")


def _active_secrets(webhook_ids: set[str], now: int) -> dict[str, list[str]]:
    """Secrets that sign at `now`, newest first, per webhook."""
    from .webhooks import unseal  # the secret seam lives with the webhook queries

    rows = (
        m.WebhookSecret.select()
        .where(
            m.WebhookSecret.webhook_id.in_(webhook_ids)
            & (m.WebhookSecret.expire_time.is_null() | (m.WebhookSecret.expire_time > now))
        )
        .order_by(m.WebhookSecret.id.desc())
    )
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row.webhook_id, []).append(unseal(row))
    return found


@dataclass
class AttemptOutcome:
    """What one HTTP try gave and what happens next, as the worker decided it."""

    task: SendTask
    attempt: Attempt
    succeeded: bool
    next_attempt_time: int | None  # None: no retry left (FAILED) unless succeeded
    disable_reason: str = ""  # set when the response disables the webhook (410)


def record_outcomes(outcomes: Sequence[AttemptOutcome], now: int) -> list[Delivery]:
    """Store attempts and move their deliveries on, all in one transaction."""
    updated: list[Delivery] = []
    with m.db.atomic():
        m.Attempt.insert_many(
            [
                dict(a.attempt.__dict__, response_headers=json.dumps(a.attempt.response_headers))
                for a in outcomes
            ]
        ).execute()
        hooks = {
            w.id: w
            for w in m.Webhook.select(m.Webhook.id, m.Webhook.enabled).where(
                m.Webhook.id.in_({o.task.delivery.webhook_id for o in outcomes})
            )
        }
        states = dict(
            m.Delivery.select(m.Delivery.id, m.Delivery.state)
            .where(m.Delivery.id.in_([o.task.delivery.id for o in outcomes]))
            .tuples()
        )
        changes: list[dict[str, Any]] = []
        for o in outcomes:
            d = o.task.delivery
            a = o.attempt
            d.attempt_count = a.number
            d.last_status_code = a.status_code
            d.last_error = a.error
            common = dict(attempt_count=a.number, last_status_code=a.status_code,
                          last_error=a.error, lease_expire_time=None)
            _log(changes, d, "ATTEMPT_RESULT", now, a.id)
            hook = hooks.get(d.webhook_id)
            if states.get(d.id) != "SENDING":
                # Canceled (webhook deleted) or re-claimed after a lost lease meanwhile:
                # the attempt is recorded, the state is not ours to change.
                m.Delivery.update(attempt_count=a.number, last_status_code=a.status_code,
                                  last_error=a.error, update_time=now).where(
                    (m.Delivery.id == d.id) & (m.Delivery.attempt_count < a.number)).execute()
                continue
            if o.succeeded:
                _update(d, changes, "SUCCEEDED", now, state="SUCCEEDED", next_attempt_time=None, **common)
            elif hook is None or not hook.enabled or o.next_attempt_time is None:
                if hook is not None and not hook.enabled:
                    common["last_error"] = d.last_error = f"{a.error or 'HTTP ' + str(a.status_code)}; webhook disabled"
                _update(d, changes, "FAILED", now, state="FAILED", next_attempt_time=None, **common)
            else:
                _update(d, changes, "RETRY_SCHEDULED", now, state="PENDING",
                        next_attempt_time=o.next_attempt_time, **common)
            updated.append(d)
        _flush(changes)
    return updated


def release_expired(now: int) -> int:
    """SENDING deliveries whose lease ran out (their sender died) go back to
    PENDING, due now: at-least-once, never lost."""
    with m.db.atomic():
        rows = list(
            m.Delivery.select().where(
                (m.Delivery.state == "SENDING") & (m.Delivery.lease_expire_time < now)
            )
        )
        changes: list[dict[str, Any]] = []
        for row in rows:
            _update(Delivery.from_row(row), changes, "RETRY_SCHEDULED", now, state="PENDING",
                    next_attempt_time=now, lease_expire_time=None,
                    last_error="sender stopped before recording a result; sending again")
        _flush(changes)
        if rows:
            notify.after_commit("deliveries")
    return len(rows)


def next_due_time() -> int | None:
    return m.Delivery.select(fn.MIN(m.Delivery.next_attempt_time)).where(m.Delivery.state == "PENDING").scalar()


# --- the change log ---------------------------------------------------------------


def last_change_seq() -> int:
    return m.DeliveryChange.select(fn.MAX(m.DeliveryChange.seq)).scalar() or 0


def first_change_seq() -> int:
    return m.DeliveryChange.select(fn.MIN(m.DeliveryChange.seq)).scalar() or 0


def changes_after(space_id: str, seq: int, *, webhook_id: str = "", flow_id: str = "",
                  job_id: str = "", limit: int = 500) -> tuple[list[Change], int]:
    """Changes of a space after `seq` that match the filter, and the position
    reached (which moves on even when nothing matched)."""
    q = (
        m.DeliveryChange.select()
        .where((m.DeliveryChange.seq > seq))
        .order_by(m.DeliveryChange.seq)
        .limit(limit)
    )
    rows = list(q)
    if not rows:
        return [], seq
    reached = rows[-1].seq
    matching = [
        r for r in rows
        if r.space_id == space_id
        and (not webhook_id or r.webhook_id == webhook_id)
        and (not flow_id or r.flow_id == flow_id)
        and (not job_id or r.job_id == job_id)
    ]
    attempt_ids = [r.attempt_id for r in matching if r.attempt_id]
    attempts = {
        a.id: Attempt.from_row(a) for a in m.Attempt.select().where(m.Attempt.id.in_(attempt_ids))
    } if attempt_ids else {}
    changes = [
        Change(seq=r.seq, kind=r.kind, delivery=Delivery.from_snapshot(r.delivery),
               attempt=attempts.get(r.attempt_id) if r.attempt_id else None, time=r.time)
        for r in matching
    ]
    return changes, reached

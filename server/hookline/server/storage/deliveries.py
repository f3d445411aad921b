"""Events, their deliveries, attempts and the delivery change log.

Every function that changes a delivery also appends to the change log in the
same transaction, so WatchDeliveries sees each change exactly once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any

from peewee import fn

from .. import filters, ids, notify, subscriptions
from ..errors import FailedPrecondition, NotFound, shown
from ..states import DELIVERY_UNFINISHED, ChangeKind, DeliveryState
from . import models as m
from . import queries, statements
from .database import is_postgres, now_ms
from .lookup import webhook_row
from .paging import filtered, paginate
from .records import Attempt, Change, Delivery, Event


def subscribers(webhooks: Iterable[m.Webhook], event_type: str) -> list[m.Webhook]:
    """The enabled webhooks that subscribe to `event_type`, by name or pattern."""
    return [w for w in webhooks if w.enabled and subscriptions.subscribes(json.loads(w.event_types), event_type)]


def log_change(
    changes: list[dict[str, Any]], delivery: Delivery, kind: ChangeKind, time: int, attempt_id: str | None = None
) -> None:
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


# The field of a change-log entry's snapshot that makes it stand for two changes:
# an attempt's result (ATTEMPT_RESULT), the delivery then differing from the
# snapshot by the fields it holds, and at once what the result led to (the
# entry's kind, the delivery as the snapshot shows it). One row where there
# would be two, on the path every delivery takes.
AT_RESULT = "at_result"


def log_attempt_result(
    changes: list[dict[str, Any]],
    at_result: dict[str, Any],
    then: Delivery,
    kind: ChangeKind,
    time: int,
    attempt_id: str,
) -> None:
    """Log an attempt's result, the delivery's fields being `at_result` then, and
    the change it led to at once (`kind`, the delivery `then`), as one entry."""
    fields = vars(then)
    changed = {k: v for k, v in at_result.items() if fields[k] != v}
    changes.append(
        dict(
            space_id=then.space_id,
            delivery_id=then.id,
            webhook_id=then.webhook_id,
            flow_id=then.flow_id,
            job_id=then.job_id,
            kind=kind,
            delivery=json.dumps({**fields, AT_RESULT: changed}, separators=(",", ":")),
            attempt_id=attempt_id,
            time=time,
        )
    )


# Appends to the change log take this lock until they commit, so on PostgreSQL
# positions are handed out in commit order: a reader that has seen position N
# can never later find a smaller one committing behind it.
CHANGE_LOG_LOCK = 0x686C6367


def flush_changes(changes: list[dict[str, Any]]) -> None:
    """Append to the change log; call inside the transaction that made the changes."""
    if not changes:
        return
    if is_postgres():
        m.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (CHANGE_LOG_LOCK,))
    notify.after_commit("changes")
    queries.APPEND_CHANGES.execute(changes=changes)


class Outbox:
    """Events and their PENDING deliveries recorded in the caller's transaction
    (transactional outbox), written by `flush` with one statement per table
    however many there are, as the job runner ends jobs in batches."""

    def __init__(self) -> None:
        self._events: list[dict[str, Any]] = []
        self._deliveries: list[dict[str, Any]] = []
        self._changes: list[dict[str, Any]] = []

    def add(
        self,
        space_id: str,
        event_type: str,
        build_body: Callable[[str, int], bytes],
        targets: Sequence[m.Webhook],
        *,
        job_id: str = "",
        flow_id: str = "",
        webhook_id: str = "",
        now: int | None = None,
        filtered: bool = True,
    ) -> tuple[Event, list[Delivery]]:
        """An event and one PENDING delivery per target webhook (due `now`, by
        default the present) whose filter, if it has one, passes the event
        (unless `filtered` is False: an event meant for that webhook alone),
        written at `flush`. `build_body(event_id, time_ms)` makes the body
        bytes, fixed from now on."""
        now = now_ms() if now is None else now
        event_id = ids.new_id("evt")
        event = Event(
            id=event_id,
            space_id=space_id,
            event_type=event_type,
            job_id=job_id,
            flow_id=flow_id,
            webhook_id=webhook_id,
            body=build_body(event_id, now),
            create_time=now,
        )
        if filtered and any(w.filter for w in targets):
            message = filters.message_of(event.body)
            targets = [w for w in targets if filters.passes(w.id, w.filter, message)]
        self._events.append(vars(event))
        deliveries = [
            Delivery(
                id=ids.new_id("dlv"),
                space_id=space_id,
                webhook_id=w.id,
                event_id=event_id,
                event_type=event_type,
                job_id=job_id,
                flow_id=flow_id,
                state=DeliveryState.PENDING,
                attempt_count=0,
                next_attempt_time=now,
                last_status_code=0,
                last_error="",
                create_time=now,
                update_time=now,
            )
            for w in targets
        ]
        for d in deliveries:
            self._deliveries.append(vars(d))
            log_change(self._changes, d, ChangeKind.QUEUED, now)
        return event, deliveries

    def flush(self) -> None:
        """Write what was added (inside the transaction that caused the events)."""
        statements.insert_rows(m.Event, self._events)
        statements.insert_rows(m.Delivery, self._deliveries)
        flush_changes(self._changes)
        if self._deliveries:
            notify.after_commit("deliveries")
        self._events, self._deliveries, self._changes = [], [], []


def record_event(
    space_id: str,
    event_type: str,
    build_body: Callable[[str, int], bytes],
    targets: Sequence[m.Webhook],
    *,
    job_id: str = "",
    flow_id: str = "",
    webhook_id: str = "",
    now: int | None = None,
    filtered: bool = True,
) -> tuple[Event, list[Delivery]]:
    """Store an event and one PENDING delivery per target webhook whose filter
    passes it (see Outbox.add), at `now` (by default the present).

    Call inside the transaction that caused the event (transactional outbox).
    `build_body(event_id, time_ms)` makes the body bytes, fixed from now on."""
    outbox = Outbox()
    recorded = outbox.add(
        space_id,
        event_type,
        build_body,
        targets,
        job_id=job_id,
        flow_id=flow_id,
        webhook_id=webhook_id,
        now=now,
        filtered=filtered,
    )
    outbox.flush()
    return recorded


def get_event(space_id: str, event_id: str) -> Event:
    row = statements.first_where(m.Event, id=event_id, space_id=space_id)
    if row is None:
        raise NotFound(f"event {shown(event_id)} not found")
    return Event.from_row(row)


def list_events(
    space_id: str,
    page_size: int,
    page_token: str,
    *,
    event_type: str = "",
    job_id: str = "",
    flow_id: str = "",
    after: int | None = None,
    before: int | None = None,
    fits: Callable[[Event], bool] | None = None,
) -> tuple[list[Event], str]:
    q = filtered(
        m.Event.select().where(m.Event.space_id == space_id), m.Event,
        event_type=event_type, job_id=job_id, flow_id=flow_id, after=after, before=before,
    )  # fmt: skip
    filters = [event_type, job_id, flow_id, after, before]
    return paginate(q, m.Event.id, page_size, page_token, filters, Event.from_row, fits)


def get_delivery(space_id: str, delivery_id: str) -> Delivery:
    row = statements.first_where(m.Delivery, id=delivery_id, space_id=space_id)
    if row is None:
        raise NotFound(f"delivery {shown(delivery_id)} not found")
    return Delivery.from_row(row)


def list_deliveries(
    space_id: str,
    page_size: int,
    page_token: str,
    *,
    webhook_id: str = "",
    job_id: str = "",
    event_id: str = "",
    event_type: str = "",
    state: DeliveryState | None = None,
    after: int | None = None,
    before: int | None = None,
    fits: Callable[[Delivery], bool] | None = None,
    newest_first: bool = False,
) -> tuple[list[Delivery], str]:
    q = filtered(
        m.Delivery.select().where(m.Delivery.space_id == space_id), m.Delivery,
        webhook_id=webhook_id, job_id=job_id, event_id=event_id, event_type=event_type, state=state,
        after=after, before=before,
    )  # fmt: skip
    filters = [webhook_id, job_id, event_id, state or "", after, before]
    if event_type:  # only then, so tokens issued before this filter existed still work
        filters.append(event_type)
    return paginate(q, m.Delivery.id, page_size, page_token, filters, Delivery.from_row, fits, newest_first)


def list_attempts(
    space_id: str, delivery_id: str, page_size: int, page_token: str, fits: Callable[[Attempt], bool] | None = None
) -> tuple[list[Attempt], str]:
    get_delivery(space_id, delivery_id)
    q = m.Attempt.select().where(m.Attempt.delivery_id == delivery_id)
    return paginate(q, m.Attempt.id, page_size, page_token, [delivery_id], Attempt.from_row, fits)


def update_delivery(
    delivery: Delivery,
    changes: list[dict[str, Any]],
    kind: ChangeKind,
    now: int,
    attempt_id: str | None = None,
    **fields: Any,
) -> Delivery:
    for key, value in fields.items():
        if hasattr(delivery, key):  # columns such as the lease are not part of the record
            setattr(delivery, key, value)
    delivery.update_time = now
    m.Delivery.update(update_time=now, **fields).where(m.Delivery.id == delivery.id).execute()
    log_change(changes, delivery, kind, now, attempt_id)
    return delivery


def retry_delivery(space_id: str, delivery_id: str) -> Delivery:
    """Queue one more attempt now (RetryDelivery)."""
    with m.db.atomic():
        delivery = get_delivery(space_id, delivery_id)
        if delivery.state in (DeliveryState.SENDING, DeliveryState.CANCELED):
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
        update_delivery(
            delivery, changes, ChangeKind.RETRY_SCHEDULED, now, state=DeliveryState.PENDING, next_attempt_time=now
        )
        flush_changes(changes)
        notify.after_commit("deliveries")
    return delivery


def recover_deliveries(space_id: str, webhook_ref: str, since: int) -> int:
    """Re-queue every FAILED delivery of an enabled webhook created since `since`."""
    with m.db.atomic():
        hook = webhook_row(space_id, webhook_ref)
        if not hook.enabled:
            raise FailedPrecondition(f"webhook {shown(hook.alias)} is disabled; enable it (UpdateWebhook) first")
        rows = list(
            m.Delivery.select().where(
                (m.Delivery.space_id == space_id)
                & (m.Delivery.webhook_id == hook.id)
                & (m.Delivery.state == DeliveryState.FAILED)
                & (m.Delivery.create_time >= since)
            )
        )
        now = now_ms()
        changes: list[dict[str, Any]] = []
        for row in rows:
            update_delivery(
                Delivery.from_row(row),
                changes,
                ChangeKind.RETRY_SCHEDULED,
                now,
                state=DeliveryState.PENDING,
                next_attempt_time=now,
            )
        flush_changes(changes)
        notify.after_commit("deliveries")
    return len(rows)


def fail_pending_of_webhook(webhook_id: str, reason: str, now: int | None = None) -> None:
    """A disabled webhook's PENDING deliveries become FAILED (in-flight ones finish)."""
    _finish_unfinished(webhook_id, (DeliveryState.PENDING,), DeliveryState.FAILED, ChangeKind.FAILED, reason, now)


def cancel_unfinished_of_webhook(webhook_id: str) -> None:
    """A deleted webhook's unfinished deliveries become CANCELED, which is final."""
    _finish_unfinished(webhook_id, DELIVERY_UNFINISHED, DeliveryState.CANCELED, ChangeKind.CANCELED, "webhook deleted")


def _finish_unfinished(
    webhook_id: str,
    states: tuple[DeliveryState, ...],
    state: DeliveryState,
    kind: ChangeKind,
    reason: str,
    now: int | None = None,
) -> None:
    rows = m.Delivery.select().where((m.Delivery.webhook_id == webhook_id) & (m.Delivery.state.in_(states)))
    now = now_ms() if now is None else now
    changes: list[dict[str, Any]] = []
    for row in rows:
        update_delivery(
            Delivery.from_row(row),
            changes,
            kind,
            now,
            state=state,
            next_attempt_time=None,
            last_error=reason,
            lease_expire_time=None,
        )
    flush_changes(changes)


# --- the change log ---------------------------------------------------------------


def changes_purged_through() -> int:
    """The last change-log position retention has purged (0 if none): the changes
    after an earlier position are no longer all there."""
    row = m.Meta.get_or_none(m.Meta.key == m.CHANGES_PURGED_THROUGH)
    return int(row.value) if row else 0


def last_change_seq() -> int:
    """Where the change log ends: its last position, or the last one purged once
    retention has emptied it (positions never go back: see LogPositionField)."""
    last = m.DeliveryChange.select(fn.MAX(m.DeliveryChange.seq)).scalar() or 0
    return max(last, changes_purged_through())


def read_change_log(after: int, limit: int = 500) -> list[m.DeliveryChange]:
    """The next `limit` entries of the change log after position `after`, of
    every space, in order (what a process's one change feed reads). Positions
    are handed out in commit order (CHANGE_LOG_LOCK), so none can appear later
    below the last one read."""
    sql = _change_log_sql(m.db.param)
    return list(m.DeliveryChange.raw(sql, after, limit))


@lru_cache(maxsize=4)
def _change_log_sql(param: str) -> str:
    table = m.DeliveryChange._meta.table_name
    return f'SELECT * FROM "{table}" WHERE "seq" > {param} ORDER BY "seq" LIMIT {param}'


def as_changes(entries: Sequence[m.DeliveryChange]) -> list[Change]:
    """Change-log entries as Changes, in order (two for an entry that stands
    for an attempt's result and what it led to), their attempts read in one query."""
    attempt_ids = [e.attempt_id for e in entries if e.attempt_id]
    attempts = {a.id: Attempt.from_row(a) for a in statements.select_in(m.Attempt, "id", attempt_ids)}
    changes = []
    for e in entries:
        fields = json.loads(e.delivery)
        attempt = attempts.get(e.attempt_id) if e.attempt_id else None
        at_result = fields.pop(AT_RESULT, None)
        if at_result is not None:
            result = Delivery.from_fields({**fields, **at_result})
            changes.append(Change(e.seq, ChangeKind.ATTEMPT_RESULT, result, attempt, e.time, (e.seq - 1, 1)))
            attempt = None  # the attempt is the result's
        changes.append(Change(e.seq, ChangeKind(e.kind), Delivery.from_fields(fields), attempt, e.time, (e.seq, 0)))
    return changes


def matches(entry: m.DeliveryChange, space_id: str, webhook_id: str, flow_id: str, job_id: str) -> bool:
    """Whether a change-log entry is one a stream of `space_id` with this filter shows."""
    return (
        entry.space_id == space_id
        and (not webhook_id or entry.webhook_id == webhook_id)
        and (not flow_id or entry.flow_id == flow_id)
        and (not job_id or entry.job_id == job_id)
    )


def changes_after(
    space_id: str,
    seq: int,
    *,
    webhook_id: str = "",
    flow_id: str = "",
    job_id: str = "",
    through: int | None = None,
    limit: int = 500,
) -> tuple[list[Change], int]:
    """Changes of a space after `seq` (and at most `through`) that match the
    filter, and the position reached (which moves on even when nothing matched).
    `through` must be a position already read (see read_change_log): once the
    entries up to it are all read, the position reached is `through` itself."""
    q = m.DeliveryChange.select().where(m.DeliveryChange.seq > seq)
    if through is not None:
        q = q.where(m.DeliveryChange.seq <= through)
    rows = list(q.order_by(m.DeliveryChange.seq).limit(limit))
    if len(rows) < limit and through is not None:
        reached = through
    elif not rows:
        return [], seq
    else:
        reached = rows[-1].seq
    matching = [r for r in rows if matches(r, space_id, webhook_id, flow_id, job_id)]
    return as_changes(matching), reached

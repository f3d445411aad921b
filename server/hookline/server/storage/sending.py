"""The delivery worker's side of storage: claiming due deliveries under a
lease, recording attempts in batches, and giving back what a dead or stopping
worker held."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from peewee import fn

from .. import notify
from ..states import ChangeKind, DeliveryState
from . import models as m
from . import statements, webhooks
from .database import is_postgres
from .deliveries import flush_changes, log_change, update_delivery
from .records import Attempt, Delivery, SendTask, WebhookHealth

if TYPE_CHECKING:  # storage applies the delivery policy's decisions; it does not import the policy
    from ..delivery.outcome import Decision, Seen


def claim_due(
    now: int,
    capacity: int,
    lease_ms: int,
    choose: Callable[[Sequence[tuple[str, str]], int], list[str]],
    per_webhook_cap: int,
    blocked: Sequence[str] = (),
) -> list[SendTask]:
    """Claim up to `capacity` due PENDING deliveries (SENDING, under a lease),
    with everything needed to send them; `choose(candidates, capacity)` picks
    which of the candidates, (delivery id, webhook id) due earliest first.

    Candidates are the earliest due deliveries of webhooks not `blocked` (a
    window of capacity x per-webhook cap, so a claim costs the same whatever the
    backlog), at most `per_webhook_cap` of each, so one webhook's backlog cannot
    fill a whole claim, and a blocked webhook's backlog cannot hide the others'."""
    if capacity <= 0:
        return []
    postgres = is_postgres()
    with m.db.atomic():
        window = capacity * per_webhook_cap
        skipped = _padded(blocked)
        params = [DeliveryState.PENDING, now, *skipped, window, per_webhook_cap, capacity * 2]
        candidates = m.db.execute_sql(_candidates_sql(len(skipped), m.db.param), params).fetchall()
        chosen = choose(candidates, capacity)[:capacity]
        if not chosen:
            return []
        pending = DeliveryState.PENDING
        params = [DeliveryState.SENDING, now + lease_ms, now, *chosen, *([pending] if postgres else []), "", pending]
        rows = list(m.Delivery.raw(_take_sql(len(chosen), m.db.param, postgres), *params))
        if not rows:
            return []
        deliveries = [Delivery.from_row(r) for r in rows]
        hook_ids = {d.webhook_id for d in deliveries}
        hooks = {w.id: w for w in statements.select_in(m.Webhook, "id", hook_ids)}
        secrets = _active_secrets(hook_ids, now)
        bodies = {e.id: e.body for e in statements.select_in(m.Event, "id", {d.event_id for d in deliveries})}
        changes: list[dict[str, Any]] = []
        tasks = []
        for d in deliveries:
            hook = hooks.get(d.webhook_id)
            if hook is None or not hook.enabled:
                # Disabled while this delivery was held elsewhere (e.g. released by a dead worker).
                update_delivery(d, changes, ChangeKind.FAILED, now, state=DeliveryState.FAILED, next_attempt_time=None,
                                lease_expire_time=None, last_error="webhook disabled")  # fmt: skip
                continue
            d.state = DeliveryState.SENDING
            log_change(changes, d, ChangeKind.ATTEMPT_STARTED, now)
            tasks.append(
                SendTask(
                    delivery=d,
                    url=hook.url,
                    headers=json.loads(hook.headers),
                    secrets=secrets.get(d.webhook_id, []),
                    body=bytes(bodies[d.event_id]),
                    attempt_number=d.attempt_count + 1,
                    lease=now + lease_ms,
                    rate_limit_per_s=hook.rate_limit_per_s,
                )
            )
        flush_changes(changes)
    return tasks


# A claim runs several times a second: its SQL is built by Peewee once per
# shape (how many webhooks are full, how many deliveries are taken), not each time.


def _padded(webhook_ids: Sequence[str]) -> list[str]:
    """The ids padded with "" (no webhook's id) to a power of two, so that few
    shapes of the candidates' SQL are ever built."""
    if not webhook_ids:
        return []
    size = 1 << (len(webhook_ids) - 1).bit_length()
    return [*webhook_ids, *[""] * (size - len(webhook_ids))]


@lru_cache(maxsize=64)
def _candidates_sql(blocked: int, param: str) -> str:
    """Parameters: "PENDING", now, the blocked webhooks' ids, window, per-webhook cap, limit."""
    due_now = (m.Delivery.state == DeliveryState.PENDING) & (m.Delivery.next_attempt_time <= 0)
    if blocked:
        due_now &= m.Delivery.webhook_id.not_in([""] * blocked)
    earliest = (
        m.Delivery.select(m.Delivery.id, m.Delivery.webhook_id, m.Delivery.next_attempt_time)
        .where(due_now)
        .order_by(m.Delivery.next_attempt_time)
        .limit(1)
    )
    rank = fn.ROW_NUMBER().over(partition_by=[earliest.c.webhook_id], order_by=[earliest.c.next_attempt_time])
    due = m.Delivery.select(
        earliest.c.id, earliest.c.webhook_id, earliest.c.next_attempt_time, rank.alias("rank")
    ).from_(earliest)
    query = (
        m.Delivery.select(due.c.id, due.c.webhook_id)
        .from_(due)
        .where(due.c.rank <= 1)
        .order_by(due.c.next_attempt_time)
        .limit(1)
    )
    return query.sql()[0]


@lru_cache(maxsize=256)
def _take_sql(count: int, param: str, postgres: bool) -> str:
    """Parameters: "SENDING", lease expiry, now, the ids, ("PENDING" on PostgreSQL), "", "PENDING"."""
    return (
        m.Delivery.update(state=DeliveryState.SENDING, lease_expire_time=0, update_time=0)
        # The state as an expression, not the bare column: given the column, SQLite
        # picks the state index and scans every PENDING row instead of the ids' keys.
        .where(
            m.Delivery.id.in_(_lockable([""] * count, postgres))
            & (m.Delivery.state.concat("") == DeliveryState.PENDING)
        )
        .returning(m.Delivery)
        .sql()[0]
    )


def _lockable(delivery_ids: list[str], postgres: bool) -> Any:
    """The ids, or on PostgreSQL those of them no other process is claiming right now."""
    if not postgres:
        return delivery_ids
    return (
        m.Delivery.select(m.Delivery.id)
        .where(m.Delivery.id.in_(delivery_ids) & (m.Delivery.state == DeliveryState.PENDING))
        .for_update("FOR UPDATE SKIP LOCKED")  # type: ignore[arg-type]  # peewee takes the clause; its stubs say bool
    )


def _requeue(rows: Sequence[m.Delivery], now: int, **fields: Any) -> None:
    """SENDING deliveries back to PENDING, due now (in the caller's transaction)."""
    changes: list[dict[str, Any]] = []
    for row in rows:
        update_delivery(
            Delivery.from_row(row),
            changes,
            ChangeKind.RETRY_SCHEDULED,
            now,
            state=DeliveryState.PENDING,
            next_attempt_time=now,
            lease_expire_time=None,
            **fields,
        )
    flush_changes(changes)
    if rows:
        notify.after_commit("deliveries")


def release(delivery_ids: Sequence[str], now: int) -> None:
    """Give SENDING deliveries back unsent (graceful shutdown): PENDING, due `now`."""
    if not delivery_ids:
        return
    with m.db.atomic():
        rows = m.Delivery.select().where(
            m.Delivery.id.in_(list(delivery_ids)) & (m.Delivery.state == DeliveryState.SENDING)
        )
        _requeue(list(rows), now)


def _active_secrets(webhook_ids: set[str], now: int) -> dict[str, list[str]]:
    """Secrets that sign at `now`, newest first, per webhook."""
    rows = statements.select_in(m.WebhookSecret, "webhook_id", webhook_ids)
    found: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: r.id, reverse=True):
        if row.expire_time is None or row.expire_time > now:
            found.setdefault(row.webhook_id, []).append(webhooks.unseal(row))
    return found


@dataclass
class AttemptOutcome:
    """What one HTTP try gave; what it leads to is decided as it is recorded."""

    task: SendTask
    attempt: Attempt
    seen: Seen


# What a delivery's attempt leads to, given its webhook's state when it is recorded
# (delivery.outcome.decide, under the worker's retry policy).
Decide = Callable[["Seen", WebhookHealth | None], "Decision"]


@dataclass
class Recorded:
    """What recording a batch of outcomes did."""

    decisions: list[Decision]  # one per outcome, in order
    recovered: list[str]  # webhooks that were failing and succeeded again


def record_outcomes(outcomes: Sequence[AttemptOutcome], now: int, decide: Decide) -> Recorded:
    """Store attempts, and move their deliveries and webhooks on as `decide`
    says, all in one transaction. It is given each webhook's state as of now
    (disabled or deleted while the attempt was in flight, or failing), where a
    success anywhere in the batch ends the webhook's failing. A delivery whose
    lease this claim no longer holds has its attempt recorded, not its state.

    Also tracks each webhook's health (when it last succeeded, since when it
    has been failing); one that was failing and succeeds again has recovered
    (see expedite_retries)."""
    decisions: list[Decision] = []
    leases = {o.task.delivery.id: o.task.lease for o in outcomes}
    with m.db.atomic():
        statements.insert_rows(
            m.Attempt,
            [dict(vars(o.attempt), response_headers=json.dumps(o.attempt.response_headers)) for o in outcomes],
        )
        hooks = {w.id: w for w in statements.select_in(m.Webhook, "id", {o.task.delivery.webhook_id for o in outcomes})}
        held = {
            row.id
            for row in statements.select_in(m.Delivery, "id", leases)
            if row.state == DeliveryState.SENDING and row.lease_expire_time == leases[row.id]
        }
        succeeded = {o.task.delivery.webhook_id for o in outcomes if o.seen.ok}
        failed = {o.task.delivery.webhook_id for o in outcomes if not o.seen.ok} - succeeded
        health = {
            w.id: WebhookHealth(bool(w.enabled), None if w.id in succeeded else w.failing_since) for w in hooks.values()
        }
        disabling: dict[str, str] = {}  # webhook id: reason
        changes: list[dict[str, Any]] = []
        writes: list[tuple[Any, ...]] = []
        for o in outcomes:
            d = o.task.delivery
            a = o.attempt
            decision = decide(o.seen, health.get(d.webhook_id))
            decisions.append(decision)
            if decision.disable_webhook:
                disabling.setdefault(d.webhook_id, decision.disable_webhook)
                health[d.webhook_id] = dataclasses.replace(health[d.webhook_id], enabled=False)  # for the rest
            d.attempt_count = a.number
            d.last_status_code = a.status_code
            d.last_error = a.error
            log_change(changes, d, ChangeKind.ATTEMPT_RESULT, now, a.id)
            if d.id not in held:
                # Canceled (webhook deleted), or its lease lapsed and another claim holds it
                # now: the attempt is recorded, the state is not ours to change.
                m.Delivery.update(
                    attempt_count=a.number, last_status_code=a.status_code, last_error=a.error, update_time=now
                ).where((m.Delivery.id == d.id) & (m.Delivery.attempt_count < a.number)).execute()
                continue
            d.state, d.next_attempt_time, d.last_error = decision.state, decision.next_attempt_time, decision.error
            d.update_time = now
            writes.append((d.state, d.next_attempt_time, a.number, a.status_code, d.last_error, None, now, d.id))
            log_change(changes, d, decision.change, now)
        statements.update_rows(m.Delivery, OUTCOME_COLUMNS, ["id"], writes)
        recovered = [w for w in succeeded if w in hooks and hooks[w].failing_since is not None]
        _track_health(succeeded, failed, now)
        flush_changes(changes)
        # After the deliveries are written: a retry this batch scheduled before
        # its webhook's disabling fails with the webhook's other PENDING deliveries.
        for webhook_id, reason in disabling.items():
            webhooks.disable(webhook_id, reason, now)
    return Recorded(decisions, recovered)


def expedite_retries(webhook_id: str, now: int, limit: int = 500) -> int:
    """A webhook that was failing succeeded again: its deliveries waiting for a
    retry become due now rather than at their scheduled times, up to `limit` of
    them, earliest first (call again while it returns `limit`). Those its
    receiver asked to wait (429) keep their times. The worker's caps and the
    webhook's rate limit still pace them."""
    with m.db.atomic():
        waiting = (
            m.Delivery.select(m.Delivery.id)
            .where(
                (m.Delivery.webhook_id == webhook_id)
                & (m.Delivery.state == DeliveryState.PENDING)
                & (m.Delivery.next_attempt_time > now)
                & (m.Delivery.attempt_count > 0)
                & (m.Delivery.last_status_code != 429)
            )
            .order_by(m.Delivery.next_attempt_time)
            .limit(limit)
        )
        ids = [row.id for row in waiting]
        if not ids:
            return 0
        rows = (
            m.Delivery.update(next_attempt_time=now, update_time=now)
            .where(m.Delivery.id.in_(ids) & (m.Delivery.state == DeliveryState.PENDING))
            .returning(m.Delivery)
            .execute()
        )
        changes: list[dict[str, Any]] = []
        for row in rows:
            log_change(changes, Delivery.from_row(row), ChangeKind.RETRY_SCHEDULED, now)
        flush_changes(changes)
        if changes:
            notify.after_commit("deliveries")
    return len(ids)


# What recording an attempt's outcome writes to its delivery.
OUTCOME_COLUMNS = [
    "state", "next_attempt_time", "attempt_count", "last_status_code", "last_error", "lease_expire_time", "update_time",
]  # fmt: skip


def _track_health(succeeded: set[str], failed: set[str], now: int) -> None:
    if succeeded:
        statements.update_in(m.Webhook, {"last_success_time": now, "failing_since": None}, "id", succeeded)
    if failed:
        m.Webhook.update(failing_since=now).where(
            m.Webhook.id.in_(failed) & m.Webhook.failing_since.is_null()
        ).execute()


def release_expired(now: int, held: Sequence[str] = (), *, all_leases: bool = False) -> int:
    """SENDING deliveries whose lease ran out (their sender died) go back to
    PENDING, due now: at-least-once, never lost. `held` are those the caller is
    sending itself: not dead, only late (its process was stopped for a while),
    so they are left to it. `all_leases` releases every SENDING delivery (when no
    other process can hold one)."""
    with m.db.atomic():
        query = m.Delivery.select().where(m.Delivery.state == DeliveryState.SENDING)
        if not all_leases:
            query = query.where(m.Delivery.lease_expire_time < now)
        if held:
            query = query.where(m.Delivery.id.not_in(list(held)))
        rows = list(query)
        _requeue(rows, now, last_error="sender stopped before recording a result; sending again")
    return len(rows)


def next_due_time(skip_webhooks: Sequence[str] = ()) -> int | None:
    """When the next PENDING delivery falls due, ignoring webhooks that have no room."""
    query = m.Delivery.select(fn.MIN(m.Delivery.next_attempt_time)).where(m.Delivery.state == DeliveryState.PENDING)
    if skip_webhooks:
        query = query.where(m.Delivery.webhook_id.not_in(list(skip_webhooks)))
    return query.scalar()

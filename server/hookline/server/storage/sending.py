"""The delivery worker's side of storage: claiming due deliveries under a
lease, recording attempts in batches, and giving back what a dead or stopping
worker held."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import notify
from ..states import ChangeKind, DeliveryState
from . import models as m
from . import queries, webhooks
from .deliveries import flush_changes, log_attempt_result, log_change, update_delivery
from .records import Attempt, Delivery, SendTask, WebhookHealth
from .statements import padded

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
    with m.db.atomic():
        candidates = queries.DUE_CANDIDATES.rows(
            now=now,
            blocked=padded(blocked),
            window=capacity * per_webhook_cap,
            per_webhook=per_webhook_cap,
            limit=capacity * 2,
        )
        chosen = choose(candidates, capacity)[:capacity]
        if not chosen:
            return []
        lease = now + lease_ms
        deliveries = _deliveries(queries.TAKE_DUE.dicts(lease=lease, now=now, ids=chosen))
        if not deliveries:
            return []
        hook_ids = sorted({d.webhook_id for d in deliveries})
        hooks = {row["id"]: row for row in queries.SENDING_WEBHOOKS.dicts(ids=hook_ids)}
        secrets = _signing_secrets(hook_ids, now)
        event_ids = sorted({d.event_id for d in deliveries})
        bodies = {event_id: bytes(body) for event_id, body in queries.EVENT_BODIES.rows(ids=event_ids)}
        changes: list[dict[str, Any]] = []
        tasks = []
        for d in deliveries:
            hook = hooks.get(d.webhook_id)
            if hook is None or not hook["enabled"]:
                # Disabled while this delivery was held elsewhere (e.g. released by a dead worker).
                update_delivery(d, changes, ChangeKind.FAILED, now, state=DeliveryState.FAILED, next_attempt_time=None,
                                lease_expire_time=None, last_error="webhook disabled")  # fmt: skip
                continue
            log_change(changes, d, ChangeKind.ATTEMPT_STARTED, now)
            tasks.append(
                SendTask(
                    delivery=d,
                    url=hook["url"],
                    headers=json.loads(hook["headers"]),
                    secrets=secrets.get(d.webhook_id, []),
                    body=bodies[d.event_id],
                    attempt_number=d.attempt_count + 1,
                    lease=lease,
                    rate_limit_per_s=hook["rate_limit_per_s"],
                )
            )
        flush_changes(changes)
    return tasks


def _deliveries(rows: Sequence[dict[str, Any]]) -> list[Delivery]:
    """Delivery records of rows read with queries.DELIVERY_COLUMNS."""
    return [Delivery(**dict(row, state=DeliveryState(row["state"]))) for row in rows]


def _requeued(rows: Sequence[dict[str, Any]], now: int) -> None:
    """Log deliveries given back to PENDING, due now (in the caller's transaction)."""
    changes: list[dict[str, Any]] = []
    for d in _deliveries(rows):
        log_change(changes, d, ChangeKind.RETRY_SCHEDULED, now)
    flush_changes(changes)
    if rows:
        notify.after_commit("deliveries")


def release(delivery_ids: Sequence[str], now: int) -> None:
    """Give SENDING deliveries back unsent (graceful shutdown): PENDING, due `now`."""
    if not delivery_ids:
        return
    with m.db.atomic():
        _requeued(queries.RELEASE_UNSENT.dicts(now=now, ids=list(delivery_ids)), now)


def _signing_secrets(webhook_ids: list[str], now: int) -> dict[str, list[str]]:
    """Secrets that sign at `now`, newest first, per webhook."""
    found: dict[str, list[str]] = {}
    for webhook_id, sealed in queries.SIGNING_SECRETS.rows(webhook_ids=webhook_ids, now=now):
        found.setdefault(webhook_id, []).append(webhooks.open_sealed(webhook_id, sealed))
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
    with m.db.atomic():
        queries.INSERT_ATTEMPTS.execute(attempts=[_attempt_row(o.attempt) for o in outcomes])
        webhook_ids = sorted({o.task.delivery.webhook_id for o in outcomes})
        failing_since = {}  # of the webhooks that still exist: when they started failing, or None
        health: dict[str, WebhookHealth] = {}
        succeeded = {o.task.delivery.webhook_id for o in outcomes if o.seen.ok}
        for webhook_id, enabled, since in queries.WEBHOOK_HEALTH.rows(ids=webhook_ids):
            failing_since[webhook_id] = since
            health[webhook_id] = WebhookHealth(bool(enabled), None if webhook_id in succeeded else since)
        failed = {o.task.delivery.webhook_id for o in outcomes if not o.seen.ok} - succeeded
        disabling: dict[str, str] = {}  # webhook id: reason
        decisions: list[Decision] = []
        for o in outcomes:
            webhook_id = o.task.delivery.webhook_id
            decision = decide(o.seen, health.get(webhook_id))
            decisions.append(decision)
            if decision.disable_webhook:
                disabling.setdefault(webhook_id, decision.disable_webhook)
                health[webhook_id] = dataclasses.replace(health[webhook_id], enabled=False)  # for the rest
        held = set(
            delivery_id
            for (delivery_id,) in queries.RECORD_OUTCOMES.rows(
                now=now, outcomes=[_outcome_row(o, decision) for o, decision in zip(outcomes, decisions, strict=True)]
            )
        )
        changes: list[dict[str, Any]] = []
        for o, decision in zip(outcomes, decisions, strict=True):
            d, a = o.task.delivery, o.attempt
            d.attempt_count, d.last_status_code, d.last_error = a.number, a.status_code, a.error
            if d.id not in held:
                # Canceled (webhook deleted), or its lease lapsed and another claim holds it
                # now: the attempt is recorded, the state is not ours to change.
                log_change(changes, d, ChangeKind.ATTEMPT_RESULT, now, a.id)
                queries.RECORD_LATE_ATTEMPT.execute(
                    id=d.id, number=a.number, status_code=a.status_code, error=a.error, now=now
                )
                continue
            at_result = dict(vars(d))
            d.state, d.next_attempt_time, d.last_error = decision.state, decision.next_attempt_time, decision.error
            d.update_time = now
            log_attempt_result(changes, at_result, d, decision.change, now, a.id)
        recovered = [w for w in sorted(succeeded) if failing_since.get(w) is not None]
        _track_health(succeeded, failed, now)
        flush_changes(changes)
        # After the deliveries are written: a retry this batch scheduled before
        # its webhook's disabling fails with the webhook's other PENDING deliveries.
        for webhook_id, reason in disabling.items():
            webhooks.disable(webhook_id, reason, now)
    return Recorded(decisions, recovered)


def _attempt_row(a: Attempt) -> dict[str, Any]:
    return dict(vars(a), response_headers=json.dumps(a.response_headers))


def _outcome_row(o: AttemptOutcome, decision: Decision) -> dict[str, Any]:
    """What recording the attempt writes to its delivery (queries.RECORD_OUTCOMES)."""
    a = o.attempt
    return dict(
        id=o.task.delivery.id,
        lease=o.task.lease,
        state=decision.state,
        next_attempt_time=decision.next_attempt_time,
        attempt_count=a.number,
        last_status_code=a.status_code,
        last_error=decision.error,
    )


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


def _track_health(succeeded: set[str], failed: set[str], now: int) -> None:
    if succeeded:
        queries.WEBHOOKS_SUCCEEDED.execute(now=now, ids=sorted(succeeded))
    if failed:
        queries.WEBHOOKS_FAILED.execute(now=now, ids=sorted(failed))


def release_expired(now: int, held: Sequence[str] = (), *, all_leases: bool = False) -> int:
    """SENDING deliveries whose lease ran out (their sender died) go back to
    PENDING, due now: at-least-once, never lost. `held` are those the caller is
    sending itself: not dead, only late (its process was stopped for a while),
    so they are left to it. `all_leases` releases every SENDING delivery (when no
    other process can hold one)."""
    error = "sender stopped before recording a result; sending again"
    with m.db.atomic():
        if all_leases:
            rows = queries.RELEASE_ALL.dicts(now=now, error=error)
        else:
            rows = queries.RELEASE_LAPSED.dicts(now=now, error=error, held=padded(held))
        _requeued(rows, now)
    return len(rows)


def next_due_time(skip_webhooks: Sequence[str] = ()) -> int | None:
    """When the next PENDING delivery falls due, ignoring webhooks that have no room."""
    due: int | None = queries.NEXT_DUE.scalar(blocked=padded(skip_webhooks))
    return due

"""The delivery worker's side of storage, on a real database: leases given back,
attempts recorded with what each leads to."""

from __future__ import annotations

import functools
import random

from hookline.server.delivery import retry
from hookline.server.delivery.outcome import Fate, Policy, Seen, decide
from hookline.server.storage import deliveries, models, sending
from hookline.server.storage.records import Attempt, Delivery, SendTask
from hookline.server.storage.sending import AttemptOutcome

NOW = 1_800_000_000_000


def _delivery(delivery_id: str, **fields: object) -> None:
    values: dict[str, object] = dict(
        id=delivery_id, space_id="spc_1", webhook_id="wh_1", event_id="evt_1", event_type="JOB.COMPLETED",
        state="PENDING", next_attempt_time=NOW, create_time=NOW, update_time=NOW,
    )  # fmt: skip
    values.update(fields)
    models.Delivery.insert(**values).execute()


def _states() -> dict[str, str]:
    return {d.id: d.state for d in models.Delivery.select()}


def test_lapsed_leases_are_released_except_those_the_caller_still_holds(db: None) -> None:
    for name in ("dlv_mine", "dlv_dead", "dlv_live"):
        lease = NOW + 60_000 if name == "dlv_live" else NOW - 1
        _delivery(name, state="SENDING", lease_expire_time=lease)
    # The caller was stopped past its own lease on dlv_mine: it still sends it.
    assert sending.release_expired(NOW, ["dlv_mine"]) == 1
    assert _states() == {"dlv_mine": "SENDING", "dlv_dead": "PENDING", "dlv_live": "SENDING"}
    assert sending.release_expired(NOW) == 1  # by anyone else: dead, released
    assert _states()["dlv_mine"] == "PENDING"


def test_a_recovered_webhook_s_waiting_retries_become_due_in_batches(db: None) -> None:
    later = NOW + 300_000
    for n in range(3):
        _delivery(f"dlv_wait{n}", attempt_count=1, last_status_code=500, next_attempt_time=later + n)
    _delivery("dlv_429", attempt_count=1, last_status_code=429, next_attempt_time=later)  # asked to wait
    _delivery("dlv_other", webhook_id="wh_2", attempt_count=1, last_status_code=500, next_attempt_time=later)
    _delivery("dlv_failed", state="FAILED", attempt_count=3, next_attempt_time=None)

    assert sending.expedite_retries("wh_1", NOW, limit=2) == 2  # the two due earliest
    assert sending.expedite_retries("wh_1", NOW + 1, limit=2) == 1
    assert sending.expedite_retries("wh_1", NOW + 2, limit=2) == 0
    due = {d.id: d.next_attempt_time for d in models.Delivery.select()}
    assert due == {
        "dlv_wait0": NOW, "dlv_wait1": NOW, "dlv_wait2": NOW + 1,
        "dlv_429": later, "dlv_other": later, "dlv_failed": None,
    }  # fmt: skip
    changes = [(c.delivery_id, c.kind) for c in models.DeliveryChange.select().order_by(models.DeliveryChange.seq)]
    assert changes == [(f"dlv_wait{n}", "RETRY_SCHEDULED") for n in range(3)]


# --- recording attempts: each one's decision applied, in one transaction ------------

LEASE = NOW + 60_000
WINDOW_MS = 3_600_000
POLICY = Policy(retry.parse_schedule("0,5s,5m"), WINDOW_MS, random.Random(1))


def _webhook(webhook_id: str, failing_since: int | None = None) -> None:
    models.Webhook.insert(
        id=webhook_id, space_id="spc_1", alias=webhook_id, url="https://example.com/hook", event_types="[]",
        create_time=NOW, update_time=NOW, failing_since=failing_since,
    ).execute()  # fmt: skip


def _sent(delivery_id: str, status: int) -> AttemptOutcome:
    """An attempt of a delivery claimed under LEASE that got `status`."""
    _delivery(delivery_id, state="SENDING", lease_expire_time=LEASE)
    delivery = Delivery.from_row(models.Delivery.get_by_id(delivery_id))
    task = SendTask(delivery=delivery, url="", headers={}, secrets=[], body=b"{}", attempt_number=1, lease=LEASE)
    attempt = Attempt(
        id=f"att_{delivery_id}", delivery_id=delivery_id, number=1, start_time=NOW, duration_ms=5,
        status_code=status, error="" if status == 200 else f"HTTP {status}",
    )  # fmt: skip
    return AttemptOutcome(task=task, attempt=attempt, seen=Seen(attempt_number=1, end_time=NOW, status_code=status))


def _record(*outcomes: AttemptOutcome) -> sending.Recorded:
    return sending.record_outcomes(outcomes, NOW, functools.partial(decide, policy=POLICY))


def _changes(delivery_id: str) -> list[tuple[str, str]]:
    """The delivery's changes as the change log tells them, in order: (kind, the delivery's state it shows)."""
    entries = models.DeliveryChange.select().where(models.DeliveryChange.delivery_id == delivery_id)
    return [
        (c.kind, c.delivery.state) for c in deliveries.as_changes(list(entries.order_by(models.DeliveryChange.seq)))
    ]


def test_a_410_also_fails_the_retry_its_batch_scheduled_earlier_for_the_same_webhook(db: None) -> None:
    _webhook("wh_1")
    recorded = _record(_sent("dlv_first", 500), _sent("dlv_gone", 410))
    hook = models.Webhook.get_by_id("wh_1")
    assert (hook.enabled, hook.disabled_reason) == (False, "gone")
    # A disabled webhook keeps no PENDING delivery: the retry fails with the rest.
    assert _states() == {"dlv_first": "FAILED", "dlv_gone": "FAILED"}
    assert _changes("dlv_first") == [
        ("ATTEMPT_RESULT", "SENDING"), ("RETRY_SCHEDULED", "PENDING"), ("FAILED", "FAILED"),
    ]  # fmt: skip
    assert [d.fate for d in recorded.decisions] == [Fate.RETRY, Fate.FAILED]


def test_the_attempt_that_ends_the_auto_disable_window_fails_its_delivery_and_the_log_ends_there(db: None) -> None:
    _webhook("wh_1", failing_since=NOW - WINDOW_MS)
    recorded = _record(_sent("dlv_1", 500))
    hook = models.Webhook.get_by_id("wh_1")
    assert (hook.enabled, hook.disabled_reason) == (False, "failing")
    row = models.Delivery.get_by_id("dlv_1")
    assert (row.state, row.last_error) == ("FAILED", "HTTP 500; webhook disabled (failing)")
    # A stream replaying the log ends on the state the delivery is in.
    assert _changes("dlv_1") == [("ATTEMPT_RESULT", "SENDING"), ("FAILED", "FAILED")]
    assert [d.fate for d in recorded.decisions] == [Fate.FAILED]


def test_a_success_in_the_same_batch_keeps_a_failing_webhook_enabled(db: None) -> None:
    _webhook("wh_1", failing_since=NOW - WINDOW_MS)
    recorded = _record(_sent("dlv_failed", 500), _sent("dlv_ok", 200))
    hook = models.Webhook.get_by_id("wh_1")
    assert (hook.enabled, hook.failing_since, hook.last_success_time) == (True, None, NOW)
    assert _states() == {"dlv_failed": "PENDING", "dlv_ok": "SUCCEEDED"}
    assert [d.fate for d in recorded.decisions] == [Fate.RETRY, Fate.SUCCEEDED]
    assert recorded.recovered == ["wh_1"]


def test_a_webhook_disabled_while_its_attempt_was_in_flight_gets_no_retry(db: None) -> None:
    _webhook("wh_1")
    outcome = _sent("dlv_1", 500)
    models.Webhook.update(enabled=False).execute()
    assert [d.fate for d in _record(outcome).decisions] == [Fate.FAILED]
    row = models.Delivery.get_by_id("dlv_1")
    assert (row.state, row.last_error, row.next_attempt_time) == ("FAILED", "HTTP 500; webhook disabled", None)


def test_an_attempt_s_result_and_what_it_led_to_are_one_entry_that_reads_back_as_both(db: None) -> None:
    _webhook("wh_1")
    outcome = _sent("dlv_1", 500)
    sending.record_outcomes([outcome], NOW + 7, functools.partial(decide, policy=POLICY))
    [entry] = models.DeliveryChange.select()
    result, retry = deliveries.as_changes([entry])
    # The result shows the delivery as it was when the result came in, the retry as it is after.
    assert (result.kind, result.delivery.state, result.delivery.last_error) == ("ATTEMPT_RESULT", "SENDING", "HTTP 500")
    assert (result.delivery.next_attempt_time, result.delivery.update_time) == (NOW, NOW)
    assert result.attempt is not None and result.attempt.id == "att_dlv_1"
    assert (retry.kind, retry.delivery.state, retry.delivery.update_time, retry.attempt) == (
        "RETRY_SCHEDULED", "PENDING", NOW + 7, None,
    )  # fmt: skip
    assert retry.delivery.next_attempt_time == models.Delivery.get_by_id("dlv_1").next_attempt_time
    assert result.delivery.attempt_count == retry.delivery.attempt_count == 1
    # Each has a position of its own: a stream can stop and resume between them.
    assert (result.position, retry.position) == ((entry.seq - 1, 1), (entry.seq, 0))

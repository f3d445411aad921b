"""The delivery worker's side of storage, on a real database: leases given back."""

from __future__ import annotations

from hookline.server.storage import models, sending

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

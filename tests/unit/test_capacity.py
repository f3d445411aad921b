"""How the delivery worker shares its send slots (delivery.capacity), with the
clock passed in."""

from __future__ import annotations

import pytest

from hookline.server.delivery.capacity import (
    FAST,
    FORGET_S,
    SLOW,
    SLOW_S,
    UNPROVEN,
    Capacity,
    ProcessShare,
    process_share,
    request_spacing_s,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _capacity(total: int = 64, per_webhook: int = 8) -> tuple[Capacity, Clock]:
    clock = Clock()
    return Capacity(total, per_webhook, clock=clock), clock


def _send(capacity: Capacity, webhook_id: str, delivery_id: str) -> None:
    capacity.claimed(webhook_id)
    capacity.sent(webhook_id, delivery_id)


def _candidates(webhook_id: str, count: int) -> list[tuple[str, str]]:
    return [(f"{webhook_id}-d{n}", webhook_id) for n in range(count)]


def _answered_quickly(capacity: Capacity, webhook_id: str) -> None:
    _send(capacity, webhook_id, "probe")
    capacity.answered(webhook_id, "probe", slow=False)
    capacity.released(webhook_id, "probe")


def test_an_unknown_webhook_has_one_request_in_flight_until_one_is_answered_quickly() -> None:
    capacity, _ = _capacity()
    assert capacity.kind("wh") == UNPROVEN
    assert capacity.plan().choose(_candidates("wh", 5), 64) == ["wh-d0"]
    _send(capacity, "wh", "wh-d0")
    assert capacity.answered("wh", "wh-d0", slow=False) is True  # room again before the slot is free
    assert capacity.kind("wh") == FAST
    capacity.released("wh", "wh-d0")
    _send(capacity, "wh", "wh-d1")
    assert capacity.answered("wh", "wh-d1", slow=False) is False  # it was fast already
    capacity.released("wh", "wh-d1")
    assert len(capacity.plan().choose(_candidates("wh", 20), 64)) == 8  # its whole cap


def test_a_request_outstanding_past_the_threshold_makes_its_webhook_slow() -> None:
    capacity, clock = _capacity()
    _answered_quickly(capacity, "wh")
    _send(capacity, "wh", "d1")
    clock.now += SLOW_S / 2
    assert capacity.kind("wh") == FAST
    clock.now += SLOW_S
    assert capacity.kind("wh") == SLOW


def test_slow_webhooks_together_hold_at_most_their_share_each_an_equal_part() -> None:
    capacity, clock = _capacity()
    hanging = [f"hang{n}" for n in range(20)]
    for webhook_id in hanging:
        _send(capacity, webhook_id, f"{webhook_id}-first")
    clock.now += 2 * SLOW_S  # every first request is still outstanding
    assert {capacity.kind(w) for w in hanging} == {SLOW}
    candidates = [c for w in hanging for c in _candidates(w, 8)]
    chosen = capacity.plan().choose(candidates, 64)
    assert len(chosen) == capacity.slow_limit - 20  # 24 slow requests in all
    per_webhook = {w: 1 + sum(1 for d in chosen if d.startswith(w + "-")) for w in hanging}
    assert max(per_webhook.values()) <= 2  # ceil(24 / 20)
    # Full: their backlogs are skipped by the claim, and they get no more.
    for delivery_id in chosen:
        _send(capacity, delivery_id.split("-")[0], delivery_id)
    plan = capacity.plan()
    assert set(plan.blocked) == set(hanging)
    assert plan.choose(candidates, 64) == []


def test_fast_webhooks_find_slots_whatever_the_slow_and_unproven_ones_hold() -> None:
    capacity, clock = _capacity()
    _answered_quickly(capacity, "healthy")
    for n in range(capacity.suspect_limit):  # new webhooks, each a request that hangs
        _send(capacity, f"hang{n}", f"hang{n}-first")
    clock.now += 2 * SLOW_S
    plan = capacity.plan()
    assert plan.choose([("n1", "brand-new"), ("n2", "another")], 64) == []  # the suspects' share is full
    candidates = [(f"hang{n}-second", f"hang{n}") for n in range(50)] + _candidates("healthy", 8)
    assert plan.choose(candidates, 64) == [f"healthy-d{n}" for n in range(8)]
    assert "healthy" not in plan.blocked


def test_slow_webhooks_leave_room_for_unproven_ones() -> None:
    capacity, clock = _capacity()
    _send(capacity, "idle-slow", "d0")
    capacity.answered("idle-slow", "d0", slow=True)
    capacity.released("idle-slow", "d0")
    for n in range(30):
        _send(capacity, f"hang{n}", f"hang{n}-first")
        capacity.answered(f"hang{n}", f"hang{n}-first", slow=True)  # timed out, slot not yet free
    clock.now += 2 * SLOW_S
    plan = capacity.plan()
    # 30 slow requests in flight, over their share of 24: no slow webhook takes more,
    # but a new webhook still gets a slot (the suspects' share is 32).
    assert plan.choose([("again", "hang1"), ("idle", "idle-slow")], 64) == []
    assert plan.choose([("n1", "brand-new")], 64) == ["n1"]
    # The claim skips the backlogs of every slow webhook, busy or not.
    assert set(plan.blocked) == {f"hang{n}" for n in range(30)} | {"idle-slow"}


def test_a_slow_webhook_answered_quickly_gets_its_whole_cap_back() -> None:
    capacity, clock = _capacity()
    _send(capacity, "wh", "d1")
    capacity.answered("wh", "d1", slow=True)
    capacity.released("wh", "d1")
    assert capacity.kind("wh") == SLOW
    _send(capacity, "wh", "d2")
    capacity.answered("wh", "d2", slow=False)
    capacity.released("wh", "d2")
    assert capacity.kind("wh") == FAST
    assert len(capacity.plan().choose(_candidates("wh", 20), 64)) == 8


def test_a_claim_takes_every_webhook_s_first_delivery_before_any_second() -> None:
    capacity, _ = _capacity(total=8)
    for webhook_id in ("a", "b", "c"):
        _answered_quickly(capacity, webhook_id)
    _send(capacity, "c", "c-busy")  # c has one in flight already
    # a's backlog is due first; still b and c get their turn.
    candidates = _candidates("a", 4) + _candidates("b", 2) + _candidates("c", 2)
    assert capacity.plan().choose(candidates, 4) == ["a-d0", "b-d0", "a-d1", "b-d1"]


def test_an_idle_webhook_is_forgotten() -> None:
    capacity, clock = _capacity()
    _send(capacity, "wh", "d1")
    capacity.answered("wh", "d1", slow=True)
    capacity.released("wh", "d1")
    capacity.forget_idle()
    assert capacity.kind("wh") == SLOW
    clock.now += FORGET_S + 1
    capacity.forget_idle()
    assert capacity.kind("wh") == UNPROVEN


# --- several delivery processes: each one's share of the limits -----------------------


@pytest.mark.parametrize(
    ("concurrency", "per_webhook", "processes", "shares"),
    [
        (64, 8, 1, [(64, 8)]),
        (64, 8, 2, [(32, 4), (32, 4)]),
        # A remainder goes one each to the first processes: 22 + 21 + 21 = 64, 3 + 3 + 2 = 8.
        (64, 8, 3, [(22, 3), (21, 3), (21, 2)]),
        (10, 4, 4, [(3, 1), (3, 1), (2, 1), (2, 1)]),
        # Fewer than one each: one each all the same, or a process could never send.
        (2, 1, 3, [(1, 1), (1, 1), (1, 1)]),
        (1, 1, 2, [(1, 1), (1, 1)]),
    ],
)
def test_each_delivery_process_takes_its_share_of_the_limits(
    concurrency: int, per_webhook: int, processes: int, shares: list[tuple[int, int]]
) -> None:
    assert [process_share(concurrency, per_webhook, processes, n) for n in range(processes)] == [
        ProcessShare(delivery_concurrency=c, webhook_max_in_flight=w) for c, w in shares
    ]


@pytest.mark.parametrize(("concurrency", "per_webhook"), [(64, 8), (7, 5), (100, 3), (5, 5)])
@pytest.mark.parametrize("processes", [1, 2, 3, 4, 5])
def test_the_shares_add_up_to_the_limits_when_there_is_one_each(
    concurrency: int, per_webhook: int, processes: int
) -> None:
    shares = [process_share(concurrency, per_webhook, processes, n) for n in range(processes)]
    assert sum(s.delivery_concurrency for s in shares) == concurrency
    assert sum(s.webhook_max_in_flight for s in shares) == max(per_webhook, processes)


@pytest.mark.parametrize(
    ("rate_limit_per_s", "processes", "spacing_s"),
    [(4, 1, 0.25), (4, 2, 0.5), (10, 4, 0.4), (0.5, 1, 2.0), (0.5, 3, 6.0)],
)
def test_each_delivery_process_spaces_a_webhook_s_requests_by_its_share_of_the_rate_limit(
    rate_limit_per_s: float, processes: int, spacing_s: float
) -> None:
    assert request_spacing_s(rate_limit_per_s, processes) == pytest.approx(spacing_s)

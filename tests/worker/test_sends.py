"""How the worker sends, step by step: what a failed request is recorded as, how
many requests a webhook gets in flight, its rate limit, a graceful stop, and
leases that lapse."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from hookline.server.delivery import capacity
from hookline.server.storage import models, sending

from .harness import Bench, attempts, changes, delivery, running, step


class _BodyThatStops(httpx.AsyncByteStream):
    """A body whose first bytes arrive and then the request's time runs out."""

    def __init__(self, bench: Bench) -> None:
        self._bench = bench

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b"{"
        self._bench.clock.advance(15)
        raise httpx.ReadTimeout("no complete response within 15 s")


def _failing(
    bench: Bench, error: type[httpx.TransportError], after_s: float
) -> Callable[[httpx.Request], Awaitable[httpx.Response]]:
    """A reply that fails the request with `error` after `after_s`."""

    async def fail(request: httpx.Request) -> httpx.Response:
        bench.clock.advance(after_s)
        raise error("scripted", request=request)

    return fail


@pytest.mark.parametrize(
    ("reply", "error", "duration_ms"),
    [
        ("read-timeout", "timed out (ReadTimeout) after 15.0 s", 15_000),
        ("connect-timeout", "timed out (ConnectTimeout) after 5.0 s", 5_000),
        ("connect-error", "ConnectError: scripted", 0),
        ("reset", "RemoteProtocolError: scripted", 0),
        ("body-cut-short", "timed out (ReadTimeout) after 15.0 s reading the body of an HTTP 200 response", 15_000),
    ],
)
def test_a_request_without_a_whole_answer_is_a_failed_attempt_saying_why(
    bench: Bench, reply: str, error: str, duration_ms: int
) -> None:
    replies = {
        "read-timeout": _failing(bench, httpx.ReadTimeout, 15),
        "connect-timeout": _failing(bench, httpx.ConnectTimeout, 5),
        "connect-error": _failing(bench, httpx.ConnectError, 0),
        "reset": _failing(bench, httpx.RemoteProtocolError, 0),
        "body-cut-short": httpx.Response(200, stream=_BodyThatStops(bench)),
    }
    hook = bench.webhook("/fails", [replies[reply], 200])
    [delivery_id] = bench.queue(hook)
    worker = bench.worker(retry_schedule="0,10s")
    start = bench.clock()
    retry_at: list[int | None] = []

    async def steps() -> None:
        await step(worker)
        retry_at.append(delivery(delivery_id).next_attempt_time)
        bench.clock.now_ms = start + duration_ms + 10_000
        await step(worker)

    running(worker, steps)
    first, second = attempts(delivery_id)
    # One outcome per attempt: no status for an answer that did not arrive whole.
    assert (first.status_code, first.error, first.response_body) == (0, error, b"")
    assert (first.start_time, first.duration_ms) == (start, duration_ms)
    # Retried on the schedule, counted from the attempt's end.
    assert retry_at == [start + duration_ms + 10_000]
    assert (delivery(delivery_id).state, second.status_code) == ("SUCCEEDED", 200)
    attempt = ["ATTEMPT_STARTED", "ATTEMPT_RESULT"]
    assert [kind for kind, _ in changes(delivery_id)] == ["QUEUED", *attempt, "RETRY_SCHEDULED", *attempt, "SUCCEEDED"]


class _Gate:
    """Replies that hold each request until the test lets them all answer 200.
    Made on the event loop it is used on."""

    def __init__(self) -> None:
        self.arrived = asyncio.Event()  # a request is waiting
        self.open = asyncio.Event()

    async def reply(self, request: httpx.Request) -> httpx.Response:
        self.arrived.set()
        await self.open.wait()
        return httpx.Response(200)


def test_a_webhook_gets_one_request_in_flight_until_one_is_answered_then_up_to_its_cap(bench: Bench) -> None:
    gate = _Gate()
    hook = bench.webhook("/held", [gate.reply])
    bench.queue(hook, 10)
    worker = bench.worker(webhook_max_in_flight=3)
    claimed: list[int] = []

    async def steps() -> None:
        claimed.append(await worker.run_once())  # unproven: it might hang
        claimed.append(await worker.run_once())
        gate.open.set()
        await worker.settled()
        gate.open.clear()
        claimed.append(await worker.run_once())  # answered quickly: its cap
        claimed.append(await worker.run_once())
        gate.open.set()
        await worker.settled()

    running(worker, steps)
    assert claimed == [1, 0, 3, 0]


def test_a_slow_webhook_holds_at_most_the_slow_share_of_the_slots(bench: Bench) -> None:
    gate = _Gate()

    async def slow(request: httpx.Request) -> httpx.Response:
        bench.clock.advance(capacity.SLOW_S * 2)
        return httpx.Response(200)

    hook = bench.webhook("/slow", [slow, gate.reply])
    other = bench.webhook("/other", [200])
    bench.queue(hook, 20)
    worker = bench.worker(delivery_concurrency=16, webhook_max_in_flight=8)
    claimed: list[int] = []

    async def steps() -> None:
        await step(worker)  # answered, slowly
        claimed.append(await worker.run_once())
        claimed.append(await worker.run_once())
        bench.queue(other, 1)
        claimed.append(await worker.run_once())  # another webhook still finds a slot
        gate.open.set()
        await worker.settled()

    running(worker, steps)
    assert claimed == [int(16 * capacity.SLOW_SHARE), 0, 1]
    assert len(bench.receivers.at("/other")) == 1


@pytest.mark.parametrize("processes", [1, 2])
def test_a_webhook_s_requests_are_spaced_by_its_rate_limit_shared_by_the_delivery_processes(
    bench: Bench, processes: int
) -> None:
    hook = bench.webhook("/limited", rate_limit_per_s=4)
    made = bench.queue(hook, 6)
    worker = bench.worker(delivery_processes=processes)

    async def steps() -> None:
        while await step(worker):
            pass

    running(worker, steps)
    starts = sorted(attempts(d)[0].start_time for d in made)
    every_ms = 250 * processes
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [every_ms] * 5
    assert all(delivery(d).state == "SUCCEEDED" for d in made)


def test_a_graceful_stop_lets_sends_in_flight_finish(bench: Bench) -> None:
    gate = _Gate()
    hook = bench.webhook("/finishing", [gate.reply])
    [delivery_id] = bench.queue(hook)
    worker = bench.worker()

    async def steps() -> None:
        assert await worker.run_once() == 1
        await gate.arrived.wait()
        asyncio.get_running_loop().call_soon(gate.open.set)  # answers while the worker drains
        await worker.drain(grace_s=60)

    running(worker, steps)
    done = delivery(delivery_id)
    assert (done.state, done.attempt_count) == ("SUCCEEDED", 1)


def test_a_graceful_stop_gives_back_what_did_not_finish_in_time_due_at_once(bench: Bench) -> None:
    gate = _Gate()
    hook = bench.webhook("/never", [gate.reply])
    [delivery_id] = bench.queue(hook)
    worker = bench.worker()
    claimed_at = bench.clock()

    async def steps() -> None:
        assert await worker.run_once() == 1
        await gate.arrived.wait()
        bench.clock.advance(7)
        await worker.drain(grace_s=0)

    running(worker, steps)
    given_back = delivery(delivery_id)
    stopped_at = claimed_at + 7000
    assert (given_back.state, given_back.attempt_count, given_back.next_attempt_time) == ("PENDING", 0, stopped_at)
    assert attempts(delivery_id) == []
    assert changes(delivery_id)[-2:] == [("ATTEMPT_STARTED", claimed_at), ("RETRY_SCHEDULED", stopped_at)]
    assert models.Delivery.get_by_id(delivery_id).lease_expire_time is None


def _claimed_elsewhere(delivery_id: str, lease_expire_time: int) -> None:
    """As a claim by another worker left it."""
    models.Delivery.update(state="SENDING", lease_expire_time=lease_expire_time).where(
        models.Delivery.id == delivery_id
    ).execute()


def test_deliveries_whose_sender_died_are_sent_again_once_their_lease_lapses(bench: Bench) -> None:
    hook = bench.webhook("/resent")
    lapsed, later = bench.queue(hook, 2)
    now = bench.clock()
    _claimed_elsewhere(lapsed, now - 1)
    _claimed_elsewhere(later, now + 10_000)
    worker = bench.worker(delivery_lease_s=60)  # looks for lapsed leases every 30 s
    states: list[tuple[str, str]] = []

    async def steps() -> None:
        for wait_s in (0, 20, 15):
            bench.clock.advance(wait_s)
            await step(worker)
            states.append((delivery(lapsed).state, delivery(later).state))

    running(worker, steps)
    # `later` lapsed at 10 s; lapsed leases are looked for at 0 s and 35 s.
    assert states == [("SUCCEEDED", "SENDING"), ("SUCCEEDED", "SENDING"), ("SUCCEEDED", "SUCCEEDED")]
    assert [a.start_time for a in attempts(lapsed)] == [now]
    assert [a.start_time for a in attempts(later)] == [now + 35_000]
    assert ("RETRY_SCHEDULED", now + 35_000) in changes(later)


def test_a_send_of_this_worker_that_outlasts_its_lease_is_not_taken_from_it(bench: Bench) -> None:
    gate = _Gate()
    hook = bench.webhook("/late", [gate.reply])
    [delivery_id] = bench.queue(hook)
    worker = bench.worker(delivery_lease_s=60)
    start = bench.clock()

    async def steps() -> None:
        assert await worker.run_once() == 1
        await gate.arrived.wait()
        bench.clock.advance(120)  # the process was stopped, say: its own lease lapsed meanwhile
        assert await worker.run_once() == 0
        assert delivery(delivery_id).state == "SENDING"
        gate.open.set()
        await worker.settled()

    running(worker, steps)
    [attempt] = attempts(delivery_id)
    assert (delivery(delivery_id).state, attempt.start_time) == ("SUCCEEDED", start)


def test_an_answer_after_the_lease_passed_to_another_sender_records_the_attempt_not_the_state(bench: Bench) -> None:
    async def late(request: httpx.Request) -> httpx.Response:
        bench.clock.advance(61)
        sending.release_expired(bench.clock())  # another worker gives it back, to send it again
        return httpx.Response(500)

    hook = bench.webhook("/overtaken", [late, 200])
    [delivery_id] = bench.queue(hook)
    worker = bench.worker(delivery_lease_s=60, request_timeout_s=30)

    async def steps() -> None:
        await step(worker)
        overtaken = delivery(delivery_id)
        # Its attempt is on record; the state is the new holder's: due now, not a retry in 10 s.
        assert (overtaken.state, overtaken.attempt_count, overtaken.next_attempt_time) == (
            "PENDING",
            1,
            bench.clock(),
        )
        assert await step(worker) == 1

    running(worker, steps)
    assert [(a.number, a.status_code) for a in attempts(delivery_id)] == [(1, 500), (2, 200)]
    assert delivery(delivery_id).state == "SUCCEEDED"

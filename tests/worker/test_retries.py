"""What a receiver's answer leads to, step by step through the worker (DESIGN §5):
the schedule, Retry-After on 429 and 503 (seconds or an HTTP date, clamped to an
hour, never shortening the schedule), 3xx not followed, 410 disabling, the
auto-disable window, a recovered webhook's waiting retries brought forward, and
a refused target never tried again."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable
from email.utils import formatdate

import httpx
import pytest

from hookline.server.delivery import targets
from hookline.server.storage import models

from .harness import BASE_URL, Bench, Reply, attempts, changes, delivery, running, step


def test_a_failing_delivery_is_retried_on_the_schedule_then_failed(bench: Bench) -> None:
    hook = bench.webhook("/fails", [500])
    [delivery_id] = bench.queue(hook)
    worker = bench.worker(retry_schedule="0,10s,1m")
    start = bench.clock()

    async def steps() -> list[int]:
        claimed = [await step(worker)]
        for wait_s in (10, 60):
            bench.clock.advance(wait_s - 0.001)
            claimed.append(await step(worker))  # due a millisecond later
            bench.clock.advance(0.001)
            claimed.append(await step(worker))
        bench.clock.advance(24 * 3600)
        claimed.append(await step(worker))  # the schedule is spent: nothing more is sent
        return claimed

    assert running(worker, steps) == [1, 0, 1, 0, 1, 0]
    done = delivery(delivery_id)
    assert (done.state, done.attempt_count, done.last_status_code, done.last_error) == ("FAILED", 3, 500, "HTTP 500")
    assert [(a.number, a.start_time, a.status_code) for a in attempts(delivery_id)] == [
        (1, start, 500),
        (2, start + 10_000, 500),
        (3, start + 70_000, 500),
    ]
    sent = bench.receivers.at("/fails")
    assert [a.request.headers["x-webhook-delivery-attempt"] for a in sent] == ["0", "1", "2"]
    assert len({a.request.headers["webhook-id"] for a in sent}) == 1
    assert changes(delivery_id) == [
        ("QUEUED", start),
        *[("ATTEMPT_STARTED", start), ("ATTEMPT_RESULT", start), ("RETRY_SCHEDULED", start)],
        *[("ATTEMPT_STARTED", start + 10_000), ("ATTEMPT_RESULT", start + 10_000)],
        ("RETRY_SCHEDULED", start + 10_000),
        *[("ATTEMPT_STARTED", start + 70_000), ("ATTEMPT_RESULT", start + 70_000), ("FAILED", start + 70_000)],
    ]


def _second_attempt_after(bench: Bench, path: str, first: httpx.Response) -> tuple[int, list[int]]:
    """How long after the first attempt (ms) the second one was made, the first
    answered `first` and the second 200; and the statuses of the attempts."""
    hook = bench.webhook(path, [first, 200])
    [delivery_id] = bench.queue(hook)
    worker = bench.worker(retry_schedule="0,10s")

    async def steps() -> None:
        await step(worker)
        waiting = delivery(delivery_id)
        assert waiting.state == "PENDING" and waiting.next_attempt_time is not None
        bench.clock.now_ms = waiting.next_attempt_time - 1
        assert await step(worker) == 0  # not a millisecond early
        bench.clock.advance(0.001)
        assert await step(worker) == 1

    running(worker, steps)
    made = attempts(delivery_id)
    assert delivery(delivery_id).state == "SUCCEEDED"
    return made[1].start_time - made[0].start_time, [a.status_code for a in made]


def test_retry_after_seconds_delays_the_next_attempt(bench: Bench) -> None:
    # The schedule says 10 s; the receiver asks for two minutes and gets them.
    busy = httpx.Response(503, headers={"Retry-After": "120"})
    assert _second_attempt_after(bench, "/after-seconds", busy) == (120_000, [503, 200])


def test_retry_after_as_an_http_date(bench: Bench) -> None:
    when = formatdate(bench.clock() / 1000 + 300, usegmt=True)
    assert _second_attempt_after(bench, "/after-date", httpx.Response(429, headers={"Retry-After": when})) == (
        300_000,
        [429, 200],
    )


def test_retry_after_is_clamped_to_an_hour(bench: Bench) -> None:
    throttled = httpx.Response(429, headers={"Retry-After": "86400"})
    assert _second_attempt_after(bench, "/after-long", throttled) == (3_600_000, [429, 200])


def test_retry_after_shorter_than_the_schedule_does_not_shorten_it(bench: Bench) -> None:
    throttled = httpx.Response(429, headers={"Retry-After": "0"})
    assert _second_attempt_after(bench, "/after-short", throttled) == (10_000, [429, 200])


def test_retry_after_on_another_status_is_not_heeded(bench: Bench) -> None:
    failed = httpx.Response(500, headers={"Retry-After": "120"})
    assert _second_attempt_after(bench, "/after-500", failed) == (10_000, [500, 200])


def test_a_redirect_is_a_failure_and_is_not_followed(bench: Bench) -> None:
    moved = httpx.Response(302, headers={"Location": "https://receiver.example/redirect-target"})
    assert _second_attempt_after(bench, "/redirect", moved) == (10_000, [302, 200])
    first = models.Attempt.select().where(models.Attempt.status_code == 302).get()
    assert first.error == "HTTP 302 (redirects are not followed)"
    assert bench.receivers.at("/redirect-target") == []
    assert len(bench.receivers.at("/redirect")) == 2


def test_410_gone_disables_the_webhook_and_announces_it(bench: Bench) -> None:
    watcher = bench.webhook("/watcher", event_types=["WEBHOOK.DISABLED"])
    gone = bench.webhook("/gone", [410])
    first, waiting = bench.queue(gone, 2)
    worker = bench.worker(retry_schedule="0,10s")
    start = bench.clock()

    async def steps() -> None:
        bench.clock.advance(1)
        await step(worker)  # one of the two: the webhook has not answered yet, so one at a time
        bench.clock.advance(3600)
        while await step(worker):  # the announcement to the watcher
            pass

    running(worker, steps)
    assert [a.request.url.path for a in bench.receivers.arrivals].count("/gone") == 1  # no retry after 410
    done = delivery(first)
    assert (done.state, done.attempt_count, done.last_status_code) == ("FAILED", 1, 410)
    assert done.last_error == "HTTP 410; webhook disabled (gone)"
    # The webhook's other delivery fails with it, unsent.
    other = delivery(waiting)
    assert (other.state, other.attempt_count, other.last_error) == ("FAILED", 0, "webhook disabled (gone)")
    hook = models.Webhook.get_by_id(gone)
    assert (hook.enabled, hook.disabled_reason, hook.update_time) == (False, "gone", start + 1000)
    [announcement] = models.Event.select().where(models.Event.event_type == "WEBHOOK.DISABLED")
    assert announcement.create_time == start + 1000
    [told] = bench.receivers.at("/watcher")
    assert told.request.headers["webhook-id"] == announcement.id
    assert models.Delivery.get(models.Delivery.event_id == announcement.id).webhook_id == watcher


def test_a_success_restarts_the_auto_disable_window(bench: Bench) -> None:
    # Failures for 40 s, a success, then failures again: the one-minute window
    # counts from the first failure after the success, not from the first overall.
    flaky = bench.webhook("/flaky", [500, 500, 200, 500])
    [first] = bench.queue(flaky)
    worker = bench.worker(retry_schedule="0" + ",20s" * 10, auto_disable_after_s=60)
    start = bench.clock()
    enabled_at: list[tuple[int, bool]] = []

    async def steps() -> None:
        await step(worker)
        for _ in range(2):
            bench.clock.advance(20)
            await step(worker)
        assert delivery(first).state == "SUCCEEDED"  # at 40 s
        bench.queue(flaky)
        while models.Webhook.get_by_id(flaky).enabled:
            assert await step(worker) == 1
            enabled_at.append((bench.clock() - start, models.Webhook.get_by_id(flaky).enabled))
            bench.clock.advance(20)

    running(worker, steps)
    # Still enabled at 60 s and 80 s, past a minute since the first failure of all.
    assert enabled_at == [(40_000, True), (60_000, True), (80_000, True), (100_000, False)]
    hook = models.Webhook.get_by_id(flaky)
    assert (hook.disabled_reason, hook.update_time) == ("failing", start + 100_000)
    [_, second] = [d.id for d in models.Delivery.select().order_by(models.Delivery.create_time, models.Delivery.id)]
    assert delivery(second).state == "FAILED"
    assert delivery(second).last_error == "HTTP 500; webhook disabled (failing)"


def test_retries_waiting_on_a_recovered_webhook_are_sent_soon_paced_by_its_rate_limit(bench: Bench) -> None:
    waiting, rate_per_s = 10, 10
    throttle = httpx.Response(429, headers={"Retry-After": "120"})
    hook = bench.webhook("/recovers", [throttle, 500], rate_limit_per_s=rate_per_s)
    worker = bench.worker(retry_schedule="0,1m,1m")
    [throttled] = bench.queue(hook)
    results: dict[str, list[int]] = {}

    async def steps() -> None:
        await step(worker)
        failed = bench.queue(hook, waiting)
        while await step(worker):
            pass
        assert all(delivery(d).attempt_count == 1 and delivery(d).state == "PENDING" for d in failed)
        bench.receivers.respond("/recovers", [200])  # the receiver is back
        bench.clock.advance(5)
        recovered_at = bench.clock()
        [success] = bench.queue(hook)
        await step(worker)  # the success brings the waiting retries forward
        assert delivery(success).state == "SUCCEEDED"
        while await step(worker):
            pass
        results["retried"] = sorted(attempts(d)[1].start_time - recovered_at for d in failed)
        results["states"] = [delivery(d).attempt_count for d in failed if delivery(d).state == "SUCCEEDED"]

    running(worker, steps)
    assert results["states"] == [2] * waiting
    # Soon, not after the minute, and a tenth of a second apart: the rate limit.
    every_ms = 1000 // rate_per_s
    assert results["retried"] == [every_ms * n for n in range(1, waiting + 1)]
    # The receiver asked for two minutes on the 429: that one still waits.
    still = delivery(throttled)
    assert (still.state, still.attempt_count, still.next_attempt_time) == (
        "PENDING",
        1,
        attempts(throttled)[0].start_time + 120_000,
    )


def _refused_at_resolution(request: httpx.Request) -> Awaitable[httpx.Response]:
    # What the guarded transport raises when a name resolves to a private address.
    raise targets.TargetRefused(request.url.host, ipaddress.ip_address("10.0.0.7"))


@pytest.mark.parametrize(
    ("url", "first_reply"),
    [("http://10.0.0.1/refused", 200), (BASE_URL + "/refused", _refused_at_resolution)],
    ids=["literal address", "name resolving to a private address"],
)
def test_a_refused_target_fails_at_once_and_is_never_retried(bench: Bench, url: str, first_reply: Reply) -> None:
    # Were it tried again, the receiver would now answer: the refusal is final all the same.
    hook = bench.webhook("/refused", [first_reply, 200], url=url)
    [delivery_id] = bench.queue(hook)
    worker = bench.worker(retry_schedule="0,100ms,200ms")

    async def steps() -> list[int]:
        claimed = [await step(worker)]
        bench.clock.advance(3600)
        claimed.append(await step(worker))
        return claimed

    assert running(worker, steps) == [1, 0]
    done = delivery(delivery_id)
    assert (done.state, done.attempt_count, done.next_attempt_time) == ("FAILED", 1, None)
    [attempt] = attempts(delivery_id)
    assert attempt.status_code == 0 and attempt.error.startswith("refused: ")
    assert done.last_error == attempt.error
    assert len(bench.receivers.at("/refused")) == (0 if url.startswith("http://10.") else 1)

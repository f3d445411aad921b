"""The delivery worker: an asyncio loop in its own thread that claims due
deliveries, signs and POSTs them, and records every attempt.

Database calls run on one dedicated thread so the event loop never blocks on
them; attempt results are written in batches, one transaction per batch.

Its loop is a repeated `run_once()` inside `running()`, and a test steps it the
same way: `async with worker.running():` then `await worker.run_once()` and
`await worker.settled()`, with an httpx transport, a clock and a sleep of its
own, and, if it likes, storage of its own (a storage.queues.DeliveryQueue).
Every time the worker reads (leases, retry times, rate-limit slots, how slow a
webhook is, the times of the records it writes) comes from that clock.
Real time is left only where no delivery's timing depends on it: the
transport's own deadline (event-loop time, so it can give back time the
process could not run), the loop's waits for a wake-up, its heartbeat, and the
note of when the database was last found away."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from importlib.metadata import version
from typing import Any, TypeVar

import httpx

from hookline import signing

from .. import ids
from ..metrics import Metrics
from ..notify import hub
from ..settings import Settings
from ..storage.database import DatabaseFault, FaultLog, clock_ms, seconds_since_outage
from ..storage.queues import DatabaseDeliveries, DeliveryQueue
from ..storage.records import Attempt, SendTask, WebhookHealth
from ..storage.sending import AttemptOutcome
from . import capacity, targets, urls
from .capacity import Capacity
from .outcome import Decision, ErrorKind, Policy, Seen, decide
from .transport import GuardedTransport

log = logging.getLogger("hookline.delivery")

USER_AGENT = f"hookline/{version('hookline')}"
T = TypeVar("T")
# How often the event loop says it is running (see DeliveryWorker.heartbeat).
HEARTBEAT_EVERY_S = 1.0
# Retries of a recovered webhook brought forward per transaction.
EXPEDITE_BATCH = 500


class DeliveryWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], int] = clock_ms,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
        deliveries: DeliveryQueue | None = None,
    ):
        self._settings = settings
        self._deliveries = deliveries or DatabaseDeliveries()
        self._transport = transport
        self._clock = clock  # ms since the epoch
        self._sleep = sleep  # seconds, by that clock: how the worker waits for a time it chose
        self._rng = rng or random.Random()
        self._metrics = metrics
        self._policy = Policy(settings.schedule, int(settings.auto_disable_after_s * 1000), self._rng)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="delivery-db")
        self._capacity = Capacity(
            settings.delivery_concurrency, settings.webhook_max_in_flight, clock=lambda: self._clock() / 1000
        )
        self._next_slot: dict[str, float] = {}  # per rate-limited webhook: when (ms) its next request may start
        # Lapsed leases only matter after a crash; they are looked for at a slow pace.
        self._release_every_ms = max(settings.poll_interval_s, settings.delivery_lease_s / 2) * 1000
        self._last_release = float("-inf")
        self._sending: dict[str, asyncio.Task[None]] = {}  # per delivery
        self._outcomes: list[AttemptOutcome] = []
        self._expediting: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = threading.Event()
        self._grace_s = settings.shutdown_grace_s  # what sends in flight have to finish, once stopping
        self._thread: threading.Thread | None = None
        self._http: httpx.AsyncBaseTransport | None = None  # what requests go out through, once open
        self._faults = FaultLog(log)
        # Called from the event loop every HEARTBEAT_EVERY_S while it runs, so a
        # supervisor can tell a stopped or stuck worker from a quiet one.
        self.heartbeat: Callable[[], None] | None = None

    async def _db_call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    # --- one iteration --------------------------------------------------------------

    async def run_once(self) -> int:
        """One round of the loop (inside `running()`): give back lapsed leases
        when it is time to look for them, then claim what is due and there is
        room for, and start sending it; returns how many were claimed."""
        await self._release_lapsed()
        room = self._settings.delivery_concurrency - len(self._sending)
        if room <= 0:
            return 0  # a finishing send wakes the loop
        plan = self._capacity.plan()
        now = self._clock()
        tasks = await self._db_call(
            self._deliveries.claim_due,
            now,
            room,
            int(self._settings.delivery_lease_s * 1000),
            plan.choose,
            self._settings.webhook_max_in_flight,
            plan.blocked,
        )
        for task in tasks:
            self._capacity.claimed(task.delivery.webhook_id)
            self._sending[task.delivery.id] = asyncio.create_task(self._send(task))
        return len(tasks)

    async def settled(self) -> None:
        """Wait until every send started so far is recorded, and what its
        recording started (retries of a recovered webhook brought forward) is done."""
        while self._sending or self._expediting or (self._flusher is not None and not self._flusher.done()):
            pending: list[asyncio.Task[None]] = [*self._sending.values(), *self._expediting]
            if self._flusher is not None:
                pending.append(self._flusher)
            await asyncio.wait(pending)

    async def _release_lapsed(self) -> None:
        """SENDING deliveries whose sender died go back to PENDING, every so often;
        not for one lease after the database was away (nobody could record or
        renew meanwhile), and never those this worker is still sending."""
        now = self._clock()
        since_last = now - self._last_release  # negative if the clock was set back: look again
        if 0 <= since_last <= self._release_every_ms or seconds_since_outage() <= self._settings.delivery_lease_s:
            return
        await self._db_call(self._deliveries.release_expired, now, list(self._sending))
        self._capacity.forget_idle()
        self._last_release = now

    async def _step(self) -> float:
        """A round of the loop; returns how long to wait for a wake-up before
        the next (0: at once)."""
        poll = self._settings.poll_interval_s
        if await self.run_once():
            return 0
        if len(self._sending) >= self._settings.delivery_concurrency:
            return poll  # a finishing send wakes the loop
        if self._sending:
            # Their webhooks are full, or nothing is due: a finishing send or new
            # deliveries wake the loop, and retries falling due meanwhile are
            # looked for at a short, fixed pace rather than after every send.
            return min(poll, 0.25)
        due = await self._db_call(self._deliveries.next_due_time, self._capacity.plan().blocked)
        if due is None:
            return poll
        wait_s = (due - self._clock()) / 1000
        # Due now but not claimed: claimed elsewhere meanwhile, or its webhook is full.
        return min(poll, wait_s) if wait_s > 0 else min(poll, 0.05)

    async def _send(self, task: SendTask) -> None:
        webhook_id, delivery_id = task.delivery.webhook_id, task.delivery.id
        try:
            await self._throttle(task)
            self._capacity.sent(webhook_id, delivery_id)
            outcome = await self.attempt(task)
            timed_out = outcome.seen.error_kind is ErrorKind.TIMEOUT
            slow = timed_out or outcome.attempt.duration_ms >= capacity.SLOW_S * 1000
            if self._capacity.answered(webhook_id, delivery_id, slow) and self._wake is not None:
                self._wake.set()  # room for another webhook not yet answered, or a slow one
            self._outcomes.append(outcome)
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush())
            await self._flusher_done()
        finally:
            self._capacity.released(webhook_id, delivery_id)
            self._sending.pop(delivery_id, None)
            if self._wake is not None:
                self._wake.set()

    async def _flusher_done(self) -> None:
        # Wait until our outcome is written, so a slot frees only after its record.
        while self._flusher is not None and not self._flusher.done():
            await asyncio.shield(self._flusher)

    async def _flush(self) -> None:
        while self._outcomes:
            batch, self._outcomes = self._outcomes, []
            await self._record(batch)

    async def _record(self, batch: list[AttemptOutcome]) -> None:
        """Write a batch of outcomes, trying again for as long as the database is
        away (a DatabaseFault; their sends hold their slots meanwhile); other
        errors, or a stop, end the tries after a few, and then the leases lapse
        and the deliveries are sent again."""
        delay, tries = 0.05, 0
        while True:
            try:
                recorded = await self._db_call(self._deliveries.record_outcomes, batch, self._clock(), self.decide)
            except Exception as error:
                tries += 1
                if (not isinstance(error, DatabaseFault) or self._stopping.is_set()) and tries >= 5:
                    self._faults.failure(f"recording {len(batch)} attempts (given up)", error)
                    return
                self._faults.failure(f"recording {len(batch)} attempts", error)
                await self._sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            if self._metrics:
                self._metrics.attempts_recorded(batch, recorded.decisions)
            for webhook_id in recorded.recovered:
                task = asyncio.create_task(self._expedite(webhook_id))
                self._expediting.add(task)  # held until done, or it could be collected
                task.add_done_callback(self._expediting.discard)
            return

    async def _expedite(self, webhook_id: str) -> None:
        """A failing webhook succeeded again: send what waits for a retry soon,
        not at its scheduled time (a batch at a time, between other writes)."""
        try:
            while True:
                moved = await self._db_call(
                    self._deliveries.expedite_retries, webhook_id, self._clock(), EXPEDITE_BATCH
                )
                if moved < EXPEDITE_BATCH:
                    return
        except Exception as error:
            self._faults.failure(f"bringing forward the retries of recovered webhook {webhook_id}", error)

    async def _throttle(self, task: SendTask) -> None:
        """Space a webhook's requests to its rate limit (requests per second),
        of which each of the delivery processes takes an equal share."""
        if task.rate_limit_per_s <= 0:
            return
        webhook_id = task.delivery.webhook_id
        every_ms = capacity.request_spacing_s(task.rate_limit_per_s, self._settings.delivery_processes) * 1000
        now = self._clock()
        # No further ahead than the webhook's sends in flight can queue up, should
        # the clock be set back meanwhile.
        latest = now + every_ms * self._settings.webhook_max_in_flight
        slot = min(max(now, self._next_slot.get(webhook_id, now)), latest)
        self._next_slot[webhook_id] = slot + every_ms
        if slot > now:
            await self._sleep((slot - now) / 1000)

    def decide(self, seen: Seen, webhook: WebhookHealth | None) -> Decision:
        """What an attempt leads to under this worker's retry policy; storage
        asks as it records the attempt, with the webhook's state at that time."""
        return decide(seen, webhook, self._policy)

    async def attempt(self, task: SendTask) -> AttemptOutcome:
        """One HTTP try of a delivery: what it saw."""
        assert self._http is not None
        d = task.delivery
        start_ms = self._clock()
        timestamp = start_ms // 1000
        headers = dict(task.headers)
        headers.update(signing.signature_headers(task.secrets, d.event_id, timestamp, task.body, task.attempt_number))
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = USER_AGENT
        status, error, response_headers, body, truncated = 0, "", {}, b"", False
        error_kind = ErrorKind.NONE
        try:
            problem = urls.problem(task.url)
            if problem:  # stored by an older server that took it
                raise httpx.InvalidURL(f"nothing was sent: the webhook's URL {problem}; update the URL")
            # Also here, not only in the transport: httpx rejects some spellings
            # (octal IPv4) before a transport sees them, and those deserve a refusal too.
            targets.check_url(task.url, self._settings.allowed_networks)
            request = httpx.Request("POST", _url(task.url), headers=headers, content=task.body)
            response = await self._http.handle_async_request(request)
            try:
                status = response.status_code
                response_headers = dict(response.headers)
                body, truncated = await _read_capped(response, self._settings.response_capture_bytes)
            finally:
                await response.aclose()
        except Exception as exc:
            refused = targets.refused_in(exc)
            error_kind = _error_kind(exc, refused)
            error = _describe(exc, refused, (self._clock() - start_ms) / 1000, status)
            # One outcome per attempt: a response that did not arrive whole within
            # the timeout is a failed attempt, whatever its status line said.
            status = 0
            if refused is None and not isinstance(exc, (httpx.HTTPError, httpx.InvalidURL)):
                log.warning("delivery %s: unexpected failure sending", d.id, exc_info=True)
        end_ms = self._clock()
        duration_ms = max(0, end_ms - start_ms)  # a clock set back meanwhile makes no negative duration
        seen = Seen(
            attempt_number=task.attempt_number,
            end_time=end_ms,
            status_code=status,
            error_kind=error_kind,
            error=error,
            retry_after=response_headers.get("retry-after"),
        )
        attempt = Attempt(
            id=ids.new_id("att"),
            delivery_id=d.id,
            number=task.attempt_number,
            start_time=start_ms,
            duration_ms=duration_ms,
            status_code=status,
            error=seen.problem,
            response_headers=response_headers,
            response_body=body,
            response_truncated=truncated,
        )
        # Successes are the bulk of the traffic: kept out of the default log.
        log.log(
            logging.DEBUG if seen.ok else logging.INFO,
            "delivery %s attempt %d to webhook %s: %s in %d ms",
            d.id,
            task.attempt_number,
            d.webhook_id,
            status or error,
            duration_ms,
        )
        return AttemptOutcome(task=task, attempt=attempt, seen=seen)

    # --- the loop -------------------------------------------------------------------

    async def open(self) -> None:
        """Make the HTTP transport, on the event loop that will send with it
        (`running()` does this; a test calling `attempt` alone does it first).
        Requests go to it straight, not through an httpx client: the worker
        follows no redirects and keeps no cookies, and a client's layers would
        double the CPU time of a send."""
        self._loop = asyncio.get_running_loop()
        self._http = self._transport or GuardedTransport(
            # Read at each check, so a changed allow-list applies to the next send.
            allowed=lambda: self._settings.allowed_networks,
            connect_timeout_s=self._settings.connect_timeout_s,
            total_timeout_s=self._settings.request_timeout_s,
            max_connections=self._settings.delivery_concurrency,
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """What `run_once` needs, on the running event loop: the HTTP transport
        and the wake-up of sends that finish. Leaving it normally drains (sends
        in flight finish, the rest are given back); the transport closes either way."""
        self._wake = asyncio.Event()
        await self.open()
        try:
            yield
            await self.drain()
        finally:
            await self.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="delivery", daemon=True)
        self._thread.start()

    async def _main(self) -> None:
        beating = asyncio.create_task(self._beat())  # through the drain too
        try:
            async with self.running():
                await self._loop_until_stopped()
        finally:
            beating.cancel()

    async def _loop_until_stopped(self) -> None:
        loop, wake = asyncio.get_running_loop(), self._wake
        assert wake is not None, "called inside running()"
        unsubscribe = hub.subscribe("deliveries", lambda: loop.call_soon_threadsafe(wake.set))
        try:
            while not self._stopping.is_set():
                wake.clear()
                try:
                    timeout = await self._step()
                except Exception as error:
                    self._faults.failure("a round of the delivery loop", error)
                    timeout = min(self._settings.poll_interval_s, 0.5)
                if timeout > 0:
                    try:
                        await asyncio.wait_for(wake.wait(), timeout)
                    except TimeoutError:
                        pass
        finally:
            unsubscribe()

    async def _beat(self) -> None:
        while self.heartbeat is not None:
            self.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    async def drain(self, grace_s: float | None = None) -> None:
        """Graceful stop: let sends in flight finish (for up to `grace_s`, by
        default the shutdown grace), give the rest back, due now, and write what
        is left to write."""
        grace_s = self._grace_s if grace_s is None else grace_s
        pending = list(self._sending.values())
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace_s)
            unsent = [d for d, t in self._sending.items() if t in late]
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            await self._db_call(self._deliveries.release, unsent, self._clock())
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._flush()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop the loop `start` began and the database thread; sends in flight
        have `grace_s` (by default the shutdown grace) to finish, the rest are
        given back to the queue."""
        if grace_s is not None:
            self._grace_s = grace_s
        self._stopping.set()
        if self._thread is not None:
            if self._loop is not None and self._wake is not None:
                with contextlib.suppress(RuntimeError):  # its loop has ended already
                    self._loop.call_soon_threadsafe(self._wake.set)
            self._thread.join()
        self._db.shutdown(wait=True)


@lru_cache(maxsize=4096)
def _url(text: str) -> httpx.URL:
    """A webhook's URL parsed once, not at every send."""
    return httpx.URL(text)


def _error_kind(error: Exception, refused: targets.TargetRefused | None) -> ErrorKind:
    if refused is not None:
        return ErrorKind.REFUSED
    if isinstance(error, httpx.TimeoutException):
        return ErrorKind.TIMEOUT
    return ErrorKind.TRANSPORT


def _describe(error: Exception, refused: targets.TargetRefused | None, elapsed_s: float, status: int = 0) -> str:
    """An attempt's error text for a failed send; `status` is that of a response
    whose body could not be read whole."""
    if refused is not None:
        return f"refused: {refused}"
    if isinstance(error, httpx.TimeoutException):
        text = f"timed out ({type(error).__name__}) after {elapsed_s:.1f} s"
    else:
        text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return f"{text} reading the body of an HTTP {status} response" if status else text


async def _read_capped(response: httpx.Response, cap: int) -> tuple[bytes, bool]:
    """The first `cap` bytes of the body and whether there was more."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            break
    body = b"".join(chunks)
    return body[:cap], size > cap

"""The delivery worker: an asyncio loop in its own thread that claims due
deliveries, signs and POSTs them, and records every attempt.

Database calls run on one dedicated thread so the event loop never blocks on
them; attempt results are written in batches, one transaction per batch."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable
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
from ..storage import sending as store
from ..storage.database import FaultLog, clock_ms, database_fault, seconds_since_outage
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
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ):
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._rng = rng or random.Random()
        self._metrics = metrics
        self._policy = Policy(settings.schedule, int(settings.auto_disable_after_s * 1000), self._rng)
        self._db = ThreadPoolExecutor(1, thread_name_prefix="delivery-db")
        self._capacity = Capacity(settings.delivery_concurrency, settings.webhook_max_in_flight)
        self._next_slot: dict[str, float] = {}  # per rate-limited webhook: when its next request may start
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
        assert self._loop is not None
        return await self._loop.run_in_executor(self._db, fn, *args)

    # --- one iteration --------------------------------------------------------------

    async def run_once(self) -> int:
        """Claim what there is room for and start sending it; returns how many."""
        plan = self._capacity.plan()
        tasks = await self._db_call(
            store.claim_due,
            self._clock(),
            self._settings.delivery_concurrency - len(self._sending),
            int(self._settings.delivery_lease_s * 1000),
            plan.choose,
            self._settings.webhook_max_in_flight,
            plan.blocked,
        )
        for task in tasks:
            self._capacity.claimed(task.delivery.webhook_id)
            self._sending[task.delivery.id] = asyncio.create_task(self._send(task))
        return len(tasks)

    async def _step(self) -> float:
        """Claim what is due if there is room; returns how long to wait for a
        wake-up before looking again (0: look again at once)."""
        poll = self._settings.poll_interval_s
        if len(self._sending) >= self._settings.delivery_concurrency:
            return poll  # a finishing send wakes the loop
        if await self.run_once():
            return 0
        if self._sending:
            # Their webhooks are full, or nothing is due: a finishing send or new
            # deliveries wake the loop, and retries falling due meanwhile are
            # looked for at a short, fixed pace rather than after every send.
            return min(poll, 0.25)
        due = await self._db_call(store.next_due_time, self._capacity.plan().blocked)
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
        away (their sends hold their slots meanwhile); other errors, or a stop,
        end the tries after a few, and then the leases lapse and the deliveries
        are sent again."""
        delay, tries = 0.05, 0
        while True:
            try:
                recorded = await self._db_call(store.record_outcomes, batch, self._clock(), self.decide)
            except Exception as error:
                tries += 1
                if (database_fault(error) is None or self._stopping.is_set()) and tries >= 5:
                    self._faults.failure(f"recording {len(batch)} attempts (given up)", error)
                    return
                self._faults.failure(f"recording {len(batch)} attempts", error)
                await asyncio.sleep(delay)
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
                moved = await self._db_call(store.expedite_retries, webhook_id, self._clock(), EXPEDITE_BATCH)
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
        now = time.monotonic()
        slot = max(now, self._next_slot.get(webhook_id, now))
        spacing_s = capacity.request_spacing_s(task.rate_limit_per_s, self._settings.delivery_processes)
        self._next_slot[webhook_id] = slot + spacing_s
        if slot > now:
            await asyncio.sleep(slot - now)

    def decide(self, seen: Seen, webhook: WebhookHealth | None) -> Decision:
        """What an attempt leads to under this worker's retry policy; storage
        asks as it records the attempt, with the webhook's state at that time."""
        return decide(seen, webhook, self._policy)

    async def attempt(self, task: SendTask) -> AttemptOutcome:
        """One HTTP try of a delivery: what it saw."""
        assert self._http is not None
        d = task.delivery
        start_ms = self._clock()
        started = time.monotonic()
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
            error = _describe(exc, refused, time.monotonic() - started, status)
            # One outcome per attempt: a response that did not arrive whole within
            # the timeout is a failed attempt, whatever its status line said.
            status = 0
            if refused is None and not isinstance(exc, (httpx.HTTPError, httpx.InvalidURL)):
                log.warning("delivery %s: unexpected failure sending", d.id, exc_info=True)
        duration_ms = int((time.monotonic() - started) * 1000)
        seen = Seen(
            attempt_number=task.attempt_number,
            end_time=self._clock(),
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
        """Make the HTTP transport, on the event loop that will send with it (the
        loop does this itself; a test calling `attempt` does it first). Requests
        go to it straight, not through an httpx client: the worker follows no
        redirects and keeps no cookies, and a client's layers would double the
        CPU time of a send."""
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

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), name="delivery", daemon=True)
        self._thread.start()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        loop, wake = self._loop, self._wake
        unsubscribe = hub.subscribe("deliveries", lambda: loop.call_soon_threadsafe(wake.set))
        beating = asyncio.create_task(self._beat())
        await self.open()
        last_reap = float("-inf")
        # Lapsed leases only matter after a crash; look for them at a slow pace.
        lease_s = self._settings.delivery_lease_s
        reap_every = max(self._settings.poll_interval_s, lease_s / 2)
        try:
            while not self._stopping.is_set():
                wake.clear()
                try:
                    # Not for one lease after the database was away: nobody could
                    # record or renew meanwhile.
                    if time.monotonic() - last_reap > reap_every and seconds_since_outage() > lease_s:
                        await self._db_call(store.release_expired, self._clock(), list(self._sending))
                        self._capacity.forget_idle()
                        last_reap = time.monotonic()
                    timeout = await self._step()
                except Exception as error:
                    self._faults.failure("a round of the delivery loop", error)
                    timeout = min(self._settings.poll_interval_s, 0.5)
                if timeout > 0:
                    try:
                        await asyncio.wait_for(wake.wait(), timeout)
                    except TimeoutError:
                        pass
            await self._drain()
        finally:
            unsubscribe()
            beating.cancel()
            await self.close()

    async def _beat(self) -> None:
        while self.heartbeat is not None:
            self.heartbeat()
            await asyncio.sleep(HEARTBEAT_EVERY_S)

    async def _drain(self) -> None:
        """Graceful stop: let sends in flight finish within the grace, give the rest back."""
        pending = list(self._sending.values())
        if pending:
            _, late = await asyncio.wait(pending, timeout=self._grace_s)
            unsent = [d for d, t in self._sending.items() if t in late]
            for t in late:
                t.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            await self._db_call(store.release, unsent)
        if self._flusher is not None:
            await asyncio.gather(self._flusher, return_exceptions=True)
        await self._flush()

    def stop(self, grace_s: float | None = None) -> None:
        """Stop claiming; sends in flight have `grace_s` (by default the shutdown
        grace) to finish, the rest are given back to the queue."""
        if grace_s is not None:
            self._grace_s = grace_s
        self._stopping.set()
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)
        if self._thread is not None:
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

"""One attempt of the delivery worker against a real HTTP server on loopback:
each attempt has exactly one outcome."""

from __future__ import annotations

import asyncio
import base64
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from hookline.server.delivery.outcome import Decision, ErrorKind, Fate
from hookline.server.delivery.worker import DeliveryWorker
from hookline.server.settings import Settings
from hookline.server.storage.records import Delivery, SendTask, WebhookHealth
from hookline.server.storage.sending import AttemptOutcome

NOW_MS = 1_800_000_000_000
SECRET = "whsec_" + base64.b64encode(bytes(32)).decode()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
HEALTHY = WebhookHealth(enabled=True, failing_since=None)


@asynccontextmanager
async def loopback_server(handler: Handler) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


def _task(url: str) -> SendTask:
    delivery = Delivery(
        id="dlv_1", space_id="spc_1", webhook_id="wh_1", event_id="evt_1", event_type="WEBHOOK.TEST",
        job_id="", flow_id="", state="SENDING", attempt_count=0, next_attempt_time=NOW_MS,
        last_status_code=0, last_error="", create_time=NOW_MS, update_time=NOW_MS,
    )  # fmt: skip
    return SendTask(delivery=delivery, url=url, headers={}, secrets=[SECRET], body=b"{}", attempt_number=1, lease=0)


async def _attempt(handler: Handler, **settings: object) -> tuple[AttemptOutcome, Decision]:
    """The attempt, and what it leads to for a healthy webhook."""
    started = time.monotonic()
    worker = DeliveryWorker(
        Settings(allow_targets=["127.0.0.0/8"], **settings),  # type: ignore[arg-type]
        # From NOW_MS on, at the pace of real time: the attempt's duration is measured by it.
        clock=lambda: NOW_MS + int((time.monotonic() - started) * 1000),
        rng=random.Random(1),
    )
    async with loopback_server(handler) as url:
        await worker.open()
        try:
            outcome = await worker.attempt(_task(url))
            return outcome, worker.decide(outcome.seen, HEALTHY)
        finally:
            await worker.close()


def test_a_body_that_trickles_past_the_timeout_is_a_timeout_not_a_success() -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(status=200)
        response.content_length = 100
        await response.prepare(request)  # the status line and headers go at once
        for _ in range(100):
            await response.write(b"x")
            await asyncio.sleep(0.05)
        return response

    outcome, decision = asyncio.run(_attempt(trickle, request_timeout_s=0.5, retry_schedule="0,1s"))
    assert outcome.seen.ok is False
    assert outcome.seen.error_kind is ErrorKind.TIMEOUT
    assert decision.fate is Fate.RETRY
    assert decision.next_attempt_time is not None and decision.next_attempt_time > NOW_MS
    attempt = outcome.attempt
    assert attempt.status_code == 0  # no complete response: no status to judge by
    assert attempt.error.startswith("timed out (ReadTimeout) after 0.5 s")
    assert attempt.error.endswith("reading the body of an HTTP 200 response")
    assert 400 <= attempt.duration_ms < 1500


def test_a_whole_response_within_the_timeout_is_a_success() -> None:
    async def ok(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(text="fine")

    outcome, decision = asyncio.run(_attempt(ok, request_timeout_s=0.5))
    assert (outcome.seen.ok, decision.fate, outcome.seen.error_kind) == (True, Fate.SUCCEEDED, ErrorKind.NONE)
    assert (outcome.attempt.status_code, outcome.attempt.error, outcome.attempt.response_body) == (200, "", b"fine")

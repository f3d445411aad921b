"""What a worker-tier test drives the delivery worker with: a clock the test
moves (and the worker's own waits move), receivers played by
httpx.MockTransport, and webhooks and deliveries made by storage on a real
database. Nothing here sleeps or opens a socket."""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from hookline.server.delivery.worker import DeliveryWorker
from hookline.server.settings import Settings
from hookline.server.storage import deliveries, models, spaces, webhooks
from hookline.server.storage.queues import DeliveryQueue
from hookline.server.storage.records import Delivery

T = TypeVar("T")
NOW_MS = 1_800_000_000_000
SECRET = "whsec_" + base64.b64encode(bytes(32)).decode()
BASE_URL = "https://receiver.example"


class Clock:
    """The worker's clock, in ms since the epoch; the worker's own waits (its
    `sleep`) move it on rather than pass real time."""

    def __init__(self, now_ms: int = NOW_MS) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)

    async def elapse(self, seconds: float) -> None:
        """A wait that ends at once, at the time it would have ended."""
        self.advance(seconds)


class NoJitter(random.Random):
    """Retry delays exactly as the schedule says (the jitter has unit tests of its own)."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


# A scripted answer: a status, a whole response, or a function of the request
# (it may raise an httpx error, or wait for something the test sets).
Reply = int | httpx.Response | Callable[[httpx.Request], Awaitable[httpx.Response]]


@dataclass
class Arrival:
    path: str
    request: httpx.Request
    time_ms: int  # by the worker's clock


@dataclass
class Receivers:
    """Every webhook's receiver: records each request and answers per path with
    its script (the last reply repeats; 200 by default)."""

    clock: Clock
    arrivals: list[Arrival] = field(default_factory=list)
    scripts: dict[str, list[Reply]] = field(default_factory=dict)

    def respond(self, path: str, replies: list[Reply]) -> None:
        self.scripts[path] = list(replies)

    def at(self, path: str) -> list[Arrival]:
        return [a for a in self.arrivals if a.path == path]

    async def answer(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.arrivals.append(Arrival(path, request, self.clock()))
        script = self.scripts.get(path) or [200]
        reply = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(reply, int):
            return httpx.Response(reply, json={"ok": reply < 300})
        if isinstance(reply, httpx.Response):
            return reply
        return await reply(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.answer)


@dataclass
class Bench:
    """Webhooks and deliveries in the test's database, and workers to send them."""

    clock: Clock
    receivers: Receivers
    space_id: str = ""

    def webhook(self, path: str, replies: list[Reply] | None = None, **fields: Any) -> str:
        """A webhook of WEBHOOK.TEST at `path`, answering `replies`; returns its id."""
        if not self.space_id:
            self.space_id, _ = spaces.create_space("worker-tier")
        if replies is not None:
            self.receivers.respond(path, replies)
        values: dict[str, Any] = dict(
            alias=path.strip("/").replace("/", "-"),
            url=BASE_URL + path,
            event_types=["WEBHOOK.TEST"],
            headers={},
            rate_limit_per_s=0,
        )
        values.update(fields)
        return webhooks.create_webhook(self.space_id, values, SECRET).id

    def queue(self, webhook_id: str, count: int = 1, event_type: str = "WEBHOOK.TEST") -> list[str]:
        """`count` deliveries to the webhook, due now by the clock; their ids."""
        target = models.Webhook.get_by_id(webhook_id)
        made = []
        with models.db.atomic():
            for n in range(count):
                _, [delivery] = deliveries.record_event(
                    self.space_id,
                    event_type,
                    lambda event_id, time_ms, n=n: json.dumps({"id": event_id, "n": n, "at": time_ms}).encode(),
                    [target],
                    webhook_id=webhook_id,
                    now=self.clock(),
                )
                made.append(delivery.id)
        return made

    def worker(self, deliveries: DeliveryQueue | None = None, **settings: Any) -> DeliveryWorker:
        """A worker with these settings, over the database or the `deliveries` given."""
        values: dict[str, Any] = dict(retry_schedule="0,10s,1m", poll_interval_s=1.0)
        values.update(settings)
        return DeliveryWorker(
            Settings(**values),
            transport=self.receivers.transport(),
            clock=self.clock,
            sleep=self.clock.elapse,
            rng=NoJitter(),
            deliveries=deliveries,
        )


async def step(worker: DeliveryWorker) -> int:
    """One round of the worker, and every send it started recorded; how many it claimed."""
    claimed = await worker.run_once()
    await worker.settled()
    return claimed


def running(worker: DeliveryWorker, steps: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `steps` on a new event loop, inside the worker's `running()`."""

    async def main() -> T:
        async with worker.running():
            return await steps()

    try:
        return asyncio.run(main())
    finally:
        worker.stop()  # its database thread


def delivery(delivery_id: str) -> Delivery:
    return Delivery.from_row(models.Delivery.get_by_id(delivery_id))


def attempts(delivery_id: str) -> list[models.Attempt]:
    return list(
        models.Attempt.select().where(models.Attempt.delivery_id == delivery_id).order_by(models.Attempt.number)
    )


def changes(delivery_id: str) -> list[tuple[str, int]]:
    """The delivery's changes as the change log tells them: (kind, time)."""
    rows = models.DeliveryChange.select().where(models.DeliveryChange.delivery_id == delivery_id)
    return [(c.kind, c.time) for c in deliveries.as_changes(list(rows.order_by(models.DeliveryChange.seq)))]

"""Open watchers do not take what ordinary calls need: with every stream slot
taken (the default cap of 100, on the server `hookline serve` builds), unary
calls are still served, and the change log is read about as often with 100
watchers as with one, because one feed reads it for all of them."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from conftest import Watching
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hookline.client import (
    Client,
    DeliveryEventKind,
    ListWebhooksRequest,
    SendTestEventRequest,
    WatchDeliveriesRequest,
)
from hookline.server.api.senders import BASE
from hookline.server.app import Hookline, create_server
from hookline.server.settings import Settings
from hookline.server.storage import deliveries, models, spaces

from .helpers import make_flow, make_webhook, start_job, unique, wait_job

SUCCEEDED = DeliveryEventKind.DELIVERY_EVENT_KIND_SUCCEEDED
CAP = Settings().max_streams


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(listen="127.0.0.1:0", poll_interval_s=2.0)


@pytest.fixture(scope="module")
def address(hookline_app: Hookline) -> Iterator[str]:
    """The server `hookline serve` runs (its thread pool and stream cap), on a free port."""
    server, port = create_server(hookline_app)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None).wait()


@pytest.fixture(scope="module")
def client(address: str, hookline_app: Hookline) -> Iterator[Client]:
    with Client(address, hookline_app.admin_key) as client:
        yield client


def first_message(stream: Any, timeout: float) -> Any:
    """The stream's first message, its error, or None if neither came within `timeout`."""
    got: list[Any] = []

    def read() -> None:
        try:
            got.append(next(stream))
        except grpc.RpcError as error:
            got.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return got[0] if got else None


def watch(client: Client, count: int) -> list[Watching]:
    """`count` space-wide WatchDeliveries streams, each past its first SYNC (a slot
    a stream of an earlier test still holds is waited for)."""
    opened: list[Watching] = []
    deadline = time.monotonic() + 10
    while len(opened) < count:
        watching = Watching(client.webhooks.WatchDeliveries(WatchDeliveriesRequest(), timeout=120))
        try:
            watching.wait_for(bool, what="the first SYNC")
        except AssertionError:
            refused = watching.error is not None and watching.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            if not refused or time.monotonic() > deadline:
                raise
            time.sleep(0.05)
            continue
        opened.append(watching)
    return opened


class HeldReflection:
    """A reflection stream kept open: it asks once and never hangs up."""

    def __init__(self, address: str):
        self._channel = grpc.insecure_channel(address)
        self._hang_up = threading.Event()

        def requests() -> Iterator[reflection_pb2.ServerReflectionRequest]:
            yield reflection_pb2.ServerReflectionRequest(list_services="")
            self._hang_up.wait()

        stub = reflection_pb2_grpc.ServerReflectionStub(self._channel)
        self.call = stub.ServerReflectionInfo(requests(), timeout=120)

    def close(self) -> None:
        self._hang_up.set()
        self.call.cancel()
        self._channel.close()


def delivered(delivery_id: str) -> Callable[[list[Any]], bool]:
    return lambda ms: any(m.delivery.id == delivery_id and m.kind == SUCCEEDED for m in ms)


def test_unary_calls_are_served_while_every_stream_slot_is_taken(client, address, hookline_app, receiver):
    hook = make_webhook(client, receiver.url("/" + unique("w"))).webhook
    watchers: list[Watching] = []
    held: list[HeldReflection] = []
    try:
        watchers = watch(client, CAP)
        # A stream of a service that needs no key holds a thread as well.
        held = [HeldReflection(address) for _ in range(40)]
        answers = [first_message(h.call, 2) for h in held]
        refused = [a for a in answers if isinstance(a, grpc.RpcError)]
        assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in refused), refused

        # Ordinary calls, on a connection of their own, while changes flow to every stream.
        with Client(address, hookline_app.admin_key) as other:
            other.webhooks.ListWebhooks(ListWebhooksRequest(), timeout=10)
            sent = other.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id), timeout=10)
            flow = make_flow(other, [])
            wait_job(other, start_job(other, flow.id, {}).id)
        for watching in watchers:
            watching.wait_for(delivered(sent.delivery.id), what="the test event's delivery")
    finally:
        for h in held:
            h.close()
        for watching in watchers:
            watching.stop()


# A read of the change log from a position: what each stream did for itself on each wake-up.
CHANGE_LOG_READ = re.compile(f'FROM "{models.DeliveryChange._meta.table_name}".*"seq" >', re.S)


@pytest.fixture
def change_log_reads(hookline_app: Hookline, monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    """Counts the statements that read the change log from a position, in every thread."""
    database = models.db.obj
    execute_sql = database.execute_sql
    count = 0
    lock = threading.Lock()

    def counting(sql: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        if CHANGE_LOG_READ.search(sql):
            with lock:
                count += 1
        return execute_sql(sql, *args, **kwargs)

    monkeypatch.setattr(database, "execute_sql", counting)
    return lambda: count


def test_the_change_log_is_read_as_often_for_100_watchers_as_for_one(client, receiver, change_log_reads):
    hook = make_webhook(client, receiver.url("/" + unique("w"))).webhook

    def reads_for(watchers: list[Watching], events: int = 5) -> int:
        before = change_log_reads()
        for _ in range(events):
            sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
            for watching in watchers:
                watching.wait_for(delivered(sent.delivery.id), what="the test event's delivery")
        return change_log_reads() - before

    watchers = watch(client, 1)
    try:
        alone = reads_for(watchers)
        watchers += watch(client, CAP - 1)
        together = reads_for(watchers)
    finally:
        for watching in watchers:
            watching.stop()
    assert alone > 0
    assert together <= 2 * alone + 5, f"{together} change-log reads for {CAP} watchers, {alone} for one"


def test_clients_that_stop_reading_do_not_hold_up_the_other_streams(client, address, hookline_app, receiver):
    # Streams run on a few sender threads; sending blocks once a client's window
    # is full (kept small here), so each stuck client holds a sender up and
    # another one must take over the rest.
    hook = make_webhook(client, receiver.url("/" + unique("w"))).webhook
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    delivery = deliveries.get_delivery(spaces.space_id_by_name(spaces.DEFAULT_SPACE), sent.delivery.id)
    small_window = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024)]
    stuck_channels = [grpc.insecure_channel(address, options=small_window) for _ in range(BASE + 1)]
    stuck = []
    reader = Watching(client.webhooks.WatchDeliveries(WatchDeliveriesRequest(), timeout=120))
    try:
        for channel in stuck_channels:
            stream = Client(channel=channel, api_key=hookline_app.admin_key).webhooks.WatchDeliveries(
                WatchDeliveriesRequest(), timeout=120
            )
            assert next(stream).kind == DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC  # and never read again
            stuck.append(stream)
        reader.wait_for(bool, what="the first SYNC")
        count = 3000
        with models.db.atomic():
            changes: list[dict[str, Any]] = []
            for _ in range(count):
                deliveries.log_change(changes, delivery, "RETRY_SCHEDULED", delivery.update_time)
            deliveries.flush_changes(changes)
        reader.wait_for(
            lambda ms: sum(m.kind == DeliveryEventKind.DELIVERY_EVENT_KIND_RETRY_SCHEDULED for m in ms) >= count,
            timeout=60,
            what=f"{count} changes on the stream that reads",
        )
        assert hookline_app.senders.threads() > BASE  # the stuck clients held senders up
    finally:
        reader.stop()
        for stream in stuck:
            stream.cancel()
        for channel in stuck_channels:
            channel.close()

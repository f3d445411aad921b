"""WatchDeliveries cursors across retention purges that empty the change log and
server restarts: positions never go back, a cursor whose changes were purged is
OUT_OF_RANGE, and every other cursor resumes with exactly the changes after it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import pytest
from conftest import Watching

from hookline.client import Client, DeliveryEventKind, SendTestEventRequest, WatchDeliveriesRequest
from hookline.server.app import Hookline, create_server
from hookline.server.purger import Purger
from hookline.server.settings import Settings
from hookline.server.storage.database import now_ms
from hookline.server.streams import decode_cursor

from .helpers import make_webhook, rpc_error, violations

SYNC = DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC
SUCCEEDED = DeliveryEventKind.DELIVERY_EVENT_KIND_SUCCEEDED


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    # One data dir (or PostgreSQL database) that every server of the module opens in turn.
    return make_settings(listen="127.0.0.1:0")


@contextmanager
def serving(settings: Settings) -> Iterator[Client]:
    """A server on `settings` for the length of the block, and a client of it."""
    app = Hookline(settings)
    server, port = create_server(app)
    server.start()
    app.start_background()
    client = Client(f"127.0.0.1:{port}", app.admin_key)
    try:
        yield client
    finally:
        client.close()
        app.end_streams()
        server.stop(grace=None).wait()
        app.stop()


def purge_everything(settings: Settings) -> dict[str, int]:
    """Run the retention purger as if every record were past its age."""
    ahead_ms = int(max(settings.retention_s, settings.job_retention_s) * 1000) + 60_000
    return Purger(settings, clock=lambda: now_ms() + ahead_ms).purge_once()


def watch(client: Client, cursor: str = "") -> Watching:
    return Watching(client.webhooks.WatchDeliveries(WatchDeliveriesRequest(cursor=cursor), timeout=30))


def deliver_test_events(client: Client, webhook_id: str, count: int) -> list[str]:
    """Send `count` test events one by one, each delivered before the next; their delivery ids."""
    ids = []
    for _ in range(count):
        stream = watch(client)
        stream.wait_for(lambda m: len(m) >= 1, what="the first SYNC")
        sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook_id))
        stream.wait_for(lambda m, d=sent.delivery.id: succeeded(m, d), what="the delivery's success")
        stream.stop()
        ids.append(sent.delivery.id)
    return ids


def succeeded(messages: list, delivery_id: str) -> bool:
    return any(m.kind == SUCCEEDED and m.delivery.id == delivery_id for m in messages)


def changes_seen(stream: Watching, delivery_ids: list[str]) -> list:
    """The stream's messages once every delivery in `delivery_ids` has succeeded in it, SYNCs left out."""
    messages = stream.wait_for(
        lambda m: all(succeeded(m, d) for d in delivery_ids), what=f"the successes of {delivery_ids}"
    )
    stream.stop()
    return [m for m in messages if m.kind != SYNC]


def log_entries(messages: list) -> int:
    """How many change-log entries the messages come from: an attempt's result and
    what it led to are one entry, the result's cursor a position within it."""
    return sum(decode_cursor(m.cursor)[1] == 0 for m in messages)


def out_of_range(client: Client, cursor: str) -> grpc.RpcError:
    error = rpc_error(
        grpc.StatusCode.OUT_OF_RANGE,
        lambda r: next(iter(client.webhooks.WatchDeliveries(r))),
        WatchDeliveriesRequest(cursor=cursor),
    )
    assert "start again without" in error.details()
    assert "cursor" in violations(error)
    return error


def test_cursors_after_the_whole_change_log_is_purged(hookline_settings: Settings, receiver) -> None:
    with serving(hookline_settings) as client:
        webhook = make_webhook(client, receiver.url("/purged-cursors")).webhook
        stream = watch(client)
        stream.wait_for(lambda m: len(m) >= 1, what="the first SYNC")
        before = deliver_test_events(client, webhook.id, 2)
        pre_purge = changes_seen(stream, before)
        old_cursor, last_cursor = pre_purge[0].cursor, pre_purge[-1].cursor
        assert purge_everything(hookline_settings)["changes"] == log_entries(pre_purge)

    with serving(hookline_settings) as client:
        out_of_range(client, old_cursor)  # the changes right after it are gone
        fresh = watch(client)
        fresh_cursor = fresh.wait_for(lambda m: len(m) >= 1, what="the first SYNC")[0].cursor
        resumed = watch(client, last_cursor)
        assert resumed.wait_for(lambda m: len(m) >= 1, what="the first SYNC")[0].cursor == last_cursor
        after_purge = deliver_test_events(client, webhook.id, 1)
        live = changes_seen(resumed, after_purge)
        assert [m.delivery.id for m in live] == [after_purge[0]] * len(live)
        assert [m.cursor for m in changes_seen(fresh, after_purge)] == [m.cursor for m in live]
        # A cursor handed out on the emptied log resumes too, once the stream that got it has gone.
        replayed = changes_seen(watch(client, fresh_cursor), after_purge)
        assert [m.cursor for m in replayed] == [m.cursor for m in live]
        newest_cursor = live[-1].cursor
        out_of_range(client, old_cursor)  # still: nothing written since makes up for the purged changes

    with serving(hookline_settings) as client:
        # After a restart on what the purge left, cursors mean what they meant.
        replayed = changes_seen(watch(client, last_cursor), after_purge)
        assert [m.cursor for m in replayed] == [m.cursor for m in live]
        assert purge_everything(hookline_settings)["changes"] == log_entries(live)

    with serving(hookline_settings) as client:
        out_of_range(client, old_cursor)
        out_of_range(client, last_cursor)  # the changes after it were purged this time
        resumed = watch(client, newest_cursor)
        later = deliver_test_events(client, webhook.id, 1)
        latest = changes_seen(resumed, later)
        assert {m.delivery.id for m in latest} == set(later)
        replayed = changes_seen(watch(client, newest_cursor), later)
        assert [m.cursor for m in replayed] == [m.cursor for m in latest]

"""Open streams are capped (here at 2): past the cap a new stream is
RESOURCE_EXHAUSTED while ordinary calls keep working, and a closed stream frees
its slot."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest

from hookline.client import DeliveryEventKind, ListWebhooksRequest, WatchDeliveriesRequest
from hookline.server.settings import Settings

from .helpers import rpc_error, wait_until


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        max_streams=2,
        poll_interval_s=0.1,
        stream_heartbeat_s=0.5,
    )


def open_stream(client):  # type: ignore[no-untyped-def]
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(), timeout=30)
    assert next(stream).kind == DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC
    return stream


def test_streams_past_the_cap_are_resource_exhausted(client):
    first, second = open_stream(client), open_stream(client)
    try:
        error = rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, open_stream, client)
        assert "2" in error.details()
        # Ordinary calls are not starved.
        client.webhooks.ListWebhooks(ListWebhooksRequest(), timeout=5)
    finally:
        first.cancel()

    def try_open():  # type: ignore[no-untyped-def]
        try:
            return open_stream(client)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return None

    third = wait_until(try_open, lambda s: s is not None, timeout=5, what="a freed stream slot")
    third.cancel()
    second.cancel()

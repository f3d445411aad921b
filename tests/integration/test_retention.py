"""Retention: events, deliveries, attempts, the change log and ended jobs older
than their configured ages are purged; live work is kept."""

from __future__ import annotations

import time
from collections.abc import Callable

import grpc
import pytest

from hookline.client import (
    DeliveryState,
    GetDeliveryRequest,
    GetEventRequest,
    GetJobRequest,
    ListAttemptsRequest,
    SendTestEventRequest,
    WatchDeliveriesRequest,
)
from hookline.server.settings import Settings

from .helpers import make_flow, make_webhook, rpc_error, start_job, wait_delivery, wait_job, wait_until

AGE_S = 1.0


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        retry_schedule="0,1h",
        poll_interval_s=0.2,
        retention_s=AGE_S,
        job_retention_s=AGE_S,
    )


def test_old_records_are_purged_and_live_ones_kept(client, receiver, hookline_app):
    done = make_webhook(client, receiver.url("/kept-briefly")).webhook
    receiver.respond("/still-retrying", [500])
    retrying = make_webhook(client, receiver.url("/still-retrying")).webhook
    flow = make_flow(client, [{"transform": "@"}])
    job = wait_job(client, start_job(client, flow.id, {"a": 1}).id)

    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest())
    old_cursor = next(stream).cursor
    stream.cancel()
    finished = client.webhooks.SendTestEvent(SendTestEventRequest(id=done.id))
    pending = client.webhooks.SendTestEvent(SendTestEventRequest(id=retrying.id))
    wait_delivery(client, finished.delivery.id)
    # Back to PENDING after its first attempt failed (it is PENDING before that attempt too).
    retried = wait_until(
        lambda: client.webhooks.GetDelivery(GetDeliveryRequest(id=pending.delivery.id)),
        lambda d: d.attempt_count >= 1 and d.state == DeliveryState.DELIVERY_STATE_PENDING,
        what="the failing delivery waiting for its retry",
    )
    assert retried.attempt_count == 1

    time.sleep(AGE_S + 0.2)
    hookline_app.purger.purge_once()  # the background purger may have been first; either way

    rpc_error(grpc.StatusCode.NOT_FOUND, client.jobs.GetJob, GetJobRequest(id=job.id))
    rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.GetDelivery, GetDeliveryRequest(id=finished.delivery.id))
    rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.GetEvent, GetEventRequest(id=finished.event.id))
    rpc_error(
        grpc.StatusCode.NOT_FOUND, client.webhooks.ListAttempts, ListAttemptsRequest(delivery_id=finished.delivery.id)
    )
    # A delivery still waiting for its retry is live work: it stays, with its event and attempts.
    kept = client.webhooks.GetDelivery(GetDeliveryRequest(id=pending.delivery.id))
    assert kept.state == DeliveryState.DELIVERY_STATE_PENDING
    assert client.webhooks.GetEvent(GetEventRequest(id=pending.event.id)).body
    assert len(client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=pending.delivery.id)).attempts) == 1
    # A cursor from before the purged part of the change log cannot resume without a gap.
    error = rpc_error(
        grpc.StatusCode.OUT_OF_RANGE,
        lambda r: next(iter(client.webhooks.WatchDeliveries(r))),
        WatchDeliveriesRequest(cursor=old_cursor),
    )
    assert "older than the retained" in error.details()


def test_the_purger_runs_by_itself(client, receiver):
    webhook = make_webhook(client, receiver.url("/background")).webhook
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook.id))
    wait_delivery(client, sent.delivery.id)
    deadline = time.monotonic() + AGE_S + 5
    while time.monotonic() < deadline:
        try:
            client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id))
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            return
        time.sleep(0.1)
    raise AssertionError("the background purger did not remove an old delivery")

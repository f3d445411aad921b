"""Isolation: an endpoint that hangs until the timeout does not hold up
deliveries to a healthy one (each webhook has a cap on requests in flight)."""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import Reply

from hookline.client import ListAttemptsRequest, ListDeliveriesRequest
from hookline.server.settings import Settings

from .helpers import list_all, make_flow, make_webhook, start_job, wait_until

JOBS = 500
CAP = 8


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        retry_schedule="0,1h",
        poll_interval_s=0.2,
        request_timeout_s=2.0,
        webhook_max_in_flight=CAP,
    )


def test_a_hanging_endpoint_does_not_hold_up_a_healthy_one(client, receiver):
    receiver.respond("/hangs", [Reply(200, delay_s=10)])
    events = ["JOB.COMPLETED"]
    hanging = make_webhook(client, receiver.url("/hangs"), event_types=events).webhook
    healthy = make_webhook(client, receiver.url("/healthy"), event_types=events).webhook
    flow = make_flow(client, [{"transform": "{n: n}"}], webhook_ids=[hanging.id, healthy.id])

    with ThreadPoolExecutor(8) as pool:
        jobs = list(pool.map(lambda n: start_job(client, flow.id, {"n": n}).id, range(JOBS)))

    arrived = receiver.wait_for("/healthy", JOBS, timeout=120)
    assert {json.loads(r.body)["data"]["jobId"] for r in arrived} == set(jobs)
    # Each hanging request holds a slot for the 2 s timeout, 8 slots at a time: had
    # the healthy webhook waited behind it, the hanging one would have seen far more.
    assert CAP <= len(receiver.at("/hangs")) < JOBS / 5
    # Never more than CAP requests to it at once, by hookline's own attempt records.
    attempts = [
        a
        for d in list_all(client.webhooks.ListDeliveries, ListDeliveriesRequest(webhook_id=hanging.id), "deliveries")
        for a in client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=d.id)).attempts
    ]
    edges = sorted(
        [(a.start_time.ToMilliseconds(), 1) for a in attempts]
        + [(a.start_time.ToMilliseconds() + a.duration_ms, -1) for a in attempts]
    )
    in_flight = peak = 0
    for _, step in edges:  # an end sorts before a start at the same millisecond
        in_flight += step
        peak = max(peak, in_flight)
    assert peak <= CAP


def test_a_full_webhook_s_backlog_does_not_hide_other_webhooks_deliveries(client, receiver):
    # More deliveries of a hanging webhook are due, earlier, than one claim looks
    # at (delivery concurrency x per-webhook cap = 512); another webhook's
    # delivery behind them still goes out at once.
    receiver.respond("/hangs-long", [Reply(200, delay_s=10)])
    events = ["JOB.COMPLETED"]
    hanging = make_webhook(client, receiver.url("/hangs-long"), event_types=events).webhook
    flow = make_flow(client, [{"transform": "{n: n}"}], webhook_ids=[hanging.id])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: start_job(client, flow.id, {"n": n}).id, range(600)))
    wait_until(
        lambda: len(
            list_all(client.webhooks.ListDeliveries, ListDeliveriesRequest(webhook_id=hanging.id), "deliveries")
        ),
        lambda n: n == 600,
        what="600 deliveries to the hanging webhook",
    )
    healthy = make_webhook(client, receiver.url("/behind"), event_types=events).webhook
    behind = make_flow(client, [{"transform": "{n: n}"}], webhook_ids=[healthy.id])
    job = start_job(client, behind.id, {"n": 1})
    [arrived] = receiver.wait_for("/behind", 1, timeout=5)
    assert json.loads(arrived.body)["data"]["jobId"] == job.id

"""The attempt timeout and the response-capture cap are settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Reply

from hookline.client import (
    DeliveryEventKind,
    DeliveryState,
    GetDeliveryRequest,
    ListAttemptsRequest,
    ListDeliveriesRequest,
    SendTestEventRequest,
    WatchDeliveriesRequest,
)
from hookline.server.settings import Settings
from hookline.server.storage import models as m

from .helpers import make_webhook, wait_until

KIND = DeliveryEventKind


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        retry_schedule="0,100ms",
        poll_interval_s=0.2,
        request_timeout_s=0.5,
        response_capture_bytes=100,
    )


def _first_attempt(client, receiver, path: str, reply: Reply):  # type: ignore[no-untyped-def]
    receiver.respond(path, [reply, 200])
    webhook = make_webhook(client, receiver.url(path)).webhook
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook.id))
    attempts = wait_until(
        lambda: client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=sent.delivery.id)).attempts,
        lambda a: len(a) >= 1,
    )
    return attempts[0]


def test_a_slow_receiver_times_out_at_the_configured_timeout(client, receiver):
    attempt = _first_attempt(client, receiver, "/slow", Reply(200, delay_s=3))
    assert attempt.status_code == 0
    assert "timed out" in attempt.error
    assert 400 <= attempt.duration_ms < 2000


def test_only_the_configured_bytes_of_a_response_are_kept(client, receiver):
    body = b"x" * 1000
    attempt = _first_attempt(client, receiver, "/chatty", Reply(500, body=body))
    assert attempt.status_code == 500
    assert attempt.response_body == body[:100]
    assert attempt.response_truncated is True


def test_a_short_response_is_kept_whole(client, receiver):
    attempt = _first_attempt(client, receiver, "/brief", Reply(500, body=b'{"error":"no"}'))
    assert attempt.response_body == b'{"error":"no"}'
    assert attempt.response_truncated is False
    assert attempt.response_headers["content-type"] == "application/json"


def test_a_body_trickling_past_the_timeout_is_one_outcome_everywhere(client, receiver, hookline_app):
    # The status line and headers come at once, the body a byte every 50 ms: the
    # response is not whole within the 0.5 s timeout, so the attempt timed out.
    unfinished = [DeliveryState.DELIVERY_STATE_PENDING, DeliveryState.DELIVERY_STATE_SENDING]
    wait_until(  # the other tests' retries are over, so the counters move for this one only
        lambda: [client.webhooks.ListDeliveries(ListDeliveriesRequest(state=s)).deliveries for s in unfinished],
        lambda found: not any(found),
        what="no delivery unfinished",
    )
    retried = hookline_app.metrics.registry.get_sample_value
    labels = [{"outcome": o} for o in ("succeeded", "retry", "failed")]
    # The worker counts an attempt just after recording it: wait until every recorded one is counted.
    counted = wait_until(
        lambda: [retried("hookline_delivery_attempts_total", label) or 0 for label in labels],
        lambda n: sum(n) == m.Attempt.select().count(),
        what="every recorded attempt counted",
    )
    receiver.respond("/trickles", [Reply(200, body=b"x" * 100, trickle_s=0.05), 200])
    webhook = make_webhook(client, receiver.url("/trickles")).webhook
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=webhook.id), timeout=20)
    next(stream)  # SYNC: the stream is open
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook.id))
    seen = []
    for message in stream:
        seen.append(message)
        if message.kind in (KIND.DELIVERY_EVENT_KIND_SUCCEEDED, KIND.DELIVERY_EVENT_KIND_FAILED):
            break
    stream.cancel()

    first, second = client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=sent.delivery.id)).attempts
    assert (first.status_code, second.status_code) == (0, 200)
    assert first.error.startswith("timed out") and first.error.endswith("reading the body of an HTTP 200 response")
    results = [m.attempt for m in seen if m.kind == KIND.DELIVERY_EVENT_KIND_ATTEMPT_RESULT]
    assert [(a.status_code, a.error) for a in results] == [(0, first.error), (200, "")]
    kinds = [KIND.Name(m.kind).removeprefix("DELIVERY_EVENT_KIND_") for m in seen if m.delivery.id == sent.delivery.id]
    attempt = ["ATTEMPT_STARTED", "ATTEMPT_RESULT"]
    assert kinds == ["QUEUED", *attempt, "RETRY_SCHEDULED", *attempt, "SUCCEEDED"]
    delivery = client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id))
    assert (delivery.state, delivery.attempt_count) == (DeliveryState.DELIVERY_STATE_SUCCEEDED, 2)
    # One retry and one success counted, as recorded.
    now = wait_until(
        lambda: [retried("hookline_delivery_attempts_total", label) or 0 for label in labels],
        lambda n: n[0] >= counted[0] + 1,
        what="the success counted",
    )
    assert [b - a for a, b in zip(counted, now, strict=True)] == [1, 1, 0]

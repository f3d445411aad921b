"""After an outage (DESIGN §5): when a webhook that was failing succeeds again,
its deliveries waiting for a retry are sent soon after, not at their scheduled
times, paced by the webhook's rate limit; those its receiver asked to wait for
(429 with Retry-After) keep their times."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from conftest import Reply

from hookline.client import DeliveryState, GetDeliveryRequest, SendTestEventRequest
from hookline.server.settings import Settings

from .helpers import make_webhook, wait_until

WAITING = 10
RATE_PER_S = 10
PENDING = DeliveryState.DELIVERY_STATE_PENDING
SUCCEEDED = DeliveryState.DELIVERY_STATE_SUCCEEDED


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(retry_schedule="0,1m,1m")


def test_retries_waiting_on_a_recovered_webhook_are_sent_soon(client, receiver):
    path = "/recovers"
    receiver.respond(path, [Reply(429, {"Retry-After": "120"}), 500])  # then 500 until it recovers
    webhook = make_webhook(client, receiver.url(path), rate_limit_per_s=RATE_PER_S).webhook

    def send() -> str:
        return client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook.id)).delivery.id

    def get(delivery_id: str):  # type: ignore[no-untyped-def]
        return client.webhooks.GetDelivery(GetDeliveryRequest(id=delivery_id))

    def waiting(delivery_id: str) -> bool:
        d = get(delivery_id)
        return d.state == PENDING and d.attempt_count == 1

    throttled = send()
    wait_until(lambda: waiting(throttled), bool, what="the 429 recorded")
    failed = [send() for _ in range(WAITING)]
    for delivery_id in failed:
        wait_until(lambda delivery_id=delivery_id: waiting(delivery_id), bool, what=f"{delivery_id} waiting")
    assert len(receiver.at(path)) == WAITING + 1
    assert all(get(d).next_attempt_time.ToSeconds() - time.time() > 40 for d in failed)

    receiver.respond(path, [200])  # the receiver is back
    recovered_at = time.time()
    first_success = send()
    arrived = receiver.wait_for(path, 2 * WAITING + 2, timeout=10)  # not after the minute
    for delivery_id in [first_success, *failed]:
        wait_until(lambda delivery_id=delivery_id: get(delivery_id).state, lambda s: s == SUCCEEDED)
    assert all(get(d).attempt_count == 2 for d in failed)
    retried = sorted(r.time for r in arrived[WAITING + 2 :])
    assert retried[-1] - recovered_at < 5
    # Paced by the webhook's rate limit, not all at once.
    assert retried[-1] - retried[0] >= (WAITING - 2) / RATE_PER_S
    # The receiver asked for two minutes on the 429: that one still waits.
    assert waiting(throttled)
    assert get(throttled).next_attempt_time.ToSeconds() - time.time() > 60

"""Retry semantics a receiver controls (DESIGN §5): Retry-After on 429 and 503,
in seconds or as an HTTP date, clamped to an hour; 3xx is a failure and is not
followed."""

from __future__ import annotations

import time
from email.utils import formatdate

from conftest import Reply

from hookline.client import DeliveryState, GetDeliveryRequest, ListAttemptsRequest, SendTestEventRequest

from .helpers import make_webhook, wait_until

PENDING = DeliveryState.DELIVERY_STATE_PENDING
SUCCEEDED = DeliveryState.DELIVERY_STATE_SUCCEEDED


def _send(client, receiver, path: str, replies: list) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    receiver.respond(path, replies)
    webhook = make_webhook(client, receiver.url(path)).webhook
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook.id))
    return webhook.id, sent.delivery.id


def _attempts(client, delivery_id: str):  # type: ignore[no-untyped-def]
    return list(client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=delivery_id)).attempts)


def test_retry_after_seconds_delays_the_next_attempt(client, receiver):
    # The schedule says 100 ms; the receiver asks for 1 s and gets it.
    _, delivery_id = _send(client, receiver, "/after-seconds", [Reply(503, {"Retry-After": "1"}), 200])
    first, second = receiver.wait_for("/after-seconds", 2, timeout=10)
    assert second.time - first.time >= 0.95
    wait_until(lambda: _attempts(client, delivery_id), lambda a: len(a) == 2 and a[1].status_code == 200)


def test_retry_after_as_an_http_date(client, receiver):
    when = formatdate(time.time() + 3, usegmt=True)
    _send(client, receiver, "/after-date", [Reply(429, {"Retry-After": when}), 200])
    first, second = receiver.wait_for("/after-date", 2, timeout=10)
    assert second.time - first.time >= 1.5  # the date has whole seconds; at least most of the 3 s


def test_retry_after_is_clamped_to_an_hour(client, receiver):
    _, delivery_id = _send(client, receiver, "/after-long", [Reply(429, {"Retry-After": "86400"})])
    receiver.wait_for("/after-long", 1)
    delivery = wait_until(lambda: _get(client, delivery_id), lambda d: d.attempt_count == 1 and d.state == PENDING)
    wait_s = delivery.next_attempt_time.ToSeconds() - time.time()
    assert 3500 < wait_s <= 3600


def test_retry_after_shorter_than_the_schedule_does_not_shorten_it(client, receiver):
    _, delivery_id = _send(client, receiver, "/after-short", [Reply(429, {"Retry-After": "0"}), 200])
    first, second = receiver.wait_for("/after-short", 2)
    assert second.time - first.time >= 0.08  # the schedule's 100 ms, less its 20 % jitter
    attempts = wait_until(lambda: _attempts(client, delivery_id), lambda a: len(a) == 2)
    assert [a.status_code for a in attempts] == [429, 200]


def test_a_redirect_is_a_failure_and_is_not_followed(client, receiver):
    location = receiver.url("/redirect-target")
    _, delivery_id = _send(client, receiver, "/redirect", [Reply(302, {"Location": location}), 200])
    receiver.wait_for("/redirect", 2)
    attempts = wait_until(lambda: _attempts(client, delivery_id), lambda a: len(a) == 2)
    assert attempts[0].status_code == 302
    assert "redirect" in attempts[0].error
    assert receiver.at("/redirect-target") == []
    assert _get(client, delivery_id).state == SUCCEEDED


def _get(client, delivery_id: str):  # type: ignore[no-untyped-def]
    return client.webhooks.GetDelivery(GetDeliveryRequest(id=delivery_id))

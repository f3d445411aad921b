"""The attempt timeout and the response-capture cap are settings."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Reply

from hookline.client import ListAttemptsRequest, SendTestEventRequest
from hookline.server.settings import Settings

from .helpers import make_webhook, wait_until


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

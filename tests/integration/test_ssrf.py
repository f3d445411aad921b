"""The SSRF guard (DESIGN §5) on a real server with no allow-list: names that
resolve to private addresses are refused at send time, literal private addresses
already at CreateWebhook, and a refusal fails the delivery at once, for good."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
from conftest import Receiver

from hookline.client import (
    Attempt,
    Client,
    CreateWebhookRequest,
    Delivery,
    DeliveryState,
    ListAttemptsRequest,
    SendTestEventRequest,
    Webhook,
)
from hookline.server.app import Hookline
from hookline.server.delivery.targets import parse_networks
from hookline.server.settings import Settings

from .helpers import invalid_argument, make_webhook, unique, wait_delivery, webhook_ids

NOT_GLOBAL = "is not a globally routable address; an operator can allow it with --allow-target CIDR"

# Literal spellings of loopback that a resolver or URL parser reads as an address.
LITERAL_SPELLINGS = {
    "bracketed IPv6": ("[::1]", "::1 " + NOT_GLOBAL),
    "IPv4-mapped IPv6": ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 " + NOT_GLOBAL),
    "integer IPv4": ("2130706433", "2130706433 means 127.0.0.1, which " + NOT_GLOBAL),
    "octal IPv4": ("0177.0.0.1", "0177.0.0.1 means 127.0.0.1, which " + NOT_GLOBAL),
}


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(allow_targets=[])  # nothing but global addresses


@contextmanager
def allowing(app: Hookline, *cidrs: str) -> Iterator[None]:
    """The server's allow-list is `cidrs` inside the block (it is read at each check)."""
    before = app.settings.allowed_networks
    app.settings.allowed_networks = parse_networks(cidrs)
    try:
        yield
    finally:
        app.settings.allowed_networks = before


def port_of(receiver: Receiver) -> int:
    port = urlsplit(receiver.base_url).port
    assert port is not None
    return port


def send_and_settle(client: Client, webhook_id: str) -> tuple[Delivery, list[Attempt]]:
    """Send a test event; the delivery once it is finished, and its attempts."""
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook_id))
    delivery = wait_delivery(client, sent.delivery.id)
    attempts = client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=delivery.id)).attempts
    return delivery, list(attempts)


def assert_refused_for_good(receiver: Receiver, delivery: Delivery, attempts: list[Attempt], path: str) -> None:
    assert delivery.state == DeliveryState.DELIVERY_STATE_FAILED
    assert delivery.attempt_count == 1
    assert not delivery.HasField("next_attempt_time")
    [attempt] = attempts
    assert attempt.status_code == 0
    assert attempt.error.startswith("refused: ")
    assert delivery.last_error == attempt.error
    # That it is never retried, even once the target would be allowed, is the
    # worker's decision: tests/worker/test_retries.py shows it without waiting.
    assert receiver.at(path) == []


# --- names are checked when they are resolved, at send time -----------------------------


def test_a_name_resolving_to_loopback_is_refused_at_send_time_without_retries(client, receiver):
    path = "/" + unique("by-name")
    webhook = make_webhook(client, f"http://localhost:{port_of(receiver)}{path}").webhook
    delivery, attempts = send_and_settle(client, webhook.id)
    assert_refused_for_good(receiver, delivery, attempts, path)
    assert re.fullmatch(
        rf"refused: localhost resolves to (127\.0\.0\.1|::1), which {re.escape(NOT_GLOBAL)}", attempts[0].error
    )


# --- literal addresses are refused up front, and again at send time -------------------


@pytest.mark.parametrize("spelling", LITERAL_SPELLINGS.values(), ids=LITERAL_SPELLINGS.keys())
def test_a_literal_private_address_is_refused_at_create(client, receiver, spelling):
    host, _ = spelling
    before = webhook_ids(client)
    url = f"http://{host}:{port_of(receiver)}/literal"
    request = CreateWebhookRequest(webhook=Webhook(alias=unique("wh"), url=url, event_types=["WEBHOOK.TEST"]))
    _, description = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.url")
    assert NOT_GLOBAL in description
    assert webhook_ids(client) == before


@pytest.mark.parametrize("spelling", LITERAL_SPELLINGS.values(), ids=LITERAL_SPELLINGS.keys())
def test_a_literal_private_address_accepted_earlier_is_refused_at_send_time(client, receiver, hookline_app, spelling):
    host, message = spelling
    path = "/" + unique("literal")
    with allowing(hookline_app, "127.0.0.0/8", "::1/128"):
        webhook = make_webhook(client, f"http://{host}:{port_of(receiver)}{path}").webhook
    delivery, attempts = send_and_settle(client, webhook.id)
    assert_refused_for_good(receiver, delivery, attempts, path)
    assert attempts[0].error == f"refused: {message}"


def test_an_allowed_integer_spelling_is_delivered_with_its_host_header(client, receiver, hookline_app):
    path = "/" + unique("integer-allowed")
    with allowing(hookline_app, "127.0.0.0/8"):
        webhook = make_webhook(client, f"http://2130706433:{port_of(receiver)}{path}").webhook
        delivery, _ = send_and_settle(client, webhook.id)
    assert delivery.state == DeliveryState.DELIVERY_STATE_SUCCEEDED
    [arrived] = receiver.wait_for(path, 1)
    assert arrived.headers["host"] == f"2130706433:{port_of(receiver)}"

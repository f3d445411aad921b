"""Webhook secrets: returned by CreateWebhook and RotateWebhookSecret only, and
never again by any Get, List, Update or stream response."""

from __future__ import annotations

import base64
import secrets

import grpc
import pytest
from google.protobuf import field_mask_pb2

from hookline import signing
from hookline.client import (
    CreateWebhookRequest,
    DeliveryEventKind,
    DeliveryState,
    GetDeliveryRequest,
    GetEventRequest,
    GetWebhookRequest,
    ListAttemptsRequest,
    ListDeliveriesRequest,
    ListEventsRequest,
    ListFlowWebhooksRequest,
    ListWebhooksRequest,
    RotateWebhookSecretRequest,
    SendTestEventRequest,
    UpdateWebhookRequest,
    WatchDeliveriesRequest,
    Webhook,
)

from .helpers import invalid_argument, make_flow, make_webhook, rpc_error, unique, wait_delivery, webhook_ids


def secret_forms(secret: str) -> list[bytes]:
    """The secret as a response could leak it: whole, or its key part, or the raw key."""
    encoded = secret.removeprefix("whsec_")
    return [secret.encode(), encoded.encode(), base64.b64decode(encoded + "=" * (-len(encoded) % 4))]


def assert_no_secret(message, *secret_values: str) -> None:  # type: ignore[no-untyped-def]
    data = message.SerializeToString()
    for secret in secret_values:
        for form in secret_forms(secret):
            assert form not in data, f"a secret leaks in a {type(message).__name__}"
        assert secret not in str(message)


def test_the_secret_is_in_no_get_list_or_update_response(client, receiver):
    path = "/secret-" + unique()
    created = make_webhook(client, receiver.url(path), event_types=["WEBHOOK.TEST", "JOB.COMPLETED"])
    secret, hook = created.secret, created.webhook
    assert secret.startswith("whsec_")
    assert created.secret.encode() in created.SerializeToString()  # the check below can find it
    assert_no_secret(created.webhook, secret)

    assert_no_secret(client.webhooks.GetWebhook(GetWebhookRequest(id=hook.id)), secret)
    assert_no_secret(client.webhooks.GetWebhook(GetWebhookRequest(id=hook.alias)), secret)
    request = ListWebhooksRequest(page_size=1000)
    while True:
        page = client.webhooks.ListWebhooks(request)
        assert_no_secret(page, secret)
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    assert_no_secret(
        client.webhooks.UpdateWebhook(
            UpdateWebhookRequest(
                webhook=Webhook(id=hook.id, description="updated"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        ),
        secret,
    )
    assert_no_secret(
        client.webhooks.UpdateWebhook(UpdateWebhookRequest(webhook=Webhook(id=hook.id, enabled=True))), secret
    )

    flow = make_flow(client, [], webhook_ids=[hook.id])
    assert_no_secret(flow, secret)
    assert_no_secret(client.flows.ListFlowWebhooks(ListFlowWebhooksRequest(flow_id=flow.id)), secret)

    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    assert_no_secret(sent, secret)
    wait_delivery(client, sent.delivery.id)
    assert_no_secret(client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id)), secret)
    assert_no_secret(client.webhooks.ListDeliveries(ListDeliveriesRequest(webhook_id=hook.id)), secret)
    assert_no_secret(client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=sent.delivery.id)), secret)
    assert_no_secret(client.webhooks.GetEvent(GetEventRequest(id=sent.event.id)), secret)
    assert_no_secret(client.webhooks.ListEvents(ListEventsRequest(page_size=1000)), secret)
    # The delivery was really signed with it.
    [request] = receiver.wait_for(path, 1)
    signing.verify(request.body, request.headers, secret)
    assert secret.encode() not in request.body


def test_rotation_returns_the_new_secret_once(client, receiver):
    created = make_webhook(client, receiver.url("/rotate-secret"))
    rotated = client.webhooks.RotateWebhookSecret(RotateWebhookSecretRequest(id=created.webhook.id))
    assert rotated.secret.startswith("whsec_") and rotated.secret != created.secret
    assert_no_secret(rotated.webhook, created.secret, rotated.secret)
    assert_no_secret(
        client.webhooks.GetWebhook(GetWebhookRequest(id=created.webhook.id)), created.secret, rotated.secret
    )
    assert_no_secret(client.webhooks.ListWebhooks(ListWebhooksRequest(page_size=1000)), created.secret, rotated.secret)


def test_the_secret_is_in_no_stream_message(client, receiver):
    created = make_webhook(client, receiver.url("/secret-stream"))
    rotated = client.webhooks.RotateWebhookSecret(RotateWebhookSecretRequest(id=created.webhook.id)).secret
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=created.webhook.id), timeout=20)
    first = next(stream)
    assert first.kind == DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=created.webhook.id))
    got = [first]
    try:
        for message in stream:
            got.append(message)
            if (
                message.delivery.id == sent.delivery.id
                and message.kind == DeliveryEventKind.DELIVERY_EVENT_KIND_SUCCEEDED
            ):
                break
    finally:
        stream.cancel()
    kinds = {m.kind for m in got}
    assert DeliveryEventKind.DELIVERY_EVENT_KIND_ATTEMPT_RESULT in kinds  # the richest message was seen
    for message in got:
        assert_no_secret(message, created.secret, rotated)


def test_an_imported_secret_is_used_for_signing(client, receiver):
    path = "/imported-" + unique()
    imported = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()  # Svix-sized
    created = make_webhook(client, receiver.url(path), secret=imported)
    assert created.secret == imported
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=created.webhook.id))
    assert wait_delivery(client, sent.delivery.id).state == DeliveryState.DELIVERY_STATE_SUCCEEDED
    [request] = receiver.wait_for(path, 1)
    signing.verify(request.body, request.headers, imported)
    assert request.headers["x-webhook-signature"] == signing.decisionrules_signature(imported, request.body)
    assert_no_secret(client.webhooks.GetWebhook(GetWebhookRequest(id=created.webhook.id)), imported)


@pytest.mark.parametrize(
    "secret",
    [
        "not-a-secret",
        "whsec_",
        "whsec_" + base64.b64encode(b"x" * 16).decode(),  # too short
        "whsec_" + base64.b64encode(b"x" * 65).decode(),  # too long
        "whsec_***not*base64***",
        base64.b64encode(b"x" * 32).decode(),  # no prefix
    ],
)
def test_a_malformed_imported_secret_is_invalid_and_creates_nothing(client, receiver, secret):
    before = webhook_ids(client)
    alias = unique("imp")
    request = CreateWebhookRequest(
        webhook=Webhook(alias=alias, url=receiver.url("/never"), event_types=["WEBHOOK.TEST"]), secret=secret
    )
    error, description = invalid_argument(client.webhooks.CreateWebhook, request, "secret")
    assert "whsec_" in description or "bytes" in description
    assert webhook_ids(client) == before
    rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.GetWebhook, GetWebhookRequest(id=alias))

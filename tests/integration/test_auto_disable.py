"""A webhook that keeps failing with no success for the configured window is
disabled and the space hears of it (WEBHOOK.DISABLED); an Update re-enables it.
A 410 Gone disables at once. How the window is counted (a success restarts it)
is the worker's own logic: tests/worker/test_retries.py."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from google.protobuf import field_mask_pb2

from hookline.client import (
    DeliveryState,
    GetDeliveryRequest,
    GetWebhookRequest,
    SendTestEventRequest,
    UpdateWebhookRequest,
    Webhook,
)
from hookline.server.settings import Settings

from .helpers import make_webhook, wait_until

WINDOW_S = 2.0


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        retry_schedule=",".join(["0"] + ["150ms"] * 30),
        poll_interval_s=0.2,
        auto_disable_after_s=WINDOW_S,
    )


def _webhook(client, webhook_id: str):  # type: ignore[no-untyped-def]
    return client.webhooks.GetWebhook(GetWebhookRequest(id=webhook_id))


def test_a_failing_webhook_is_disabled_and_announced_then_re_enabled(client, receiver):
    make_webhook(client, receiver.url("/watcher"), event_types=["WEBHOOK.DISABLED"])
    receiver.respond("/failing", [500])
    failing = make_webhook(client, receiver.url("/failing")).webhook
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=failing.id))

    disabled = wait_until(lambda: _webhook(client, failing.id), lambda w: not w.enabled, timeout=15)
    assert disabled.disabled_reason == "failing"
    delivery = client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id))
    assert delivery.state == DeliveryState.DELIVERY_STATE_FAILED
    assert "webhook disabled" in delivery.last_error
    assert delivery.attempt_count >= 2  # it kept failing for the whole window first

    [announcement] = receiver.wait_for("/watcher", 1)
    message = json.loads(announcement.body)
    assert message["eventType"] == "WEBHOOK.DISABLED"
    assert message["data"]["webhook"] == {"id": failing.id, "alias": failing.alias, "reason": "failing"}

    # Disabled webhooks get nothing new.
    attempts_so_far = len(receiver.at("/failing"))
    with pytest.raises(Exception, match="disabled"):
        client.webhooks.SendTestEvent(SendTestEventRequest(id=failing.id))

    # Re-enabling is an Update; it sends nothing by itself, and works again.
    receiver.respond("/failing", [200])
    enabled = client.webhooks.UpdateWebhook(
        UpdateWebhookRequest(
            webhook=Webhook(id=failing.id, enabled=True), update_mask=field_mask_pb2.FieldMask(paths=["enabled"])
        )
    )
    assert enabled.enabled and enabled.disabled_reason == ""
    assert len(receiver.at("/failing")) == attempts_so_far
    again = client.webhooks.SendTestEvent(SendTestEventRequest(id=failing.id))
    receiver.wait_for("/failing", attempts_so_far + 1)
    wait_until(
        lambda: client.webhooks.GetDelivery(GetDeliveryRequest(id=again.delivery.id)),
        lambda d: d.state == DeliveryState.DELIVERY_STATE_SUCCEEDED,
    )

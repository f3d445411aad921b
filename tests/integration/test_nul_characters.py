"""Text with a NUL character is refused up front on every backend (PostgreSQL
cannot store one), naming the field, and changes nothing."""

from __future__ import annotations

from hookline.client import CreateWebhookRequest, GetWebhookRequest, StartJobRequest, Webhook

from .helpers import invalid_argument, webhook_ids


def test_nul_in_a_created_field_is_invalid_argument(client, receiver):
    before = webhook_ids(client)
    request = CreateWebhookRequest(
        webhook=Webhook(alias="nul", url=receiver.url("/nul"), event_types=["WEBHOOK.TEST"], description="a\0b")
    )
    error, _ = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.description")
    assert "NUL" in error.details()
    assert webhook_ids(client) == before


def test_nul_in_a_reference_or_key_is_invalid_argument(client):
    invalid_argument(client.webhooks.GetWebhook, GetWebhookRequest(id="wh_x\0"), "id")
    invalid_argument(client.jobs.StartJob, StartJobRequest(flow="f", idempotency_key="k\0"), "idempotency_key")

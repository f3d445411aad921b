"""WebhookService: create, get, list, update, delete, rotate, test events and the catalog."""

from __future__ import annotations

import base64
import time

import grpc
from google.protobuf import duration_pb2, field_mask_pb2

from hookline import signing
from hookline.client import (
    AddFlowWebhookRequest,
    DeleteWebhookRequest,
    DeliveryState,
    GetFlowRequest,
    GetWebhookRequest,
    ListEventTypesRequest,
    ListWebhooksRequest,
    RotateWebhookSecretRequest,
    SendTestEventRequest,
    UpdateWebhookRequest,
    Webhook,
)

from .helpers import (
    body_json,
    concurrently,
    list_all,
    make_flow,
    make_webhook,
    pages,
    rpc_error,
    unique,
    wait_delivery,
    webhook_ids,
)

EVENT_TYPES = {
    "JOB.COMPLETED",
    "JOB.ERROR",
    "JOB.CANCELED",
    "FLOW.CREATED",
    "FLOW.UPDATED",
    "FLOW.DELETED",
    "WEBHOOK.DISABLED",
    "WEBHOOK.TEST",
}


def test_create_webhook_returns_the_webhook_and_a_fresh_secret(client, receiver):
    alias = unique("orders")
    before = time.time()
    created = make_webhook(
        client,
        receiver.url("/create"),
        alias=alias,
        description="orders hook",
        event_types=["JOB.COMPLETED", "JOB.ERROR"],
        headers={"X-Team": "billing"},
        rate_limit_per_s=5,
    )
    hook = created.webhook
    assert hook.id.startswith("wh_")
    assert hook.alias == alias
    assert hook.url == receiver.url("/create")
    assert hook.description == "orders hook"
    assert hook.HasField("enabled") and hook.enabled is True  # absent means on
    assert list(hook.event_types) == ["JOB.COMPLETED", "JOB.ERROR"]
    assert dict(hook.headers) == {"X-Team": "billing"}
    assert hook.rate_limit_per_s == 5
    assert hook.disabled_reason == ""
    assert before - 5 <= hook.create_time.ToMilliseconds() / 1000 <= time.time() + 5
    assert hook.update_time.ToMilliseconds() >= hook.create_time.ToMilliseconds()

    assert created.secret.startswith("whsec_")
    assert len(base64.b64decode(created.secret.removeprefix("whsec_"), validate=True)) == 32
    assert make_webhook(client, receiver.url("/create")).secret != created.secret


def test_create_webhook_can_start_disabled(client, receiver):
    hook = make_webhook(client, receiver.url("/off"), enabled=False).webhook
    assert hook.enabled is False
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=hook.id)).enabled is False


def test_concurrent_creates_with_one_alias_make_one_webhook(client, receiver):
    alias = unique("race")
    before = webhook_ids(client)
    made, errors = concurrently(12, lambda: make_webhook(client, receiver.url("/race"), alias=alias))
    assert len(made) == 1
    assert {e.code() for e in errors} == {grpc.StatusCode.ALREADY_EXISTS}
    assert webhook_ids(client) == before + [made[0].webhook.id]


def test_get_webhook_by_id_and_by_alias(client, receiver):
    created = make_webhook(client, receiver.url("/get"), description="get me").webhook
    by_id = client.webhooks.GetWebhook(GetWebhookRequest(id=created.id))
    by_alias = client.webhooks.GetWebhook(GetWebhookRequest(id=created.alias))
    assert by_id == created
    assert by_alias == created


def test_get_unknown_webhook_is_not_found(client):
    error = rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.GetWebhook, GetWebhookRequest(id=unique("nope")))
    assert "not found" in error.details()
    rpc_error(
        grpc.StatusCode.NOT_FOUND, client.webhooks.GetWebhook, GetWebhookRequest(id="wh_00000000000000000000000000")
    )


def test_list_webhooks_pages_through_everything_without_gaps_or_repeats(client, receiver):
    made = [make_webhook(client, receiver.url("/list")).webhook.id for _ in range(7)]
    everything = webhook_ids(client)
    assert set(made) <= set(everything)

    paged = pages(client.webhooks.ListWebhooks, ListWebhooksRequest(), "webhooks", page_size=3)
    assert len(paged) >= 3
    assert all(len(page) == 3 for page in paged[:-1])
    assert 1 <= len(paged[-1]) <= 3
    flat = [w.id for page in paged for w in page]
    assert len(flat) == len(set(flat))
    assert flat == everything
    # Ids sort by creation time: the ones just made come last, in order.
    assert flat[-7:] == made


def test_list_webhooks_returns_full_webhooks(client, receiver):
    created = make_webhook(client, receiver.url("/full"), description="listed", headers={"X-A": "1"}).webhook
    listed = {w.id: w for w in list_all(client.webhooks.ListWebhooks, ListWebhooksRequest(), "webhooks")}
    assert listed[created.id] == created


def test_update_with_a_mask_changes_only_the_masked_fields(client, receiver):
    created = make_webhook(client, receiver.url("/mask"), description="before", event_types=["WEBHOOK.TEST"]).webhook
    time.sleep(0.01)
    request = UpdateWebhookRequest(
        webhook=Webhook(id=created.id, description="after", url=receiver.url("/elsewhere"), event_types=["JOB.ERROR"]),
        update_mask=field_mask_pb2.FieldMask(paths=["description"]),
    )
    updated = client.webhooks.UpdateWebhook(request)
    assert updated.description == "after"
    assert updated.url == receiver.url("/mask")
    assert list(updated.event_types) == ["WEBHOOK.TEST"]
    assert updated.alias == created.alias
    assert updated.create_time == created.create_time
    assert updated.update_time.ToMilliseconds() > created.update_time.ToMilliseconds()
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=created.id)) == updated


def test_update_with_a_mask_can_clear_a_field(client, receiver):
    created = make_webhook(client, receiver.url("/clear"), description="soon gone", headers={"X-B": "2"}).webhook
    updated = client.webhooks.UpdateWebhook(
        UpdateWebhookRequest(
            webhook=Webhook(id=created.id),
            update_mask=field_mask_pb2.FieldMask(paths=["description", "headers"]),
        )
    )
    assert updated.description == ""
    assert dict(updated.headers) == {}
    assert updated.url == created.url


def test_update_without_a_mask_replaces_the_fields_it_sets(client, receiver):
    created = make_webhook(client, receiver.url("/nomask"), description="kept").webhook
    new_alias = unique("renamed")
    updated = client.webhooks.UpdateWebhook(
        UpdateWebhookRequest(
            webhook=Webhook(id=created.alias, alias=new_alias, event_types=["FLOW.CREATED", "FLOW.DELETED"]),
        )
    )
    assert updated.id == created.id
    assert updated.alias == new_alias
    assert list(updated.event_types) == ["FLOW.CREATED", "FLOW.DELETED"]
    assert updated.description == "kept"
    assert updated.url == created.url
    # The new alias addresses it; the old one no longer does.
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=new_alias)).id == created.id
    rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.GetWebhook, GetWebhookRequest(id=created.alias))


def test_disable_and_re_enable_a_webhook(client, receiver):
    created = make_webhook(client, receiver.url("/toggle")).webhook
    off = client.webhooks.UpdateWebhook(
        UpdateWebhookRequest(
            webhook=Webhook(id=created.id, enabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        )
    )
    assert off.enabled is False
    # A disabled webhook takes no test event.
    rpc_error(grpc.StatusCode.FAILED_PRECONDITION, client.webhooks.SendTestEvent, SendTestEventRequest(id=created.id))
    on = client.webhooks.UpdateWebhook(UpdateWebhookRequest(webhook=Webhook(id=created.id, enabled=True)))
    assert on.enabled is True
    assert on.disabled_reason == ""


def test_delete_webhook(client, receiver):
    hook = make_webhook(client, receiver.url("/delete"), event_types=["JOB.COMPLETED"]).webhook
    flow = make_flow(client, webhook_ids=[hook.id])
    assert list(flow.webhook_ids) == [hook.id]

    client.webhooks.DeleteWebhook(DeleteWebhookRequest(id=hook.alias))

    rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.GetWebhook, GetWebhookRequest(id=hook.id))
    assert hook.id not in webhook_ids(client)
    assert list(client.flows.GetFlow(GetFlowRequest(id=flow.id)).webhook_ids) == []
    rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.DeleteWebhook, DeleteWebhookRequest(id=hook.id))
    # Its alias is free again.
    assert make_webhook(client, receiver.url("/delete"), alias=hook.alias).webhook.id != hook.id


def test_rotate_secret_returns_a_new_secret_and_both_sign_during_the_grace_period(client, receiver):
    path = "/rotate-" + unique()
    created = make_webhook(client, receiver.url(path))
    rotated = client.webhooks.RotateWebhookSecret(RotateWebhookSecretRequest(id=created.webhook.alias))
    assert rotated.secret.startswith("whsec_")
    assert len(base64.b64decode(rotated.secret.removeprefix("whsec_"), validate=True)) == 32
    assert rotated.secret != created.secret
    assert rotated.webhook.id == created.webhook.id

    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=created.webhook.id))
    assert wait_delivery(client, sent.delivery.id).state == DeliveryState.DELIVERY_STATE_SUCCEEDED
    [request] = receiver.wait_for(path, 1)
    assert len(request.headers["webhook-signature"].split()) == 2
    signing.verify(request.body, request.headers, created.secret)
    signing.verify(request.body, request.headers, rotated.secret)
    # The DecisionRules-style header carries the newest secret's signature.
    assert request.headers["x-webhook-signature"] == signing.decisionrules_signature(rotated.secret, request.body)


def test_rotate_secret_without_grace_drops_the_old_secret_at_once(client, receiver):
    path = "/rotate-now-" + unique()
    created = make_webhook(client, receiver.url(path))
    rotated = client.webhooks.RotateWebhookSecret(
        RotateWebhookSecretRequest(id=created.webhook.id, grace_period=duration_pb2.Duration(seconds=0))
    )
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=created.webhook.id))
    wait_delivery(client, sent.delivery.id)
    [request] = receiver.wait_for(path, 1)
    assert len(request.headers["webhook-signature"].split()) == 1
    signing.verify(request.body, request.headers, rotated.secret)
    try:
        signing.verify(request.body, request.headers, created.secret)
    except signing.VerificationError:
        pass
    else:
        raise AssertionError("the old secret still signs after a rotation without grace")


def test_rotate_secret_of_unknown_webhook_is_not_found(client):
    rpc_error(
        grpc.StatusCode.NOT_FOUND, client.webhooks.RotateWebhookSecret, RotateWebhookSecretRequest(id=unique("ghost"))
    )


def test_send_test_event_reaches_the_webhook_only(client, receiver):
    path = "/test-event-" + unique()
    target = make_webhook(client, receiver.url(path)).webhook
    bystander_path = "/bystander-" + unique()
    make_webhook(client, receiver.url(bystander_path), event_types=["WEBHOOK.TEST"])

    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=target.alias, message="hello there"))
    assert sent.event.id.startswith("evt_")
    assert sent.event.event_type == "WEBHOOK.TEST"
    assert sent.event.webhook_id == target.id
    assert sent.delivery.id.startswith("dlv_")
    assert sent.delivery.webhook_id == target.id
    assert sent.delivery.event_id == sent.event.id
    assert sent.delivery.event_type == "WEBHOOK.TEST"

    body = body_json(sent.event.body)
    assert body["eventType"] == "WEBHOOK.TEST"
    assert body["data"]["message"] == "hello there"
    assert body["metadata"]["eventId"] == sent.event.id

    done = wait_delivery(client, sent.delivery.id)
    assert done.state == DeliveryState.DELIVERY_STATE_SUCCEEDED
    [request] = receiver.wait_for(path, 1)
    assert request.body == sent.event.body
    assert request.headers["webhook-id"] == sent.event.id
    time.sleep(0.3)
    assert receiver.at(bystander_path) == []


def test_send_test_event_to_unknown_webhook_is_not_found(client):
    rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.SendTestEvent, SendTestEventRequest(id=unique("ghost")))


def test_list_event_types_is_the_catalog_with_schemas(client):
    types = client.webhooks.ListEventTypes(ListEventTypesRequest()).event_types
    names = [t.name for t in types]
    assert set(names) == EVENT_TYPES
    assert len(names) == len(set(names))
    for t in types:
        assert t.description, t.name
        assert t.data_schema.fields, t.name
        assert "type" in t.data_schema.fields or "properties" in t.data_schema.fields, t.name


def test_webhook_linked_to_a_flow_by_alias(client, receiver):
    hook = make_webhook(client, receiver.url("/linked"), event_types=["JOB.COMPLETED"]).webhook
    flow = make_flow(client)
    linked = client.flows.AddFlowWebhook(AddFlowWebhookRequest(flow_id=flow.alias, webhook_id=hook.alias))
    assert list(linked.webhook_ids) == [hook.id]

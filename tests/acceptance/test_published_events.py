"""Acceptance: a service publishes its own event (EventService.PublishEvent)
and it reaches, signed, exactly the webhooks that subscribe to its type and
whose filter passes it, on a real HTTP receiver on loopback (DESIGN §11)."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import uuid
from typing import Any

import grpc
import jsonschema
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from standardwebhooks.webhooks import Webhook as SWWebhook

from hookline import signing
from hookline.client import (
    Client,
    CreateEventTypeRequest,
    CreateWebhookRequest,
    EventType,
    GetEventRequest,
    ListDeliveriesRequest,
    ListEventsRequest,
    PublishEventRequest,
    Webhook,
)

pytestmark = pytest.mark.acceptance

SCHEMA = {
    "type": "object",
    "required": ["orderId", "amount"],
    "properties": {
        "orderId": {"type": "string", "pattern": "^ord_[0-9a-z]+$"},
        "amount": {"type": "number", "minimum": 0},
        "lines": {"type": "array", "items": {"type": "object", "properties": {"sku": {"type": "string"}}}},
    },
}


def value(data: Any) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    return json_format.ParseDict(data, struct_pb2.Struct())


def hook(client: Client, url: str, event_types: list[str], filter: str = "") -> tuple[str, str]:
    alias = f"pub-{uuid.uuid4().hex[:8]}"
    created = client.webhooks.CreateWebhook(
        CreateWebhookRequest(webhook=Webhook(alias=alias, url=url, event_types=event_types, filter=filter))
    )
    return created.webhook.id, created.secret


def js_roundtrip(body: bytes) -> bytes:
    """What JavaScript's JSON.stringify(JSON.parse(body)) makes of the body."""
    script = (
        "let s='';process.stdin.on('data',d=>s+=d).on('end',()=>process.stdout.write(JSON.stringify(JSON.parse(s))))"
    )
    return subprocess.run(["node", "-e", script], input=body, capture_output=True, check=True, timeout=30).stdout


def test_a_published_event_reaches_exactly_its_subscribers_signed(client: Client, receiver: Any) -> None:
    namespace = f"ORDER{uuid.uuid4().hex[:6].upper()}"
    name = f"{namespace}.PAID"
    created = client.events.CreateEventType(
        CreateEventTypeRequest(
            event_type=EventType(
                name=name,
                description="An order was paid.",
                data_schema=struct(SCHEMA),
                example=struct({"orderId": "ord_1", "amount": 10}),
            )
        )
    )
    assert (created.name, created.archived, created.built_in) == (name, False, False)

    exact_id, exact_secret = hook(client, receiver.url("/exact"), [name])
    prefix_id, prefix_secret = hook(client, receiver.url("/prefix"), [f"{namespace}.*"])
    hook(client, receiver.url("/unsubscribed"), ["JOB.COMPLETED"])
    hook(client, receiver.url("/filtered"), ["*"], filter="data.amount > `1000`")

    data = {"orderId": "ord_42", "amount": 12.5, "lines": [{"sku": "A-1"}], "whole": 3, "city": "Zürich"}
    key = uuid.uuid4().hex
    request = PublishEventRequest(event_type=name, data=value(data), idempotency_key=key, correlation_id="order-42")
    event = client.events.PublishEvent(request)
    assert event.id.startswith("evt_") and event.event_type == name

    bodies = {}
    for path, secret in (("/exact", exact_secret), ("/prefix", prefix_secret)):
        [received] = receiver.wait_for(path, 1)
        body, headers = received.body, received.headers
        assert body == event.body  # the bytes fixed when the event was made
        assert SWWebhook(secret).verify(body, headers) == json.loads(body)
        assert signing.verify(body, headers, secret) == json.loads(body)
        # DecisionRules' scheme, checked as a receiver that parses first does.
        reparsed = js_roundtrip(body)
        assert reparsed == body
        assert headers["x-webhook-signature"] == hmac.new(secret.encode(), reparsed, hashlib.sha256).hexdigest()
        assert headers["webhook-id"] == event.id
        bodies[path] = body

    payload = json.loads(bodies["/exact"])
    assert payload["eventType"] == name
    assert (payload["entityType"], payload["action"]) == (namespace, "PAID")
    assert payload["data"] == data
    assert b'"whole":3}' in bodies["/exact"]  # a whole number without a fraction
    jsonschema.validate(payload["data"], SCHEMA)
    assert payload["metadata"]["eventId"] == event.id
    assert payload["metadata"]["correlationId"] == "order-42"
    assert payload["metadata"]["spaceId"]

    # The same key with the same type and data: the same event, nothing sent again.
    again = client.events.PublishEvent(request)
    assert again.id == event.id and again.body == event.body
    deliveries = client.webhooks.ListDeliveries(ListDeliveriesRequest(event_id=event.id)).deliveries
    assert sorted(d.webhook_id for d in deliveries) == sorted([exact_id, prefix_id])
    # No delivery, no request: the others never get one.
    assert len(receiver.at("/exact")) == 1 and len(receiver.at("/prefix")) == 1
    assert receiver.at("/unsubscribed") == [] and receiver.at("/filtered") == []

    # The same key with other data is refused.
    other = PublishEventRequest(event_type=name, data=value({**data, "amount": 1}), idempotency_key=key)
    with pytest.raises(grpc.RpcError) as caught:
        client.events.PublishEvent(other)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

    # A schema violation names the JSON pointer of the value and writes nothing.
    before = len(client.events.ListEvents(ListEventsRequest(event_type=name)).events)
    bad = PublishEventRequest(event_type=name, data=value({"orderId": "ord_7", "amount": 5, "lines": [{"sku": 9}]}))
    with pytest.raises(grpc.RpcError) as caught:
        client.events.PublishEvent(bad)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    details = error_details_pb2.BadRequest()
    status.details[0].Unpack(details)
    assert [v.field for v in details.field_violations] == ["/data/lines/0/sku"]
    assert len(client.events.ListEvents(ListEventsRequest(event_type=name)).events) == before
    assert client.events.GetEvent(GetEventRequest(id=event.id)).body == event.body

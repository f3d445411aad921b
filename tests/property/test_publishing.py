"""PublishEvent with generated data, names and keys, on a type with a schema
and webhooks subscribed to it exactly, by pattern and with a filter.

Properties, for every request:
* it succeeds or fails with a status a caller can act on, never INTERNAL or
  UNKNOWN (nor a deadline: the server hung);
* a rejected request writes nothing: no event, no delivery;
* an accepted one stored data that matches the schema, in a body that is
  compact JSON carrying exactly that data, with one delivery per subscriber
  whose filter passes it."""

from __future__ import annotations

import json
import uuid
from typing import Any

import grpc
import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hookline.client import (
    Client,
    CreateEventTypeRequest,
    CreateWebhookRequest,
    EventType,
    ListDeliveriesRequest,
    ListEventsRequest,
    PublishEventRequest,
    Webhook,
)

from . import tally
from .strategies import JSON_OBJECT, JSON_VALUE, TEXT, pick
from .world import json_value

ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
EXAMPLES = settings(
    max_examples=40,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
SCHEMA = {
    "type": "object",
    "properties": {
        "amount": {"type": "number", "minimum": 0},
        "name": {"type": "string", "pattern": "^[a-z]*$"},
        "items": {"type": "array", "maxItems": 3},
    },
    "additionalProperties": True,
}
NAMESPACE = f"PROP{uuid.uuid4().hex[:6].upper()}"
TYPE = f"{NAMESPACE}.HAPPENED"

# Data that mostly fits the schema, and much that does not.
FITTING = st.fixed_dictionaries(
    {},
    optional={
        "amount": st.one_of(st.integers(0, 10**6), st.floats(0, 1e9, allow_nan=False)),
        "name": st.from_regex(r"[a-z]{0,8}", fullmatch=True),
        "items": st.lists(st.integers(), max_size=3),
    },
)
DATA = pick(FITTING, FITTING, JSON_OBJECT, JSON_VALUE, st.fixed_dictionaries({"amount": JSON_VALUE}))
NAMES = pick(st.just(TYPE), st.just(TYPE), st.just(f"{NAMESPACE}.OTHER"), st.just("JOB.COMPLETED"), TEXT)
KEYS = pick(st.just(""), st.just(""), st.sampled_from(["k1", "k2"]), TEXT)


@pytest.fixture(scope="module")
def hooks(client: Client) -> dict[str, str]:
    """The webhooks a published event may go to: id -> filter."""
    client.events.CreateEventType(CreateEventTypeRequest(event_type=EventType(name=TYPE, data_schema=_struct(SCHEMA))))
    made = {}
    for entries, filter in (([TYPE], ""), ([f"{NAMESPACE}.*"], "data.amount > `10`"), (["JOB.COMPLETED"], "")):
        webhook = Webhook(alias=f"prop-{uuid.uuid4().hex[:8]}", url="https://example.com/", event_types=entries)
        webhook.filter = filter
        created = client.webhooks.CreateWebhook(CreateWebhookRequest(webhook=webhook))
        made[created.webhook.id] = filter
    return made


def _struct(data: dict[str, Any]) -> Any:
    return json_value(data).struct_value


def _counts(client: Client) -> tuple[int, int]:
    events = client.events.ListEvents(ListEventsRequest(page_size=1000)).events
    deliveries = client.webhooks.ListDeliveries(ListDeliveriesRequest(page_size=1000)).deliveries
    return len(events), len(deliveries)


@EXAMPLES
@given(name=NAMES, data=DATA, key=KEYS, correlation_id=pick(st.just(""), TEXT))
def test_publish_never_fails_inside_and_changes_nothing_when_refused(
    client: Client, hooks: dict[str, str], name: str, data: Any, key: str, correlation_id: str
) -> None:
    request = PublishEventRequest(event_type=name, idempotency_key=key, correlation_id=correlation_id)
    request.data.CopyFrom(json_value(data))
    before = _counts(client)
    try:
        event = client.events.PublishEvent(request, timeout=30)
    except grpc.RpcError as error:
        tally.record("PublishEvent", error.code().name)
        assert error.code() in ALLOWED, f"{error.code()}: {error.details()}"
        assert error.details()
        assert _counts(client) == before
        return
    tally.record("PublishEvent", "OK")
    payload = json.loads(event.body)
    jsonschema.validate(payload["data"], SCHEMA)
    assert event.body == json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    assert payload["eventType"] == name == TYPE
    got = {d.webhook_id for d in client.webhooks.ListDeliveries(ListDeliveriesRequest(event_id=event.id)).deliveries}
    amount = payload["data"].get("amount")
    wanted = {w for w, f in hooks.items() if not f and w != list(hooks)[2]}
    if isinstance(amount, (int, float)) and amount > 10:
        wanted.add(list(hooks)[1])
    assert got & set(hooks) == wanted

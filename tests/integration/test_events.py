"""EventService: event types as resources, publishing, subscriptions by
pattern, webhook filters, the publisher role and tenancy (DESIGN §11)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, message_factory
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from hookline.client import (
    Client,
    CreateEventTypeRequest,
    DeleteEventTypeRequest,
    EventType,
    GetEventRequest,
    GetEventTypeRequest,
    ListDeliveriesRequest,
    ListEventsRequest,
    ListEventTypesRequest,
    PublishEventRequest,
    PublishEventsRequest,
    UpdateEventTypeRequest,
    UpdateWebhookRequest,
    Webhook,
)
from hookline.server import filters
from hookline.server.api import access
from hookline.server.storage import spaces
from hookline.v1 import events_pb2, flows_pb2, jobs_pb2, webhooks_pb2

from .helpers import list_all, make_webhook, rpc_error, struct, value

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DENIED = grpc.StatusCode.PERMISSION_DENIED
URL = "https://example.com/hook"


def namespace() -> str:
    return f"SHOP{uuid.uuid4().hex[:8].upper()}"


def make_type(client: Client, name: str, schema: dict[str, Any] | None = None, **fields: Any) -> EventType:
    event_type = EventType(name=name, **fields)
    if schema is not None:
        event_type.data_schema.CopyFrom(struct(schema))
    return client.events.CreateEventType(CreateEventTypeRequest(event_type=event_type))


def publish(client: Client, name: str, data: Any = None, **fields: Any) -> Any:
    request = PublishEventRequest(event_type=name, **fields)
    if data is not None:
        request.data.CopyFrom(value(data))
    return client.events.PublishEvent(request)


def violations(error: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(error)
    assert status is not None
    details = error_details_pb2.BadRequest()
    status.details[0].Unpack(details)
    return [v.field for v in details.field_violations]


def deliveries_of(client: Client, event_id: str, among: Any = None) -> list[str]:
    """The webhooks that got a delivery of the event (of those `among`, when given:
    other tests' webhooks subscribed to * get every event too)."""
    listed = client.webhooks.ListDeliveries(ListDeliveriesRequest(event_id=event_id)).deliveries
    return sorted(d.webhook_id for d in listed if among is None or d.webhook_id in among)


def event_ids(client: Client) -> list[str]:
    return [e.id for e in list_all(client.events.ListEvents, ListEventsRequest(), "events")]


@pytest.fixture(scope="module")
def publisher_key(hookline_app) -> str:  # type: ignore[no-untyped-def]
    return spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "publisher").token


@pytest.fixture(scope="module")
def publisher(publisher_key: str, connect: Callable[[str], Client]) -> Client:
    return connect(publisher_key)


# --- event types ---------------------------------------------------------------------


def test_built_in_types_are_listed_read_only_with_schemas_and_examples(client: Client) -> None:
    listed = list_all(client.events.ListEventTypes, ListEventTypesRequest(), "event_types")
    built_in = {t.name: t for t in listed if t.built_in}
    assert {"JOB.COMPLETED", "JOB.ERROR", "JOB.CANCELED", "FLOW.CREATED", "WEBHOOK.TEST"} <= set(built_in)
    for t in built_in.values():
        assert t.HasField("data_schema") and t.HasField("example") and t.description
    # The deprecated WebhookService RPC answers the same.
    assert list(client.webhooks.ListEventTypes(ListEventTypesRequest(page_size=1000)).event_types) == listed
    for name in ("JOB.COMPLETED", "FLOW.DELETED"):
        update = UpdateEventTypeRequest(event_type=EventType(name=name, description="mine"))
        assert (
            "read-only"
            in rpc_error(grpc.StatusCode.FAILED_PRECONDITION, client.events.UpdateEventType, update).details()
        )
        delete = DeleteEventTypeRequest(name=name)
        rpc_error(grpc.StatusCode.FAILED_PRECONDITION, client.events.DeleteEventType, delete)
    assert client.events.GetEventType(GetEventTypeRequest(name="JOB.COMPLETED")).built_in


@pytest.mark.parametrize("name", ["JOB.PAID", "job.paid", "FLOW.X.Y", "WEBHOOK.PING", "Webhook.ping"])
def test_reserved_namespaces_are_refused(client: Client, name: str) -> None:
    error = rpc_error(INVALID, client.events.CreateEventType, CreateEventTypeRequest(event_type=EventType(name=name)))
    assert violations(error) == ["event_type.name"] and "reserved" in error.details()
    assert name not in [t.name for t in list_all(client.events.ListEventTypes, ListEventTypesRequest(), "event_types")]
    assert "reserved" in rpc_error(INVALID, publish, client, name, {}).details()


@pytest.mark.parametrize(
    "name",
    [
        "",
        "ORDER",
        "ORDER.",
        ".PAID",
        "ORDER..PAID",
        "1ORDER.PAID",
        "ORDER.PAID!",
        "ORDER.*",
        "A." + "b" * 65,
        "Ä.B",
        "ORDER.PA ID",
        "ORDER.PAID\n",
    ],
)
def test_bad_names_are_refused(client: Client, name: str) -> None:
    error = rpc_error(INVALID, client.events.CreateEventType, CreateEventTypeRequest(event_type=EventType(name=name)))
    assert violations(error) == ["event_type.name"]


def test_a_type_is_created_read_listed_by_prefix_updated_and_archived(client: Client) -> None:
    ns = namespace()
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    created = make_type(client, f"{ns}.A", schema, description="first", example=struct({"n": 1}))
    assert created.create_time.seconds and not created.archived and not created.built_in
    make_type(client, f"{ns}.B")
    make_type(client, f"{ns.lower()}.c")
    got = client.events.GetEventType(GetEventTypeRequest(name=f"{ns}.A"))
    assert got == created
    rpc_error(grpc.StatusCode.ALREADY_EXISTS, make_type, client, f"{ns}.A")

    pages = []
    request = ListEventTypesRequest(prefix=f"{ns}.", page_size=1)
    while True:
        response = client.events.ListEventTypes(request)
        pages.append([t.name for t in response.event_types])
        if not response.next_page_token:
            break
        request.page_token = response.next_page_token
    assert pages == [[f"{ns}.A"], [f"{ns}.B"]]
    wrong = ListEventTypesRequest(prefix="JOB.", page_token=client.events.ListEventTypes(
        ListEventTypesRequest(prefix=f"{ns}.", page_size=1)).next_page_token)  # fmt: skip
    assert violations(rpc_error(INVALID, client.events.ListEventTypes, wrong)) == ["page_token"]

    # An example must match the schema it will have.
    bad = UpdateEventTypeRequest(
        event_type=EventType(name=f"{ns}.A", example=struct({"n": "one"})),
        update_mask=field_mask_pb2.FieldMask(paths=["example"]),
    )
    assert violations(rpc_error(INVALID, client.events.UpdateEventType, bad)) == ["/event_type/example/n"]
    assert client.events.GetEventType(GetEventTypeRequest(name=f"{ns}.A")) == created
    updated = client.events.UpdateEventType(
        UpdateEventTypeRequest(
            event_type=EventType(name=f"{ns}.A", description="second", deprecated=True),
            update_mask=field_mask_pb2.FieldMask(paths=["description", "deprecated"]),
        )
    )
    assert (updated.description, updated.deprecated, updated.data_schema) == ("second", True, created.data_schema)

    # Archived: no new publishes; the webhook keeps its subscription, the events stay.
    webhook = make_webhook(client, URL, event_types=[f"{ns}.A"]).webhook
    event = publish(client, f"{ns}.A", {"n": 1})
    archived = client.events.DeleteEventType(DeleteEventTypeRequest(name=f"{ns}.A"))
    assert archived.archived
    error = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, publish, client, f"{ns}.A", {"n": 2})
    assert "archived" in error.details()
    assert client.events.GetEvent(GetEventRequest(id=event.id)).body == event.body
    assert list(client.webhooks.GetWebhook(webhooks_pb2.GetWebhookRequest(id=webhook.id)).event_types) == [f"{ns}.A"]
    assert client.events.GetEventType(GetEventTypeRequest(name=f"{ns}.A")).archived


def test_schemas_are_checked_as_flow_schemas_are(client: Client) -> None:
    ns = namespace()
    for schema, field in (
        ({"type": "object", "properties": {"x": {"type": "string", "pattern": "(?=a)"}}}, "event_type.data_schema"),
        ({"type": "nonsense"}, "event_type.data_schema"),
        ({"$ref": "https://example.com/schema.json"}, "event_type.data_schema"),
    ):
        request = CreateEventTypeRequest(event_type=EventType(name=f"{ns}.X", data_schema=struct(schema)))
        error = rpc_error(INVALID, client.events.CreateEventType, request)
        assert all(f.startswith(field) for f in violations(error)), violations(error)
    assert not any(
        t.name.startswith(ns) for t in list_all(client.events.ListEventTypes, ListEventTypesRequest(), "event_types")
    )
    example = EventType(name=f"{ns}.X", data_schema=struct({"type": "object", "required": ["a"]}), example=struct({}))
    error = rpc_error(INVALID, client.events.CreateEventType, CreateEventTypeRequest(event_type=example))
    assert violations(error) == ["/event_type/example"]


# --- publishing ----------------------------------------------------------------------


def test_publish_checks_its_data_and_writes_nothing_when_refused(client: Client) -> None:
    ns = namespace()
    schema = {"type": "object", "properties": {"items": {"type": "array", "items": {"type": "integer"}}}}
    make_type(client, f"{ns}.DONE", schema)
    make_webhook(client, URL, event_types=[f"{ns}.*"])
    before = event_ids(client)
    cases = [
        ({"items": [1, "two"]}, ["/data/items/1"]),
        ("text", ["data"]),
        ([1, 2], ["data"]),
    ]
    for data, fields in cases:
        assert violations(rpc_error(INVALID, publish, client, f"{ns}.DONE", data)) == fields
    rpc_error(NOT_FOUND, publish, client, f"{ns}.MISSING", {})
    for field, bad in (("idempotency_key", "k" * 256), ("correlation_id", "c" * 256)):
        assert violations(rpc_error(INVALID, publish, client, f"{ns}.DONE", {}, **{field: bad})) == [field]
    assert "1048576" in rpc_error(INVALID, publish, client, f"{ns}.DONE", {"big": "x" * (1 << 20)}).details()
    deep: Any = 1
    for _ in range(33):  # past the limit of 32, well within what protobuf decodes
        deep = {"a": deep}
    assert violations(rpc_error(INVALID, publish, client, f"{ns}.DONE", deep)) == ["data"]
    nul = PublishEventRequest(event_type=f"{ns}.DONE\0", data=value({}))
    rpc_error(INVALID, client.events.PublishEvent, nul)
    assert event_ids(client) == before
    # NUL inside the data is data: stored and sent escaped.
    event = publish(client, f"{ns}.DONE", {"text": "a\0b"})
    assert b'"text":"a\\u0000b"' in event.body


def test_publish_events_gives_each_event_its_own_result(client: Client) -> None:
    ns = namespace()
    make_type(client, f"{ns}.OK", {"type": "object", "required": ["id"]})
    hook = make_webhook(client, URL, event_types=[f"{ns}.OK"]).webhook
    requests = [
        PublishEventRequest(event_type=f"{ns}.OK", data=value({"id": 1})),
        PublishEventRequest(event_type=f"{ns}.OK", data=value({})),
        PublishEventRequest(event_type=f"{ns}.NONE", data=value({"id": 1})),
        PublishEventRequest(event_type="JOB.COMPLETED", data=value({})),
        PublishEventRequest(event_type=f"{ns}.OK", data=value({"id": 2}), idempotency_key="k1"),
        PublishEventRequest(event_type=f"{ns}.OK", data=value({"id": 2}), idempotency_key="k1"),
        PublishEventRequest(event_type=f"{ns}.OK", data=value({"id": 3}), idempotency_key="k1"),
    ]
    results = client.events.PublishEvents(PublishEventsRequest(requests=requests)).results
    kinds = [r.WhichOneof("result") for r in results]
    assert kinds == ["event", "status", "status", "status", "event", "event", "status"]
    codes = [r.status.code for r in results if r.HasField("status")]
    assert codes == [code_pb2.INVALID_ARGUMENT, code_pb2.NOT_FOUND, code_pb2.INVALID_ARGUMENT, code_pb2.ALREADY_EXISTS]
    assert [v.field for v in results[1].status.field_violations] == ["/data"]
    assert all(r.status.message for r in results if r.HasField("status"))
    assert results[4].event.id == results[5].event.id
    for r in (results[0], results[4]):
        assert deliveries_of(client, r.event.id) == [hook.id]
    too_many = PublishEventsRequest(requests=[requests[0]] * 101)
    before = event_ids(client)
    assert violations(rpc_error(INVALID, client.events.PublishEvents, too_many)) == ["requests"]
    assert event_ids(client) == before


def test_patterns_take_in_types_created_later_and_must_match_a_namespace(client: Client) -> None:
    ns = namespace()
    make_type(client, f"{ns}.FIRST")
    every = make_webhook(client, URL, event_types=["*"]).webhook
    pattern = make_webhook(client, URL, event_types=[f"{ns}.*"]).webhook
    later = make_type(client, f"{ns}.SECOND").name
    event = publish(client, later, {})
    assert deliveries_of(client, event.id) == sorted([every.id, pattern.id])
    for entries in (["NOPE.*"], [f"{ns}.FIRST.*"], [f"{ns.lower()}.*"], ["**"], ["ORDER*"], [".*"]):
        error = rpc_error(INVALID, make_webhook, client, URL, event_types=entries)
        assert violations(error) == ["webhook.event_types[0]"], entries
    # Built-in namespaces are patterns too.
    make_webhook(client, URL, event_types=["JOB.*", "FLOW.*"])


def test_filters_are_validated_and_choose_who_gets_an_event(client: Client) -> None:
    ns = namespace()
    make_type(client, f"{ns}.PAID")
    big = make_webhook(client, URL, event_types=[f"{ns}.*"], filter="data.amount > `100`").webhook
    eu = make_webhook(client, URL, event_types=[f"{ns}.*"], filter="metadata.correlationId == 'eu'").webhook
    broken = make_webhook(client, URL, event_types=[f"{ns}.*"], filter="abs(data.name)").webhook
    for bad in ("data.[", "nope(data)", "abs(data, data)"):
        error = rpc_error(INVALID, make_webhook, client, URL, event_types=[f"{ns}.*"], filter=bad)
        assert violations(error) == ["webhook.filter"]
        update = UpdateWebhookRequest(
            webhook=Webhook(id=big.id, filter=bad), update_mask=field_mask_pb2.FieldMask(paths=["filter"])
        )
        assert violations(rpc_error(INVALID, client.webhooks.UpdateWebhook, update)) == ["webhook.filter"]
    assert client.webhooks.GetWebhook(webhooks_pb2.GetWebhookRequest(id=big.id)).filter == "data.amount > `100`"

    errors_before = filters.tally.counts[filters.Outcome.ERROR]
    first = publish(client, f"{ns}.PAID", {"amount": 500, "name": "x"}, correlation_id="us")
    second = publish(client, f"{ns}.PAID", {"amount": 5, "name": "y"}, correlation_id="eu")
    mine = {big.id, eu.id, broken.id}
    assert deliveries_of(client, first.id, mine) == [big.id]
    assert deliveries_of(client, second.id, mine) == [eu.id]
    assert filters.tally.counts[filters.Outcome.ERROR] == errors_before + 2  # abs() of a string: filtered
    assert broken.id not in deliveries_of(client, first.id) + deliveries_of(client, second.id)
    # Clearing the filter sends everything again.
    client.webhooks.UpdateWebhook(
        UpdateWebhookRequest(webhook=Webhook(id=big.id), update_mask=field_mask_pb2.FieldMask(paths=["filter"]))
    )
    third = publish(client, f"{ns}.PAID", {"amount": 1})
    assert deliveries_of(client, third.id, mine) == [big.id]


# --- the publisher role and tenancy --------------------------------------------------


def test_a_publisher_key_publishes_and_reads_events_and_types_only(  # type: ignore[no-untyped-def]
    client: Client, publisher: Client, publisher_key: str, grpc_channel
) -> None:
    ns = namespace()
    make_type(client, f"{ns}.SENT")
    event = publish(publisher, f"{ns}.SENT", {"n": 1})
    assert publisher.events.GetEvent(GetEventRequest(id=event.id)).id == event.id
    assert event.id in [e.id for e in list_all(publisher.events.ListEvents, ListEventsRequest(), "events")]
    assert any(
        t.name == f"{ns}.SENT"
        for t in list_all(publisher.events.ListEventTypes, ListEventTypesRequest(), "event_types")
    )
    batch = publisher.events.PublishEvents(
        PublishEventsRequest(requests=[PublishEventRequest(event_type=f"{ns}.SENT")])
    )
    assert batch.results[0].HasField("event")

    allowed = {"PublishEvent", "PublishEvents", "GetEvent", "ListEvents", "ListEventTypes"}
    token = publisher_key
    for module, name in (
        (webhooks_pb2, "WebhookService"),
        (flows_pb2, "FlowService"),
        (jobs_pb2, "JobService"),
        (events_pb2, "EventService"),
    ):
        service = module.DESCRIPTOR.services_by_name[name]
        for method in service.methods:
            if name == "EventService" and method.name in allowed:
                continue
            request_type = message_factory.GetMessageClass(method.input_type)
            response_type = message_factory.GetMessageClass(method.output_type)
            kind = grpc_channel.unary_stream if method.server_streaming else grpc_channel.unary_unary
            call = kind(f"/{service.full_name}/{method.name}", request_serializer=request_type.SerializeToString,
                        response_deserializer=response_type.FromString)  # fmt: skip
            error = rpc_error(DENIED, call, request_type(), metadata=[("authorization", f"Bearer {token}")], timeout=5)
            assert "a publisher key may not call" in error.details(), method.full_name
    assert access.METHOD_ACCESS["/hookline.v1.JobService/StartJob"] is access.RUNS_JOBS


def test_another_spaces_types_and_events_are_not_found(client: Client, other_space) -> None:  # type: ignore[no-untyped-def]
    ns = namespace()
    make_type(client, f"{ns}.MINE", {"type": "object"})
    mine = publish(client, f"{ns}.MINE", {})
    theirs = other_space.client
    rpc_error(NOT_FOUND, theirs.events.GetEventType, GetEventTypeRequest(name=f"{ns}.MINE"))
    rpc_error(NOT_FOUND, theirs.events.GetEvent, GetEventRequest(id=mine.id))
    rpc_error(NOT_FOUND, publish, theirs, f"{ns}.MINE", {})
    rpc_error(NOT_FOUND, theirs.events.DeleteEventType, DeleteEventTypeRequest(name=f"{ns}.MINE"))
    update = UpdateEventTypeRequest(event_type=EventType(name=f"{ns}.MINE", description="theirs"))
    rpc_error(NOT_FOUND, theirs.events.UpdateEventType, update)
    listed = list_all(theirs.events.ListEventTypes, ListEventTypesRequest(), "event_types")
    assert not any(t.name.startswith(ns) for t in listed)
    rpc_error(INVALID, make_webhook, theirs, URL, event_types=[f"{ns}.MINE"])
    rpc_error(INVALID, make_webhook, theirs, URL, event_types=[f"{ns}.*"])
    # The same name is theirs to create; each space publishes to its own webhooks only.
    make_type(theirs, f"{ns}.MINE")
    their_hook = make_webhook(theirs, URL, event_types=["*"]).webhook
    my_hook = make_webhook(client, URL, event_types=[f"{ns}.*"]).webhook
    assert deliveries_of(client, publish(client, f"{ns}.MINE", {}).id, {my_hook.id, their_hook.id}) == [my_hook.id]
    assert deliveries_of(theirs, publish(theirs, f"{ns}.MINE", {}).id) == [their_hook.id]
    assert client.events.GetEventType(GetEventTypeRequest(name=f"{ns}.MINE")).description == ""

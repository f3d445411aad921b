"""Oversized inputs: each is INVALID_ARGUMENT with a message (and a BadRequest
field violation) that names the limit, and changes nothing a caller can see."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hookline.client import (
    CreateFlowRequest,
    CreateWebhookRequest,
    Flow,
    SendTestEventRequest,
    SetFlowWebhooksRequest,
    StartJobRequest,
    UpdateFlowRequest,
    UpdateWebhookRequest,
    Webhook,
)
from hookline.server.settings import Settings

from .world import EVENT_TYPES, UNSET, World, changes, unique

MEGABYTE = 1_000_000


def violations(error: grpc.RpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    found: dict[str, str] = {}
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def rejected(world: World, call: Callable[..., Any], request: Any, limit: int, field: str | None) -> grpc.RpcError:
    """The call is INVALID_ARGUMENT naming `limit` in its message (and in the
    violation on `field`, when given), and nothing changed."""
    before = world.snapshot()
    with pytest.raises(grpc.RpcError) as caught:
        call(request, timeout=30)
    error = caught.value
    details = error.details() or ""
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{error.code().name}: {details[:300]}"
    assert str(limit) in details, f"the message does not name the limit {limit}: {details[:300]!r}"
    if field is not None:
        found = violations(error)
        assert field in found, f"no violation on {field!r}: {found}"
        assert str(limit) in found[field], f"the violation does not name the limit {limit}: {found[field]!r}"
    assert changes(before, world.snapshot()) == []
    return error


def nested(depth: int, kind: str) -> Any:
    doc: Any = "leaf"
    for _ in range(depth):
        doc = [doc] if kind == "list" else {"a": doc}
    return doc


def start(world: World, data: Any) -> StartJobRequest:
    """A StartJob with `data` as its input, built in place (copying a deep Value
    would re-parse it and hit protobuf's depth limit in the client)."""
    request = StartJobRequest(flow=world.snapshot().flows[0].id)
    _fill(request.input, data)
    return request


def _fill(value: struct_pb2.Value, data: Any) -> None:
    if isinstance(data, list):
        value.list_value.SetInParent()
        for item in data:
            _fill(value.list_value.values.add(), item)
    elif isinstance(data, dict):
        value.struct_value.SetInParent()
        for key, item in data.items():
            _fill(value.struct_value.fields[key], item)
    elif data is not UNSET:
        value.string_value = data


def new_webhook(world: World, **fields: Any) -> CreateWebhookRequest:
    webhook = dict(alias=unique("big"), url=world.receiver.url("/ok"), event_types=["WEBHOOK.TEST"])
    webhook.update(fields)
    return CreateWebhookRequest(webhook=Webhook(**webhook))


def new_flow(**fields: Any) -> CreateFlowRequest:
    fields.setdefault("alias", unique("big"))
    flow = Flow(**fields)
    if not flow.HasField("definition"):
        flow.definition.update({"steps": []})
    return CreateFlowRequest(flow=flow)


@pytest.fixture(scope="module")
def limits(hookline_settings: Settings) -> Any:
    return hookline_settings.limits


# --- job input -----------------------------------------------------------------------------


def start_request(world: World, size: int) -> StartJobRequest:
    """A StartJob whose input is exactly `size` bytes as JSON: {"blob":"xx..."}."""
    blob = "x" * (size - len('{"blob":""}'))
    request = StartJobRequest(flow=world.snapshot().flows[0].id, correlation_id=unique("big"))
    request.input.struct_value.fields["blob"].string_value = blob
    return request


def test_job_input_one_byte_over_the_limit(world: World, limits: Any) -> None:
    request = start_request(world, limits.max_json_bytes + 1)
    rejected(world, world.client.jobs.StartJob, request, limits.max_json_bytes, "input")


def test_job_input_at_the_limit_is_accepted(world: World, limits: Any) -> None:
    job = world.client.jobs.StartJob(start_request(world, limits.max_json_bytes), timeout=30)
    assert len(job.input.struct_value.fields["blob"].string_value) == limits.max_json_bytes - len('{"blob":""}')


def test_job_input_several_megabytes_over(world: World, limits: Any) -> None:
    request = start(world, ["y" * 1000] * 3000)
    rejected(world, world.client.jobs.StartJob, request, limits.max_json_bytes, "input")


# --- deep JSON ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "object"])
def test_job_input_nested_40_deep(world: World, limits: Any, kind: str) -> None:
    request = start(world, nested(40, kind))
    # 40 lists still decode in protobuf, so the violation is on the field; 40 objects
    # (three protobuf levels each) pass protobuf's own limit of 100 and fail to decode.
    field = "input" if kind == "list" else None
    rejected(world, world.client.jobs.StartJob, request, limits.max_json_depth, field)


def test_job_input_one_level_too_deep(world: World, limits: Any) -> None:
    request = start(world, nested(limits.max_json_depth + 1, "list"))
    rejected(world, world.client.jobs.StartJob, request, limits.max_json_depth, "input")


def test_flow_definition_nested_too_deep(world: World, limits: Any) -> None:
    definition = struct_pb2.Struct()
    definition.update({"steps": []})
    _fill(definition.fields["input_schema"], {"enum": nested(40, "list")})
    request = new_flow(definition=definition)
    rejected(world, world.client.flows.CreateFlow, request, limits.max_json_depth, "flow.definition")

    existing = world.snapshot().flows[0]
    update = UpdateFlowRequest(flow=Flow(id=existing.id, definition=definition))
    rejected(world, world.client.flows.UpdateFlow, update, limits.max_json_depth, "flow.definition")


def test_flow_definition_with_thousands_of_steps(world: World) -> None:
    definition = struct_pb2.Struct()
    definition.update({"steps": [{"transform": "@"}] * 5000})
    rejected(world, world.client.flows.CreateFlow, new_flow(definition=definition), 100, "flow.definition.steps")


# --- webhooks --------------------------------------------------------------------------------


def test_thousands_of_event_types(world: World, limits: Any) -> None:
    known = [EVENT_TYPES[i % len(EVENT_TYPES)] for i in range(5000)]
    request = new_webhook(world, event_types=known)
    rejected(world, world.client.webhooks.CreateWebhook, request, limits.max_event_types, "webhook.event_types")

    unknown = [f"NO.SUCH_{i}" for i in range(5000)]
    request = new_webhook(world, event_types=unknown)
    rejected(world, world.client.webhooks.CreateWebhook, request, limits.max_event_types, "webhook.event_types")

    existing = world.snapshot().webhooks[0]
    update = UpdateWebhookRequest(webhook=Webhook(id=existing.id, event_types=known))
    rejected(world, world.client.webhooks.UpdateWebhook, update, limits.max_event_types, "webhook.event_types")


def test_megabyte_url(world: World, limits: Any) -> None:
    url = world.receiver.url("/") + "u" * MEGABYTE
    request = new_webhook(world, url=url)
    rejected(world, world.client.webhooks.CreateWebhook, request, limits.max_url_length, "webhook.url")

    existing = world.snapshot().webhooks[0]
    update = UpdateWebhookRequest(webhook=Webhook(id=existing.id, url=url))
    rejected(world, world.client.webhooks.UpdateWebhook, update, limits.max_url_length, "webhook.url")


def test_megabyte_description(world: World, limits: Any) -> None:
    text = "d" * MEGABYTE
    limit = limits.max_description_length
    rejected(
        world, world.client.webhooks.CreateWebhook, new_webhook(world, description=text), limit, "webhook.description"
    )
    existing = world.snapshot()
    rejected(
        world,
        world.client.webhooks.UpdateWebhook,
        UpdateWebhookRequest(webhook=Webhook(id=existing.webhooks[0].id, description=text)),
        limit,
        "webhook.description",
    )
    rejected(world, world.client.flows.CreateFlow, new_flow(description=text), limit, "flow.description")
    rejected(
        world,
        world.client.flows.UpdateFlow,
        UpdateFlowRequest(flow=Flow(id=existing.flows[0].id, description=text)),
        limit,
        "flow.description",
    )
    rejected(
        world,
        world.client.webhooks.SendTestEvent,
        SendTestEventRequest(id=existing.webhooks[0].id, message=text),
        limit,
        "message",
    )


def test_megabyte_multibyte_description(world: World, limits: Any) -> None:
    """A megabyte of four-byte characters: the limit counts characters."""
    text = "\U0001f600" * (MEGABYTE // 4)
    request = new_webhook(world, description=text)
    rejected(world, world.client.webhooks.CreateWebhook, request, limits.max_description_length, "webhook.description")


def test_megabyte_alias_and_name(world: World) -> None:
    rejected(world, world.client.webhooks.CreateWebhook, new_webhook(world, alias="a" * MEGABYTE), 64, "webhook.alias")
    rejected(world, world.client.flows.CreateFlow, new_flow(alias="a" * MEGABYTE), 64, "flow.alias")
    rejected(world, world.client.flows.CreateFlow, new_flow(name="n" * MEGABYTE), 200, "flow.name")


def test_thousands_of_headers(world: World, limits: Any) -> None:
    headers = {f"X-H{i}": "v" for i in range(5000)}
    request = new_webhook(world, headers=headers)
    rejected(world, world.client.webhooks.CreateWebhook, request, limits.max_headers, "webhook.headers")


def test_megabyte_correlation_id_and_idempotency_key(world: World) -> None:
    flow = world.snapshot().flows[0].id
    for field in ("correlation_id", "idempotency_key"):
        request = StartJobRequest(flow=flow, **{field: "k" * MEGABYTE})
        rejected(world, world.client.jobs.StartJob, request, 255, field)


def test_thousands_of_linked_webhooks_that_do_not_exist(world: World) -> None:
    """5,000 unknown webhooks to link: NOT_FOUND, and the flow keeps its links."""
    before = world.snapshot()
    request = SetFlowWebhooksRequest(flow_id=before.flows[0].id, webhook_ids=[f"ghost-{i}" for i in range(5000)])
    with pytest.raises(grpc.RpcError) as caught:
        world.client.flows.SetFlowWebhooks(request, timeout=30)
    assert caught.value.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT)
    assert caught.value.details()
    assert changes(before, world.snapshot()) == []


# --- echoed values stay within gRPC's limit on trailers --------------------------------------


@pytest.mark.parametrize("unit", ["p", "\U0001f600"])
def test_a_huge_unknown_update_mask_path_gets_its_status(world: World, unit: str) -> None:
    """The message names the unknown path; however long the path and whatever its
    characters, the error must reach the caller as INVALID_ARGUMENT, not as a
    stream the client drops for oversized metadata (RESOURCE_EXHAUSTED)."""
    state = world.snapshot()
    path = unit * 20_000
    calls = [
        (
            world.client.flows.UpdateFlow,
            UpdateFlowRequest(
                flow=Flow(id=state.flows[0].id, name="x"), update_mask=field_mask_pb2.FieldMask(paths=[path])
            ),
        ),
        (
            world.client.webhooks.UpdateWebhook,
            UpdateWebhookRequest(
                webhook=Webhook(id=state.webhooks[0].id, description="x"),
                update_mask=field_mask_pb2.FieldMask(paths=[path, "secret"]),
            ),
        ),
    ]
    for call, request in calls:
        before = world.snapshot()
        with pytest.raises(grpc.RpcError) as caught:
            call(request, timeout=30)
        error = caught.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{error.code().name}: {error.details()[:300]}"
        assert "update_mask" in error.details()
        assert changes(before, world.snapshot()) == []


@pytest.mark.parametrize("unit", ["e", "\U0001f600"])
def test_many_bad_values_echoed_at_once_get_their_status(world: World, limits: Any, unit: str) -> None:
    """Every unknown event type and bad header name is named in the message and
    in a violation of its own; together they must still fit gRPC's trailers."""
    names = [unit * 100 + str(i) for i in range(limits.max_event_types)]
    headers = {unit * 100 + f" {i}": "v" for i in range(limits.max_headers)}
    for request, field in (
        (new_webhook(world, event_types=names), "webhook.event_types[0]"),
        (new_webhook(world, headers=headers), None),
    ):
        before = world.snapshot()
        with pytest.raises(grpc.RpcError) as caught:
            world.client.webhooks.CreateWebhook(request, timeout=30)
        error = caught.value
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, f"{error.code().name}: {error.details()[:300]}"
        if field is not None:
            assert field in violations(error)
        assert changes(before, world.snapshot()) == []

"""Bad input at scale: generated requests for every RPC of the three services.

Properties, for every request:
* the call succeeds or fails with a status a caller can act on: never INTERNAL or
  UNKNOWN, never a deadline or a dropped connection (the server hung or died),
  and INVALID_ARGUMENT always carries a message;
* a rejected call changes nothing a caller can see (webhooks, flows, jobs,
  deliveries, events), allowing only background work already under way;
* an accepted call stored only values that satisfy the documented rules.

Streams are read up to their first message. A second property sends the bytes of
a generated request after random damage (truncated, bytes flipped or inserted).
`tally` counts every request; the total is printed at the end of the session."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import grpc
import pytest
from google.protobuf import message_factory
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from hookline.client import (
    DeleteWebhookRequest,
    GetJobRequest,
    JobState,
    SendTestEventRequest,
    StartJobRequest,
    UpdateWebhookRequest,
    Webhook,
)
from hookline.server import subscriptions
from hookline.server.delivery import urls
from hookline.v1 import flows_pb2, jobs_pb2, webhooks_pb2

from . import tally
from .strategies import REQUESTS
from .world import EVENT_TYPES, TERMINAL_JOB_STATES, World, changes

# The RPCs of the three services: name -> (client attribute, full service name, server streaming).
METHODS: dict[str, tuple[str, str, bool]] = {}
for _module, _service, _attr in (
    (webhooks_pb2, "WebhookService", "webhooks"),
    (flows_pb2, "FlowService", "flows"),
    (jobs_pb2, "JobService", "jobs"),
):
    _descriptor = _module.DESCRIPTOR.services_by_name[_service]
    for _method in _descriptor.methods:
        METHODS[_method.name] = (_attr, _descriptor.full_name, _method.server_streaming)

ALLOWED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
GRPC_MAX_RECEIVE = 4 * 1024 * 1024  # the server's default limit on a request
UNARY_DEADLINE_S = 30.0
STREAM_DEADLINE_S = 5.0

ALIAS_RULE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")
ID_FORM = re.compile(r"(?:sp|key|wh|flow|job|evt|dlv|att)_[0-9a-hjkmnp-tv-z]{26}")
HEADER_NAME_RULE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")

# No shrinking: against a live server it replays megabyte requests for minutes,
# and the state it runs against has moved on anyway (see run_property).
EXAMPLES = settings(
    max_examples=32,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
RAW_EXAMPLES = settings(EXAMPLES, max_examples=6)


def test_every_rpc_has_a_strategy() -> None:
    assert set(REQUESTS) == set(METHODS)
    assert len(METHODS) == 32


def test_the_state_comparison_sees_each_kind_of_change(world: World) -> None:
    """The oracle of "no change on rejection" notices what a call could change."""
    before = world.snapshot()
    hook = world.add_webhook()
    created = world.snapshot()
    assert any(hook.id in change and "appeared" in change for change in changes(before, created))

    world.observer.webhooks.UpdateWebhook(UpdateWebhookRequest(webhook=Webhook(id=hook.id, description="changed")))
    updated = world.snapshot()
    assert any(hook.id in change and "changed" in change for change in changes(created, updated))

    world.observer.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    sent = world.snapshot()
    found = changes(updated, sent)
    assert any(change.startswith("event") for change in found) and any("delivery" in c for c in found), found

    job = world.observer.jobs.StartJob(StartJobRequest(flow=sent.flows[0].id))
    assert any(job.id in change for change in changes(sent, world.snapshot()))

    world.observer.webhooks.DeleteWebhook(DeleteWebhookRequest(id=hook.id))
    assert any(hook.id in change and "disappeared" in change for change in changes(sent, world.snapshot()))


# --- calling ---------------------------------------------------------------------------


class EndedEmpty(Exception):
    """A stream ended without sending its first message."""


def _first(stream: Any) -> Any:
    try:
        return next(stream)
    except StopIteration:
        raise EndedEmpty from None
    finally:
        stream.cancel()


def call_typed(world: World, rpc: str, request: Any) -> Any:
    attr, _, streaming = METHODS[rpc]
    method = getattr(getattr(world.client, attr), rpc)
    if streaming:
        return _first(method(request, timeout=STREAM_DEADLINE_S))
    return method(request, timeout=UNARY_DEADLINE_S)


def call_raw(world: World, rpc: str, payload: bytes) -> Any:
    _, service, streaming = METHODS[rpc]
    path = f"/{service}/{rpc}"
    if streaming:
        method = world.client.channel.unary_stream(path, request_serializer=bytes, response_deserializer=bytes)
        return _first(method(payload, timeout=STREAM_DEADLINE_S))
    method = world.client.channel.unary_unary(path, request_serializer=bytes, response_deserializer=bytes)
    return method(payload, timeout=UNARY_DEADLINE_S)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, bytes) else str(value).replace("\n", " ")
    return text if len(text) <= 1500 else text[:1500] + f"... ({len(text)} characters)"


def exercise(world: World, rpc: str, before: Any, send: Any, size: int, shown: Any) -> Any:
    """Make the call; check the status on failure and that nothing changed.
    Returns the response, or None when the call was rejected."""
    try:
        response = send()
    except EndedEmpty:
        world.last = None
        tally.record(rpc, "EMPTY_STREAM")
        raise AssertionError(f"{rpc}: the stream ended without a first message; request: {_show(shown)}") from None
    except grpc.RpcError as error:
        world.last = None
        code = error.code()
        tally.record(rpc, code.name)
        details = error.details() or ""
        allowed = ALLOWED | ({grpc.StatusCode.RESOURCE_EXHAUSTED} if size > GRPC_MAX_RECEIVE else set())
        assert code in allowed, f"{rpc} failed {code.name}: {details[:500]!r}; request: {_show(shown)}"
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            assert details.strip(), f"{rpc}: INVALID_ARGUMENT without a message; request: {_show(shown)}"
        after = world.snapshot()
        found = changes(before, after)
        assert not found, f"{rpc} was rejected ({code.name}: {details[:300]!r}) but changed: {found[:5]}"
        world.last = after
        return None
    world.last = None
    tally.record(rpc, "OK")
    return response


# --- what an accepted call may store ----------------------------------------------------
#
# Only the fields the call wrote are checked, so one bad value stored earlier is
# reported once, by the call that stored it.

WEBHOOK_FIELDS = ("alias", "url", "description", "event_types", "headers")
FLOW_FIELDS = ("alias", "name", "description")


def written(message: Any, mask: Any, fields: tuple[str, ...]) -> set[str]:
    """The fields an Update wrote: its mask's paths, or the ones it sets."""
    if mask.paths:
        return set(mask.paths) & set(fields)
    return {name for name in fields if getattr(message, name)}


def check_webhook(webhook: Any, fields: set[str]) -> None:
    if "alias" in fields:
        assert ALIAS_RULE.fullmatch(webhook.alias), f"stored alias {webhook.alias!r} breaks the alias rule"
        assert not ID_FORM.fullmatch(webhook.alias), f"stored alias {webhook.alias!r} has the form of an id"
    if "url" in fields:
        parts = urlsplit(webhook.url)
        assert parts.scheme in ("http", "https") and parts.hostname, f"stored url {webhook.url[:200]!r}"
        assert len(webhook.url) <= 2048 and not any(c.isspace() for c in webhook.url)
        assert urls.problem(webhook.url) is None, f"stored url {webhook.url[:200]!r}: {urls.problem(webhook.url)}"
    if "description" in fields:
        assert len(webhook.description) <= 1000
    if "event_types" in fields:
        assert 1 <= len(webhook.event_types) <= 64
        for entry in webhook.event_types:
            # A type of the catalog, or a pattern (PREFIX.*, *) that matches one.
            known = entry in EVENT_TYPES or (
                subscriptions.is_pattern(entry) and subscriptions.pattern_problem(entry, EVENT_TYPES) is None
            )
            assert known, f"stored event type {entry!r} is neither a known type nor a pattern matching one"
    if "headers" in fields:
        assert len(webhook.headers) <= 32
        for name, value in webhook.headers.items():
            assert HEADER_NAME_RULE.fullmatch(name), f"stored header name {name!r} is not an HTTP token"
            assert len(value) <= 4096 and not any(c in value for c in "\r\n\0"), f"stored header value {value[:80]!r}"


def check_flow(flow: Any, fields: set[str]) -> None:
    if "alias" in fields:
        assert ALIAS_RULE.fullmatch(flow.alias), f"stored alias {flow.alias!r} breaks the alias rule"
        assert not ID_FORM.fullmatch(flow.alias), f"stored alias {flow.alias!r} has the form of an id"
    if "name" in fields:
        assert len(flow.name) <= 200
    if "description" in fields:
        assert len(flow.description) <= 1000
    assert flow.version >= 1


def check_accepted(rpc: str, request: Any, response: Any) -> None:
    """What the call stored keeps to the documented rules."""
    if rpc == "CreateWebhook":
        check_webhook(response.webhook, set(WEBHOOK_FIELDS))
    elif rpc == "UpdateWebhook":
        check_webhook(response, written(request.webhook, request.update_mask, WEBHOOK_FIELDS))
    elif rpc == "CreateFlow":
        check_flow(response, set(FLOW_FIELDS))
    elif rpc == "UpdateFlow":
        check_flow(response, written(request.flow, request.update_mask, FLOW_FIELDS))
    elif rpc == "StartJob":
        assert len(response.correlation_id) <= 255 and len(response.idempotency_key) <= 255


def _decode(rpc: str, payload: bytes, response: bytes) -> tuple[Any, Any]:
    """The request the server read from damaged bytes and its response, as
    messages (None for a response that is not one of hookline's)."""
    attr, service, _ = METHODS[rpc]
    module = {"webhooks": webhooks_pb2, "flows": flows_pb2, "jobs": jobs_pb2}[attr]
    method = module.DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]].methods_by_name[rpc]
    if method.output_type.file.package != "hookline.v1":
        return None, None
    # By descriptor: a message may be defined in another file (events.proto) than its service.
    request = message_factory.GetMessageClass(method.input_type).FromString(payload)
    return request, message_factory.GetMessageClass(method.output_type).FromString(response)


# --- the properties ------------------------------------------------------------------------
#
# Hypothesis runs inside each test and a broken property is collected rather than
# raised: against a live server a replay of the example may pass (an alias now
# taken, a job that has ended), which Hypothesis would report only as a flaky
# test. Every generated request is sent either way, and the test then fails with
# the first broken example and how many there were.


def run_property(rpc: str, examples: settings, one_example: Callable[[st.DataObject], None]) -> None:
    broken: list[str] = []
    sent_before = tally.calls[rpc]

    @examples
    @given(data=st.data())
    def property_holds(data: st.DataObject) -> None:
        try:
            one_example(data)
        except AssertionError as error:
            broken.append(str(error))

    property_holds()
    if broken:
        first = broken[0] if len(broken[0]) <= 3000 else broken[0][:3000] + "..."
        sent = tally.calls[rpc] - sent_before
        raise AssertionError(f"{len(broken)} of {sent} generated {rpc} requests broke a property; the first: {first}")


@pytest.mark.parametrize("rpc", sorted(METHODS))
def test_generated_requests(world: World, rpc: str) -> None:
    def one_example(data: st.DataObject) -> None:
        spec = data.draw(REQUESTS[rpc], label="request")
        before = world.fresh_state()
        request = world.resolve(spec, before)
        response = exercise(world, rpc, before, lambda: call_typed(world, rpc, request), request.ByteSize(), request)
        if response is not None:
            check_accepted(rpc, request, response)

    run_property(rpc, EXAMPLES, one_example)


def damage(data: st.DataObject, payload: bytes) -> bytes:
    how = data.draw(st.sampled_from(["truncate", "flip", "insert", "append", "random"]), label="damage")
    if how == "random" or not payload:
        return data.draw(st.binary(max_size=64), label="bytes")
    at = data.draw(st.integers(0, len(payload) - 1), label="at")
    junk = data.draw(st.binary(min_size=1, max_size=12), label="junk")
    if how == "truncate":
        return payload[:at]
    if how == "flip":
        return payload[:at] + bytes([payload[at] ^ junk[0] or 0xFF]) + payload[at + 1 :]
    if how == "insert":
        return payload[:at] + junk + payload[at:]
    return payload + junk


@pytest.mark.parametrize("rpc", sorted(METHODS))
def test_damaged_request_bytes(world: World, rpc: str) -> None:
    def one_example(data: st.DataObject) -> None:
        spec = data.draw(REQUESTS[rpc], label="request")
        before = world.fresh_state()
        payload = damage(data, world.resolve(spec, before).SerializeToString())
        response = exercise(
            world, rpc + tally.DAMAGED, before, lambda: call_raw(world, rpc, payload), len(payload), payload
        )
        if response is not None:
            request, decoded = _decode(rpc, payload, response)
            if decoded is not None:
                check_accepted(rpc, request, decoded)

    run_property(rpc + tally.DAMAGED, RAW_EXAMPLES, one_example)


def test_every_job_of_the_run_ends(world: World) -> None:
    """After all that, no job is left WAITING or RUNNING for good."""
    deadline = time.monotonic() + 20
    while True:
        live = [j for j in world.snapshot().jobs if j.state not in TERMINAL_JOB_STATES]
        if not live:
            return
        if time.monotonic() > deadline:
            shown = [(j.id, JobState.Name(j.state)) for j in live[:5]]
            job = world.observer.jobs.GetJob(GetJobRequest(id=live[0].id))
            raise AssertionError(f"{len(live)} jobs never ended, e.g. {shown}; first: {_show(job)}")
        time.sleep(0.1)

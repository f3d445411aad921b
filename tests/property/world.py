"""The resources generated requests point at, the visible state of the space,
and turning a generated request description into a protobuf request.

Generated requests name existing resources through placeholders (`Ref`, `Token`,
`Cursor`, `Hook`, `Fresh`) resolved against the state just before the call, so a
request can hit a real webhook, flow, job, delivery or event (or a mangled form
of its id or alias) even though the ids are only known at run time."""

from __future__ import annotations

import base64
import json
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2, timestamp_pb2

from hookline.client import (
    Client,
    CreateFlowRequest,
    CreateWebhookRequest,
    DeliveryState,
    Flow,
    JobState,
    ListAttemptsRequest,
    ListDeliveriesRequest,
    ListEventsRequest,
    ListFlowsRequest,
    ListFlowWebhooksRequest,
    ListJobsRequest,
    ListWebhooksRequest,
    SendTestEventRequest,
    StartJobRequest,
    WatchDeliveriesRequest,
    Webhook,
)

EVENT_TYPES = (
    "JOB.COMPLETED",
    "JOB.ERROR",
    "JOB.CANCELED",
    "FLOW.CREATED",
    "FLOW.UPDATED",
    "FLOW.DELETED",
    "WEBHOOK.DISABLED",
    "WEBHOOK.TEST",
)
TERMINAL_JOB_STATES = {JobState.JOB_STATE_COMPLETED, JobState.JOB_STATE_ERROR, JobState.JOB_STATE_CANCELED}
TERMINAL_DELIVERY_STATES = {
    DeliveryState.DELIVERY_STATE_SUCCEEDED,
    DeliveryState.DELIVERY_STATE_FAILED,
    DeliveryState.DELIVERY_STATE_CANCELED,
}
ID_PREFIX = {"webhook": "wh", "flow": "flow", "job": "job", "delivery": "dlv", "event": "evt", "attempt": "att"}
SNAPSHOT_PAGE = 100


# --- placeholders in generated requests ----------------------------------------------


@dataclass(frozen=True)
class Ref:
    """An existing resource of `kind` (the index wraps around), by id or alias,
    possibly mangled."""

    kind: str
    index: int
    by_alias: bool = False
    mangle: str = ""


@dataclass(frozen=True)
class Token:
    """A real page token from some List call, possibly mangled."""

    index: int
    mangle: str = ""
    after: Any = None


@dataclass(frozen=True)
class Cursor:
    """A real WatchDeliveries cursor, possibly mangled."""

    mangle: str = ""


@dataclass(frozen=True)
class Hook:
    """A URL on the test receiver."""

    path: str


@dataclass(frozen=True)
class Fresh:
    """A unique alias: `prefix`, a random part, then `tail`."""

    prefix: str
    tail: str = ""


@dataclass(frozen=True)
class Msg:
    """A protobuf message; None fields stay unset."""

    cls: type
    fields: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Json:
    """A google.protobuf.Value (or Struct when `struct`) built from Python data.
    NaN and infinities go through as they are; UNSET is a Value of no kind."""

    data: Any
    struct: bool = False


@dataclass(frozen=True)
class Time:
    seconds: int
    nanos: int


@dataclass(frozen=True)
class Span:
    seconds: int
    nanos: int


@dataclass(frozen=True)
class Mask:
    paths: tuple[str, ...]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


def msg(cls: type, **fields: Any) -> Msg:
    return Msg(cls, tuple(fields.items()))


# --- the world and its state ----------------------------------------------------------


@dataclass
class State:
    """What a caller can see of the space. Items that background work may still
    change (jobs not yet ended, deliveries not yet settled) are compared only on
    the fields that never change."""

    webhooks: list[Any]
    flows: list[Any]
    jobs: list[Any]
    deliveries: list[Any]
    events: list[Any]

    def of(self, kind: str) -> list[Any]:
        return {
            "webhook": self.webhooks,
            "flow": self.flows,
            "job": self.jobs,
            "delivery": self.deliveries,
            "event": self.events,
        }[kind]


@dataclass
class World:
    client: Client
    observer: Client
    receiver: Any
    tokens: list[str] = field(default_factory=list)
    cursors: list[str] = field(default_factory=list)
    attempt_ids: list[str] = field(default_factory=list)
    # The state after the last call, when that call was rejected (it changed
    # nothing, so it still serves as the state before the next one).
    last: State | None = None

    # --- snapshots

    def snapshot(self) -> State:
        """Every item of the five lists. Jobs come first, so an event or delivery
        that background work adds for a job ending meanwhile is seen as such."""
        hooks = self.observer.webhooks
        jobs = self._list(self.observer.jobs.ListJobs, ListJobsRequest, "jobs")
        rest = [
            (hooks.ListWebhooks, ListWebhooksRequest, "webhooks"),
            (self.observer.flows.ListFlows, ListFlowsRequest, "flows"),
            (hooks.ListDeliveries, ListDeliveriesRequest, "deliveries"),
            (hooks.ListEvents, ListEventsRequest, "events"),
        ]
        first = [method.future(cls(page_size=SNAPSHOT_PAGE), timeout=30) for method, cls, _ in rest]
        found = {"jobs": jobs}
        for (method, cls, attr), future in zip(rest, first, strict=True):
            found[attr] = self._list(method, cls, attr, future.result())
        return State(**found)

    @staticmethod
    def _list(method: Callable[..., Any], cls: type, attr: str, response: Any = None) -> list[Any]:
        if response is None:
            response = method(cls(page_size=SNAPSHOT_PAGE), timeout=30)
        items = list(getattr(response, attr))
        for _ in range(10_000):
            if not response.next_page_token:
                return items
            response = method(cls(page_size=SNAPSHOT_PAGE, page_token=response.next_page_token), timeout=30)
            items.extend(getattr(response, attr))
        raise AssertionError("pagination does not end")

    def fresh_state(self) -> State:
        """The state before a call. After a success it is read again, and topped
        up so that happy paths stay reachable: enabled webhooks and flows that
        generated calls deleted or disabled, deliveries that can be retried and a
        job still running (to cancel)."""
        if self.last is not None:
            return self.last
        state = self.snapshot()
        return self.snapshot() if self._top_up(state) else state

    def _top_up(self, state: State) -> bool:
        enabled = [w.id for w in state.webhooks if w.enabled]
        while len(enabled) < 3:
            enabled.append(self.add_webhook().id)
        missing_flows = max(0, 3 - len(state.flows))
        for _ in range(missing_flows):
            self.add_flow([])
        changed = len(enabled) > len([w for w in state.webhooks if w.enabled]) or missing_flows > 0
        retryable = [
            d
            for d in state.deliveries
            if d.state in (DeliveryState.DELIVERY_STATE_SUCCEEDED, DeliveryState.DELIVERY_STATE_FAILED)
            and d.webhook_id in enabled
        ]
        if len(retryable) < 2:
            self.observer.webhooks.SendTestEvent(SendTestEventRequest(id=enabled[-1], message="top-up"))
            changed = True
        if all(j.state in TERMINAL_JOB_STATES for j in state.jobs):
            slow = [f.id for f in state.flows if f.alias.startswith("slow-")]
            flow_id = slow[0] if slow else self.add_flow([], [{"sleep_ms": 2000}], prefix="slow").id
            self.observer.jobs.StartJob(StartJobRequest(flow=flow_id, correlation_id="slow"))
            changed = True
        return changed

    def add_webhook(self, path: str = "/ok", event_types: tuple[str, ...] = EVENT_TYPES) -> Any:
        webhook = Webhook(alias=unique("pw"), url=self.receiver.url(path), event_types=list(event_types))
        return self.observer.webhooks.CreateWebhook(CreateWebhookRequest(webhook=webhook)).webhook

    def add_flow(self, webhook_ids: list[str], steps: list[Any] | None = None, prefix: str = "pf") -> Any:
        definition = struct_pb2.Struct()
        definition.update({"steps": steps or []})
        flow = Flow(alias=unique(prefix), name="pool", definition=definition, webhook_ids=webhook_ids)
        return self.observer.flows.CreateFlow(CreateFlowRequest(flow=flow))

    # --- placeholders -> values

    def resolve(self, spec: Any, state: State) -> Any:
        if isinstance(spec, Msg):
            message = spec.cls()
            self._build(message, spec, state)
            return message
        if isinstance(spec, Ref):
            return self._ref(spec, state)
        if isinstance(spec, Token):
            return self._token(spec)
        if isinstance(spec, Cursor):
            return _mangle(self.cursors[0], spec.mangle) if self.cursors else spec.mangle
        if isinstance(spec, Hook):
            return self.receiver.url(spec.path)
        if isinstance(spec, Fresh):
            return unique(spec.prefix) + spec.tail
        if isinstance(spec, Json):
            message = struct_pb2.Struct() if spec.struct else struct_pb2.Value()
            _fill_json(message, spec)
            return message
        if isinstance(spec, Time):
            return timestamp_pb2.Timestamp(seconds=spec.seconds, nanos=spec.nanos)
        if isinstance(spec, Span):
            return duration_pb2.Duration(seconds=spec.seconds, nanos=spec.nanos)
        if isinstance(spec, Mask):
            return field_mask_pb2.FieldMask(paths=list(spec.paths))
        if isinstance(spec, (list, tuple)):
            return [self.resolve(item, state) for item in spec]
        if isinstance(spec, dict):
            return {self.resolve(k, state): self.resolve(v, state) for k, v in spec.items()}
        return spec

    def _build(self, message: Any, spec: Msg, state: State) -> None:
        """Fill `message` in place: JSON and nested messages are built where they
        live, since copying a message re-parses it and deep JSON would hit
        protobuf's own depth limit in the client."""
        for name, value in spec.fields:
            if value is None:
                continue
            if isinstance(value, (Msg, Json)):
                target = getattr(message, name)
                target.SetInParent()
                if isinstance(value, Msg):
                    self._build(target, value, state)
                else:
                    _fill_json(target, value)
                continue
            resolved = self.resolve(value, state)
            if isinstance(resolved, list):
                getattr(message, name).extend(resolved)
            elif isinstance(resolved, dict):
                getattr(message, name).update(resolved)
            elif hasattr(resolved, "DESCRIPTOR"):
                getattr(message, name).CopyFrom(resolved)
            else:
                setattr(message, name, resolved)

    def _ref(self, ref: Ref, state: State) -> str:
        if ref.kind == "attempt":
            items: list[Any] = [_IdOnly(i) for i in self.attempt_ids]
        else:
            items = state.of(ref.kind)
        if not items:
            value = f"{ID_PREFIX[ref.kind]}_{'0' * 26}"
        else:
            item = items[-1 - ref.index % len(items)]  # newest first: more likely still usable
            value = item.alias if ref.by_alias and getattr(item, "alias", "") else item.id
        return _mangle(value, ref.mangle)

    def _token(self, token: Token) -> str:
        if not self.tokens:
            return "junk"
        real = self.tokens[token.index % len(self.tokens)]
        if token.mangle == "forge":
            # A token of the right form and filters, pointing anywhere.
            decoded = json.loads(base64.urlsafe_b64decode(real))
            decoded["a"] = token.after
            return base64.urlsafe_b64encode(json.dumps(decoded, default=repr).encode()).decode()
        return _mangle(real, token.mangle)


@dataclass(frozen=True)
class _IdOnly:
    id: str


def _mangle(value: str, how: str) -> str:
    if how == "":
        return value
    if how == "upper":
        return value.upper()
    if how == "suffix":
        return value + "x"
    if how == "space":
        return " " + value
    if how == "newline":
        return value + "\n"
    if how == "nul":
        return value + "\x00"
    if how == "chop":
        return value[:-1]
    if how == "flip":
        return value[:-1] + ("A" if value[-1:] != "A" else "B")
    if how == "double":
        return value + value
    return how  # a literal replacement


def _fill_json(message: Any, spec: Json) -> None:
    if spec.struct:
        for key, item in spec.data.items():
            _fill(message.fields[key], item)
    else:
        _fill(message, spec.data)


def json_value(data: Any) -> struct_pb2.Value:
    """A Value holding Python data, built as generated requests build theirs."""
    value = struct_pb2.Value()
    _fill(value, data)
    return value


def _fill(value: struct_pb2.Value, data: Any) -> None:
    """Fill `value` top-down: nesting costs no copies, so depth is limited only
    by what the server will parse."""
    if data is UNSET:
        return
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        value.bool_value = data
    elif isinstance(data, (int, float)):
        try:
            value.number_value = float(data)
        except OverflowError:
            value.number_value = math.inf if data > 0 else -math.inf
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, dict):
        value.struct_value.SetInParent()
        for key, item in data.items():
            _fill(value.struct_value.fields[key], item)
    elif isinstance(data, (list, tuple)):
        value.list_value.SetInParent()
        for item in data:
            _fill(value.list_value.values.add(), item)
    else:
        raise TypeError(f"not JSON data: {type(data).__name__}")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- comparing states ----------------------------------------------------------------

_JOB_FIXED = (
    "id",
    "flow_id",
    "flow_alias",
    "flow_version",
    "input",
    "correlation_id",
    "idempotency_key",
    "create_time",
)
_DELIVERY_FIXED = ("id", "webhook_id", "event_id", "event_type", "job_id", "flow_id", "create_time")


def changes(before: State, after: State) -> list[str]:
    """What differs between two states, allowing only background progress: jobs
    and deliveries that had not ended may move on, and a job that ends emits its
    event and deliveries."""
    found: list[str] = []
    for kind in ("webhook", "flow"):
        old = {item.id: item for item in before.of(kind)}
        new = {item.id: item for item in after.of(kind)}
        for key in old.keys() - new.keys():
            found.append(f"{kind} {key} disappeared")
        for key in new.keys() - old.keys():
            found.append(f"{kind} {key} appeared: {_short(new[key])}")
        for key in old.keys() & new.keys():
            if old[key] != new[key]:
                found.append(f"{kind} {key} changed: {_short(old[key])} -> {_short(new[key])}")

    live_jobs = {j.id for j in before.jobs if j.state not in TERMINAL_JOB_STATES}
    found += _compare_progressing("job", before.jobs, after.jobs, TERMINAL_JOB_STATES, _JOB_FIXED, set())

    old_events = {e.id for e in before.events}
    for event in after.events:
        if event.id not in old_events and not (event.event_type.startswith("JOB.") and event.job_id in live_jobs):
            found.append(f"event {event.id} ({event.event_type}) appeared")
    for key in old_events - {e.id for e in after.events}:
        found.append(f"event {key} disappeared")

    found += _compare_progressing(
        "delivery", before.deliveries, after.deliveries, TERMINAL_DELIVERY_STATES, _DELIVERY_FIXED, live_jobs
    )
    return found


def _compare_progressing(
    kind: str, before: list[Any], after: list[Any], terminal: set[int], fixed: tuple[str, ...], live_jobs: set[str]
) -> list[str]:
    """Items that had ended must be unchanged; the others may only move on. New
    items may appear only for a job that was still live (its end event's deliveries)."""
    found: list[str] = []
    old = {item.id: item for item in before}
    new = {item.id: item for item in after}
    for key in old.keys() - new.keys():
        found.append(f"{kind} {key} disappeared")
    for key in new.keys() - old.keys():
        item = new[key]
        if not (kind == "delivery" and item.event_type.startswith("JOB.") and item.job_id in live_jobs):
            found.append(f"{kind} {key} appeared: {_short(new[key])}")
    for key in old.keys() & new.keys():
        a, b = old[key], new[key]
        if a.state in terminal:
            if a != b:
                found.append(f"{kind} {key} changed after it ended: {_short(a)} -> {_short(b)}")
        elif any(getattr(a, name) != getattr(b, name) for name in fixed):
            found.append(f"{kind} {key} changed: {_short(a)} -> {_short(b)}")
    return found


def _short(message: Any) -> str:
    text = str(message).replace("\n", " ")
    return text if len(text) <= 300 else text[:300] + "..."


# --- the world --------------------------------------------------------------------------


def make_world(client: Client, observer: Client, receiver: Any) -> World:
    """Webhooks (one answering 500), flows linked to them, ended jobs, succeeded and
    failed deliveries with attempts, real page tokens and a real cursor."""
    world = World(client, observer, receiver)
    receiver.respond("/fail", [500])
    ok = world.add_webhook("/ok")
    failing = world.add_webhook("/fail", ("WEBHOOK.TEST", "JOB.COMPLETED", "JOB.ERROR"))
    flows = [
        world.add_flow([ok.id, failing.id]),
        world.add_flow([ok.id], [{"fail_if": "a == `1`", "message": "a is one"}]),
        world.add_flow([], [{"transform": "{doubled: [a, a]}"}, {"sleep_ms": 5}]),
    ]
    for flow in flows:
        for value in ({"a": 1}, {"a": 2}, [1, 2, 3]):
            input_value = struct_pb2.Value()
            _fill(input_value, value)
            observer.jobs.StartJob(StartJobRequest(flow=flow.id, input=input_value, correlation_id="pool"))
    for hook in (ok, failing, ok):
        observer.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id, message="pool"))

    deadline = time.monotonic() + 20
    while True:
        state = world.snapshot()
        settled = all(j.state in TERMINAL_JOB_STATES for j in state.jobs) and all(
            d.state in TERMINAL_DELIVERY_STATES for d in state.deliveries
        )
        if settled:
            break
        assert time.monotonic() < deadline, "the pool's jobs and deliveries did not settle"
        time.sleep(0.05)
    failed = [d for d in state.deliveries if d.state == DeliveryState.DELIVERY_STATE_FAILED]
    assert failed, "no FAILED delivery in the pool"

    hooks = observer.webhooks
    pages: list[tuple[Callable[..., Any], Any]] = [
        (hooks.ListWebhooks, ListWebhooksRequest(page_size=1)),
        (observer.flows.ListFlows, ListFlowsRequest(page_size=1)),
        (observer.jobs.ListJobs, ListJobsRequest(page_size=1)),
        (observer.jobs.ListJobs, ListJobsRequest(page_size=1, flow_id=flows[0].id)),
        (hooks.ListDeliveries, ListDeliveriesRequest(page_size=1)),
        (hooks.ListEvents, ListEventsRequest(page_size=1)),
        (hooks.ListAttempts, ListAttemptsRequest(page_size=1, delivery_id=failed[0].id)),
        (observer.flows.ListFlowWebhooks, ListFlowWebhooksRequest(page_size=1, flow_id=flows[0].id)),
    ]
    for method, request in pages:
        token = method(request).next_page_token
        assert token, f"no second page for {type(request).__name__}"
        world.tokens.append(token)
    world.attempt_ids = [
        a.id for a in hooks.ListAttempts(ListAttemptsRequest(delivery_id=failed[0].id, page_size=10)).attempts
    ]
    stream = hooks.WatchDeliveries(WatchDeliveriesRequest(), timeout=10)
    world.cursors.append(next(stream).cursor)
    stream.cancel()
    return world

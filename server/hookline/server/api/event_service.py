"""EventService: event types, the events of a space, and publishing its own."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from hookline.v1 import events_pb2, events_pb2_grpc

from .. import events, jsonvalue, subscriptions, validation
from ..errors import HooklineError, InvalidArgument, shown
from ..execution import flowdef
from ..settings import Settings
from ..storage import deliveries, event_types, publishing
from ..storage.groupcommit import GroupCommit
from ..storage.records import Event, EventType
from ..validation import require
from . import convert
from .interceptor import principal
from .pages import PageBudget

WRITABLE = ("description", "data_schema", "example", "deprecated")
MAX_PUBLISH_BATCH = 100


def list_event_types(request: Any) -> events_pb2.ListEventTypesResponse:
    items, token = event_types.list_event_types(
        principal().space_id, request.page_size, request.page_token, request.prefix
    )
    return events_pb2.ListEventTypesResponse(event_types=[convert.event_type(t) for t in items], next_page_token=token)


def list_events(request: Any) -> events_pb2.ListEventsResponse:
    page = PageBudget(convert.event)
    _, token = deliveries.list_events(
        principal().space_id,
        request.page_size,
        request.page_token,
        event_type=request.event_type,
        job_id=request.job_id,
        flow_id=request.flow_id,
        after=validation.time_filter(request, "created_after"),
        before=validation.time_filter(request, "created_before"),
        fits=page.fits,
    )
    return events_pb2.ListEventsResponse(events=page.messages, next_page_token=token)


def get_event(request: Any) -> events_pb2.Event:
    require("id", request.id)
    return convert.event(deliveries.get_event(principal().space_id, request.id))


def _name(v: validation.Violations, field: str, name: str) -> None:
    problem = subscriptions.name_problem(name)
    if problem:
        v.add(field, problem)
    elif subscriptions.namespace(name).upper() in events.RESERVED_NAMESPACES:
        reserved = ", ".join(sorted(events.RESERVED_NAMESPACES))
        v.add(field, f"{shown(name)} is in a namespace reserved for hookline's own events ({reserved})")


def _type_fields(message: events_pb2.EventType, paths: Sequence[str], settings: Settings) -> dict[str, Any]:
    """The validated values of `paths` from an EventType message."""
    v = validation.Violations()
    limits = settings.limits
    fields: dict[str, Any] = {}
    for path in paths:
        field = f"event_type.{path}"
        if path == "description":
            validation.text(v, field, message.description, limits.max_description_length)
            fields[path] = message.description
        elif path == "deprecated":
            fields[path] = message.deprecated
        elif not message.HasField(path):  # type: ignore[arg-type]  # data_schema or example, cleared
            fields[path] = None
        else:
            document = jsonvalue.struct_to_python(getattr(message, path), field=field, max_depth=limits.max_json_depth)
            validation.json_size(field, document, limits)
            if path == "data_schema":
                v.items.extend(flowdef.schema_violations(document, field))
            fields[path] = document
    v.raise_if_any()
    return fields


def _check_example(fields: dict[str, Any]) -> None:
    """The example, if any, must match the schema, if any."""
    if fields.get("example") is None or fields.get("data_schema") is None:
        return
    problem = publishing.data_problem(fields["data_schema"], fields["example"], field="event_type/example")
    if problem is not None:
        raise problem


class EventServicer(events_pb2_grpc.EventServiceServicer):
    def __init__(self, settings: Settings):
        self._settings = settings
        # Concurrent PublishEvent(s) calls write their events together; an item is one call's events.
        self._publishes: GroupCommit[list[publishing.PublishRequest], list[Event | HooklineError]] = GroupCommit(
            _publish_calls
        )

    def CreateEventType(self, request, context):  # type: ignore[no-untyped-def]
        v = validation.Violations()
        _name(v, "event_type.name", request.event_type.name)
        v.raise_if_any()
        fields = _type_fields(request.event_type, WRITABLE, self._settings)
        _check_example(fields)
        created = event_types.create_event_type(
            principal().space_id,
            EventType(name=request.event_type.name, archived=False, built_in=False, create_time=None,
                      update_time=None, **fields),
        )  # fmt: skip
        return convert.event_type(created)

    def GetEventType(self, request, context):  # type: ignore[no-untyped-def]
        _required_name("name", request.name)
        return convert.event_type(event_types.get_event_type(principal().space_id, request.name))

    def ListEventTypes(self, request, context):  # type: ignore[no-untyped-def]
        return list_event_types(request)

    def UpdateEventType(self, request, context):  # type: ignore[no-untyped-def]
        _required_name("event_type.name", request.event_type.name)
        paths = validation.update_paths(request.update_mask.paths, request.event_type, WRITABLE)
        fields = _type_fields(request.event_type, paths, self._settings)
        updated = event_types.update_event_type(principal().space_id, request.event_type.name, fields, _check_example)
        return convert.event_type(updated)

    def DeleteEventType(self, request, context):  # type: ignore[no-untyped-def]
        _required_name("name", request.name)
        return convert.event_type(event_types.archive_event_type(principal().space_id, request.name))

    def PublishEvent(self, request, context):  # type: ignore[no-untyped-def]
        [result] = self._publishes.submit([self._publish_request(request)])
        if isinstance(result, HooklineError):
            raise result
        return convert.event(result)

    def PublishEvents(self, request, context):  # type: ignore[no-untyped-def]
        if len(request.requests) > MAX_PUBLISH_BATCH:
            raise InvalidArgument.field(
                "requests", f"has {len(request.requests)} events; the limit is {MAX_PUBLISH_BATCH} per call"
            )
        results: list[Event | HooklineError | None] = []
        valid: list[publishing.PublishRequest] = []
        for item in request.requests:
            try:
                valid.append(self._publish_request(item))
                results.append(None)  # filled in once published
            except HooklineError as error:
                results.append(error)
        published = iter(self._publishes.submit(valid) if valid else [])
        messages = []
        for result in results:
            outcome = next(published) if result is None else result
            if isinstance(outcome, HooklineError):
                messages.append(events_pb2.PublishEventResult(status=convert.publish_status(outcome)))
            else:
                messages.append(events_pb2.PublishEventResult(event=convert.event(outcome)))
        return events_pb2.PublishEventsResponse(results=messages)

    def ListEvents(self, request, context):  # type: ignore[no-untyped-def]
        return list_events(request)

    def GetEvent(self, request, context):  # type: ignore[no-untyped-def]
        return get_event(request)

    def _publish_request(self, request: Any) -> publishing.PublishRequest:
        """A PublishEventRequest checked against its type, outside the write
        transaction. In a PublishEvents call, fields are named within the one
        request (each has its own status)."""
        limits = self._settings.limits
        v = validation.Violations()
        _name(v, "event_type", request.event_type)
        validation.key(v, "correlation_id", request.correlation_id)
        validation.key(v, "idempotency_key", request.idempotency_key)
        v.raise_if_any()
        data: Any = {}
        if request.HasField("data") and request.data.WhichOneof("kind") is not None:
            data = jsonvalue.value_to_python(request.data, field="data", max_depth=limits.max_json_depth)
        if not isinstance(data, dict):
            raise InvalidArgument.field("data", "must be a JSON object (the event's data)")
        data_json = validation.json_size("data", data, limits)
        # Checked here, outside the write transaction; publishing checks again should the schema have changed.
        found = event_types.publishable(principal().space_id, [request.event_type])[request.event_type]
        if isinstance(found, HooklineError):
            raise found
        if found.data_schema is not None:
            problem = publishing.data_problem(json.loads(found.data_schema), data)
            if problem is not None:
                raise problem
        return publishing.PublishRequest(
            space_id=principal().space_id,
            event_type=request.event_type,
            data=data,
            data_json=data_json.decode(),
            correlation_id=request.correlation_id,
            idempotency_key=request.idempotency_key,
            idempotency_ttl_ms=int(self._settings.idempotency_ttl_s * 1000),
            schema_time=found.update_time,
        )


def _required_name(field: str, name: str) -> None:
    if not name:
        raise InvalidArgument.field(field, "is required (an event type name such as ORDER.PAID)")


def _publish_calls(calls: list[list[publishing.PublishRequest]]) -> list[list[Event | HooklineError]]:
    """The events of many calls in one transaction; each call gets its own results back."""
    results = iter(publishing.publish_events([r for call in calls for r in call]))
    return [[next(results) for _ in call] for call in calls]

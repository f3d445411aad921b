"""The event catalog and the bytes of each event's body (DESIGN §4).

A body is built once, when its event is created, and sent unchanged on every
attempt to every webhook."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import jsonvalue
from .states import JOB_ENDED, JobState
from .storage.records import Job

JOB_EVENT = {JobState.COMPLETED: "JOB.COMPLETED", JobState.ERROR: "JOB.ERROR", JobState.CANCELED: "JOB.CANCELED"}


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    data_schema: dict[str, Any]
    example: dict[str, Any]


def rfc3339(ms: int | None) -> str | None:
    """RFC 3339 UTC with milliseconds, e.g. 2026-01-02T03:04:05.678Z."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


_TIME = {"type": ["string", "null"], "format": "date-time"}
_JOB_DATA = {
    "type": "object",
    "required": ["jobId", "flow", "status", "inputData", "output", "createdAt", "endedAt"],
    "properties": {
        "jobId": {"type": "string"},
        "correlationId": {"type": "string"},
        "flow": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "alias": {"type": "string"},
                "version": {"type": "integer"},
            },
        },
        "status": {
            "type": "object",
            "properties": {
                "state": {"enum": [str(state) for state in JOB_ENDED]},
                "code": {"type": "string"},
                "message": {"type": "string"},
            },
        },
        "inputData": {},
        "output": {},
        "createdAt": _TIME,
        "claimedAt": _TIME,
        "endedAt": _TIME,
    },
}
_FLOW_DATA = {
    "type": "object",
    "required": ["flow"],
    "properties": {
        "flow": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "alias": {"type": "string"},
                "name": {"type": "string"},
                "version": {"type": "integer"},
            },
        }
    },
}
_WEBHOOK_REF: dict[str, Any] = {
    "type": "object",
    "properties": {"id": {"type": "string"}, "alias": {"type": "string"}},
}


def _job_example(state: str, code: str, message: str, output: Any) -> dict[str, Any]:
    return {
        "jobId": "job_01JZ5Q7RM2V9K3T8YB4N6C0XWD",
        "correlationId": "order-1042",
        "flow": {"id": "flow_01JZ5Q5Y8E2H7M4R1T9V3B6KZA", "alias": "invoice", "version": 3},
        "status": {"state": state, "code": code, "message": message},
        "inputData": {"items": [{"price": 5}, {"price": 7.5}]},
        "output": output,
        "createdAt": "2026-01-02T03:04:05.678Z",
        "claimedAt": "2026-01-02T03:04:05.700Z",
        "endedAt": "2026-01-02T03:04:05.912Z",
    }


_FLOW_EXAMPLE = {"flow": {"id": "flow_01JZ5Q5Y8E2H7M4R1T9V3B6KZA", "alias": "invoice", "name": "Invoice", "version": 3}}
_WEBHOOK_EXAMPLE = {"id": "wh_01JZ5Q4C1D6F8G2H5J7K9M3N0P", "alias": "billing"}

CATALOG: tuple[EventType, ...] = (
    EventType(
        "JOB.COMPLETED",
        "A job ended successfully; data carries its output.",
        _JOB_DATA,
        _job_example("COMPLETED", "JOB_SUCCESS", "", {"total": 12.5}),
    ),
    EventType(
        "JOB.ERROR",
        "A job ended in error (execution, validation, timeout or a dead runner).",
        _JOB_DATA,
        _job_example("ERROR", "JOB_EXECUTION_ERROR", "fail_if condition matched", None),
    ),
    EventType(
        "JOB.CANCELED",
        "A job was canceled by a user or by the system.",
        _JOB_DATA,
        _job_example("CANCELED", "JOB_USER_CANCELED", "canceled by a user", None),
    ),
    EventType("FLOW.CREATED", "A flow was created in the space.", _FLOW_DATA, _FLOW_EXAMPLE),
    EventType("FLOW.UPDATED", "A flow's name, description or definition changed.", _FLOW_DATA, _FLOW_EXAMPLE),
    EventType("FLOW.DELETED", "A flow was deleted.", _FLOW_DATA, _FLOW_EXAMPLE),
    EventType(
        "WEBHOOK.DISABLED",
        "Another webhook of the space was switched off by the service (reason 'gone' or 'failing').",
        {
            "type": "object",
            "properties": {
                "webhook": {
                    **_WEBHOOK_REF,
                    "properties": {**_WEBHOOK_REF["properties"], "reason": {"enum": ["gone", "failing"]}},
                }
            },
        },
        {"webhook": {**_WEBHOOK_EXAMPLE, "reason": "failing"}},
    ),
    EventType(
        "WEBHOOK.TEST",
        "A test message sent by SendTestEvent to one webhook.",
        {"type": "object", "properties": {"webhook": _WEBHOOK_REF, "message": {"type": "string"}}},
        {"webhook": _WEBHOOK_EXAMPLE, "message": "This is a test event from hookline."},
    ),
)
EVENT_TYPE_NAMES = frozenset(t.name for t in CATALOG)
# The namespaces (first segments) of the built-in types: a space's own types may
# not use them, in any case.
RESERVED_NAMESPACES = frozenset(name.split(".", 1)[0] for name in EVENT_TYPE_NAMES)


def _envelope(event_type: str, data: Any, metadata: dict[str, Any]) -> bytes:
    # "billing.invoice.sent" is entity "billing.invoice", action "sent".
    entity, action = event_type.rsplit(".", 1)
    return jsonvalue.dumps(
        {"eventType": event_type, "entityType": entity, "action": action, "data": data, "metadata": metadata}
    )


def _metadata(event_id: str, time_ms: int, space_id: str, **extra: Any) -> dict[str, Any]:
    return {"eventId": event_id, "timestamp": rfc3339(time_ms), "spaceId": space_id, **extra}


def job_event_body(job: Job, event_id: str, time_ms: int) -> bytes:
    data = {
        "jobId": job.id,
        "correlationId": job.correlation_id,
        "flow": {"id": job.flow_id, "alias": job.flow_alias, "version": job.flow_version},
        "status": {"state": job.state, "code": job.code, "message": job.message},
        "inputData": job.input,
        "output": job.output,
        "createdAt": rfc3339(job.create_time),
        "claimedAt": rfc3339(job.claim_time),
        "endedAt": rfc3339(job.end_time),
    }
    metadata = _metadata(event_id, time_ms, job.space_id, correlationId=job.correlation_id)
    return _envelope(JOB_EVENT[job.state], data, metadata)


def flow_event_body(event_type: str, flow: dict[str, Any], space_id: str, event_id: str, time_ms: int) -> bytes:
    data = {"flow": {k: flow[k] for k in ("id", "alias", "name", "version")}}
    return _envelope(event_type, data, _metadata(event_id, time_ms, space_id))


def test_event_body(webhook_id: str, alias: str, message: str, space_id: str, event_id: str, time_ms: int) -> bytes:
    data = {"webhook": {"id": webhook_id, "alias": alias}, "message": message}
    return _envelope("WEBHOOK.TEST", data, _metadata(event_id, time_ms, space_id))


def webhook_disabled_body(
    webhook_id: str, alias: str, reason: str, space_id: str, event_id: str, time_ms: int
) -> bytes:
    data = {"webhook": {"id": webhook_id, "alias": alias, "reason": reason}}
    return _envelope("WEBHOOK.DISABLED", data, _metadata(event_id, time_ms, space_id))


def published_event_body(
    event_type: str, data: Any, correlation_id: str, space_id: str, event_id: str, time_ms: int
) -> bytes:
    """The body of an event a service published (PublishEvent)."""
    return _envelope(event_type, data, _metadata(event_id, time_ms, space_id, correlationId=correlation_id))

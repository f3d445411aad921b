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

CATALOG: tuple[EventType, ...] = (
    EventType("JOB.COMPLETED", "A job ended successfully; data carries its output.", _JOB_DATA),
    EventType("JOB.ERROR", "A job ended in error (execution, validation, timeout or a dead runner).", _JOB_DATA),
    EventType("JOB.CANCELED", "A job was canceled by a user or by the system.", _JOB_DATA),
    EventType("FLOW.CREATED", "A flow was created in the space.", _FLOW_DATA),
    EventType("FLOW.UPDATED", "A flow's name, description or definition changed.", _FLOW_DATA),
    EventType("FLOW.DELETED", "A flow was deleted.", _FLOW_DATA),
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
    ),
    EventType(
        "WEBHOOK.TEST",
        "A test message sent by SendTestEvent to one webhook.",
        {"type": "object", "properties": {"webhook": _WEBHOOK_REF, "message": {"type": "string"}}},
    ),
)
EVENT_TYPE_NAMES = frozenset(t.name for t in CATALOG)


def _envelope(event_type: str, data: dict[str, Any], metadata: dict[str, Any]) -> bytes:
    entity, action = event_type.split(".", 1)
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

"""Plain records handed out by storage."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from ..states import JOB_ENDED, ChangeKind, DeliveryState, JobCode, JobState


@dataclass(frozen=True)
class Principal:
    """Who is calling: the space a key belongs to and the key's role."""

    space_id: str
    role: str
    key_id: str


@dataclass
class Webhook:
    id: str
    space_id: str
    alias: str
    url: str
    description: str
    enabled: bool
    event_types: list[str]
    headers: dict[str, str]
    rate_limit_per_s: int
    disabled_reason: str
    create_time: int
    update_time: int
    filter: str = ""

    @classmethod
    def from_row(cls, row: Any) -> Webhook:
        return cls(
            id=row.id,
            space_id=row.space_id,
            alias=row.alias,
            url=row.url,
            description=row.description,
            enabled=bool(row.enabled),
            event_types=json.loads(row.event_types),
            headers=json.loads(row.headers),
            rate_limit_per_s=row.rate_limit_per_s,
            disabled_reason=row.disabled_reason,
            create_time=row.create_time,
            update_time=row.update_time,
            filter=row.filter,
        )


@dataclass(frozen=True)
class WebhookHealth:
    """A webhook's state as it bears on what an attempt to it leads to
    (delivery/outcome.py), read when the attempt is recorded."""

    enabled: bool
    failing_since: int | None  # ms: its deliveries have failed since then with no success; None if not failing


@dataclass
class Flow:
    id: str
    space_id: str
    alias: str
    name: str
    description: str
    version: int
    definition: dict[str, Any]
    webhook_ids: list[str]
    create_time: int
    update_time: int


@dataclass
class Job:
    id: str
    space_id: str
    flow_id: str
    flow_alias: str
    flow_version: int
    state: JobState
    code: JobCode
    message: str
    input: Any
    output: Any
    correlation_id: str
    idempotency_key: str
    create_time: int
    claim_time: int | None
    end_time: int | None

    @property
    def finished(self) -> bool:
        return self.state in JOB_ENDED

    @classmethod
    def from_row(cls, row: Any) -> Job:
        return cls(
            id=row.id,
            space_id=row.space_id,
            flow_id=row.flow_id,
            flow_alias=row.flow_alias,
            flow_version=row.flow_version,
            state=JobState(row.state),
            code=JobCode(row.code),
            message=row.message,
            input=json.loads(row.input),
            output=None if row.output is None else json.loads(row.output),
            correlation_id=row.correlation_id,
            idempotency_key=row.idempotency_key or "",
            create_time=row.create_time,
            claim_time=row.claim_time,
            end_time=row.end_time,
        )


# How a run ended, as a runner hands it to storage to record:
# (job id, state, code, message, output JSON or None).
JobEnd = tuple[str, JobState, JobCode, str, str | None]


@dataclass
class ClaimedJob:
    """A job a runner has claimed, with the definition of the version it runs."""

    job: Job
    definition: dict[str, Any]


@dataclass
class Event:
    id: str
    space_id: str
    event_type: str
    job_id: str
    flow_id: str
    webhook_id: str
    body: bytes
    create_time: int

    @classmethod
    def from_row(cls, row: Any) -> Event:
        return cls(
            id=row.id,
            space_id=row.space_id,
            event_type=row.event_type,
            job_id=row.job_id,
            flow_id=row.flow_id,
            webhook_id=row.webhook_id,
            body=bytes(row.body),
            create_time=row.create_time,
        )


@dataclass
class Delivery:
    id: str
    space_id: str
    webhook_id: str
    event_id: str
    event_type: str
    job_id: str
    flow_id: str
    state: DeliveryState
    attempt_count: int
    next_attempt_time: int | None
    last_status_code: int
    last_error: str
    create_time: int
    update_time: int

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        return cls(
            id=row.id,
            space_id=row.space_id,
            webhook_id=row.webhook_id,
            event_id=row.event_id,
            event_type=row.event_type,
            job_id=row.job_id,
            flow_id=row.flow_id,
            state=DeliveryState(row.state),
            attempt_count=row.attempt_count,
            next_attempt_time=row.next_attempt_time,
            last_status_code=row.last_status_code,
            last_error=row.last_error,
            create_time=row.create_time,
            update_time=row.update_time,
        )

    def snapshot(self) -> str:
        return json.dumps(vars(self), separators=(",", ":"))  # every field is a plain value

    @classmethod
    def from_snapshot(cls, text: str) -> Delivery:
        return cls.from_fields(json.loads(text))

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> Delivery:
        """A delivery of a snapshot's fields (others, e.g. of older servers, are left out)."""
        names = {f.name for f in dataclasses.fields(cls)}
        delivery = cls(**{k: v for k, v in fields.items() if k in names})
        delivery.state = DeliveryState(delivery.state)
        return delivery


@dataclass
class Attempt:
    id: str
    delivery_id: str
    number: int
    start_time: int
    duration_ms: int
    status_code: int
    error: str
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: bytes = b""
    response_truncated: bool = False

    @classmethod
    def from_row(cls, row: Any) -> Attempt:
        return cls(
            id=row.id,
            delivery_id=row.delivery_id,
            number=row.number,
            start_time=row.start_time,
            duration_ms=row.duration_ms,
            status_code=row.status_code,
            error=row.error,
            response_headers=json.loads(row.response_headers),
            response_body=bytes(row.response_body),
            response_truncated=bool(row.response_truncated),
        )


@dataclass
class Change:
    """One change of a delivery, as the change log tells it. An entry of the
    log is one change, or two: an attempt's result and what it led to, written
    together (see deliveries.log_attempt_result)."""

    seq: int  # the position of its entry in the log
    kind: ChangeKind
    delivery: Delivery
    attempt: Attempt | None
    time: int
    # Where a stream is once it has sent this change: every entry up to the
    # first number, and as many changes as the second of the entry after it.
    # (seq, 0) for the last change of an entry; (seq - 1, 1) for an attempt's
    # result written with what it led to.
    position: tuple[int, int] = (0, 0)


@dataclass
class SendTask:
    """Everything the delivery worker needs for one attempt, read in one go."""

    delivery: Delivery
    url: str
    headers: dict[str, str]
    secrets: list[str]  # newest first
    body: bytes
    attempt_number: int
    lease: int  # the lease this claim set: results apply only while it still holds it
    rate_limit_per_s: int = 0


@dataclass(frozen=True)
class EventType:
    """An event type as the API shows it: a space's own, or a built-in one
    (read-only, no times)."""

    name: str
    description: str
    data_schema: dict[str, Any] | None
    example: dict[str, Any] | None
    deprecated: bool
    archived: bool
    built_in: bool
    create_time: int | None
    update_time: int | None

    @classmethod
    def from_row(cls, row: Any) -> EventType:
        return cls(
            name=row.name,
            description=row.description,
            data_schema=None if row.data_schema is None else json.loads(row.data_schema),
            example=None if row.example is None else json.loads(row.example),
            deprecated=bool(row.deprecated),
            archived=bool(row.archived),
            built_in=False,
            create_time=row.create_time,
            update_time=row.update_time,
        )


@dataclass
class WebhookStats:
    """A webhook's health: its last success, since when it has been failing, and
    its deliveries created since `window_start` counted by state."""

    webhook_id: str
    last_success_time: int | None
    failing_since: int | None
    window_start: int
    counts: dict[DeliveryState, int]

"""Records -> protobuf messages, and states <-> the API's protobuf enums.

Stored JSON is converted with jsonvalue.stored_to_value/struct, which repair
what protobuf cannot hold instead of raising: a row written by an older version
must never make a read, or every listing it is on, fail."""

from __future__ import annotations

from google.protobuf import timestamp_pb2

from hookline.v1 import events_pb2, flows_pb2, jobs_pb2, webhooks_pb2

from .. import jsonvalue
from ..errors import HooklineError
from ..states import ChangeKind, DeliveryState, JobCode, JobState
from ..storage import records

# Each state's protobuf enum value; the API's filters are read back through the
# inverse tables. A state missing here fails its unit test, not a request.
JOB_STATES: dict[JobState, jobs_pb2.JobState.ValueType] = {
    JobState.WAITING: jobs_pb2.JOB_STATE_WAITING,
    JobState.RUNNING: jobs_pb2.JOB_STATE_RUNNING,
    JobState.CANCELING: jobs_pb2.JOB_STATE_CANCELING,
    JobState.COMPLETED: jobs_pb2.JOB_STATE_COMPLETED,
    JobState.ERROR: jobs_pb2.JOB_STATE_ERROR,
    JobState.CANCELED: jobs_pb2.JOB_STATE_CANCELED,
}
JOB_CODES: dict[JobCode, jobs_pb2.JobStatusCode.ValueType] = {
    JobCode.JOB_WAITING: jobs_pb2.JOB_WAITING,
    JobCode.JOB_RUNNING: jobs_pb2.JOB_RUNNING,
    JobCode.JOB_SUCCESS: jobs_pb2.JOB_SUCCESS,
    JobCode.JOB_USER_CANCELED: jobs_pb2.JOB_USER_CANCELED,
    JobCode.JOB_SYSTEM_CANCELED: jobs_pb2.JOB_SYSTEM_CANCELED,
    JobCode.JOB_EXECUTION_ERROR: jobs_pb2.JOB_EXECUTION_ERROR,
    JobCode.JOB_VALIDATION_ERROR: jobs_pb2.JOB_VALIDATION_ERROR,
    JobCode.JOB_TIMEOUT: jobs_pb2.JOB_TIMEOUT,
    JobCode.ZOMBIE_PROCESS: jobs_pb2.ZOMBIE_PROCESS,
}
DELIVERY_STATES: dict[DeliveryState, webhooks_pb2.DeliveryState.ValueType] = {
    DeliveryState.PENDING: webhooks_pb2.DELIVERY_STATE_PENDING,
    DeliveryState.SENDING: webhooks_pb2.DELIVERY_STATE_SENDING,
    DeliveryState.SUCCEEDED: webhooks_pb2.DELIVERY_STATE_SUCCEEDED,
    DeliveryState.FAILED: webhooks_pb2.DELIVERY_STATE_FAILED,
    DeliveryState.CANCELED: webhooks_pb2.DELIVERY_STATE_CANCELED,
}
CHANGE_KINDS: dict[ChangeKind, webhooks_pb2.DeliveryEventKind.ValueType] = {
    ChangeKind.QUEUED: webhooks_pb2.DELIVERY_EVENT_KIND_QUEUED,
    ChangeKind.ATTEMPT_STARTED: webhooks_pb2.DELIVERY_EVENT_KIND_ATTEMPT_STARTED,
    ChangeKind.ATTEMPT_RESULT: webhooks_pb2.DELIVERY_EVENT_KIND_ATTEMPT_RESULT,
    ChangeKind.RETRY_SCHEDULED: webhooks_pb2.DELIVERY_EVENT_KIND_RETRY_SCHEDULED,
    ChangeKind.SUCCEEDED: webhooks_pb2.DELIVERY_EVENT_KIND_SUCCEEDED,
    ChangeKind.FAILED: webhooks_pb2.DELIVERY_EVENT_KIND_FAILED,
    ChangeKind.CANCELED: webhooks_pb2.DELIVERY_EVENT_KIND_CANCELED,
}
JOB_STATES_FROM_PROTO = {value: state for state, value in JOB_STATES.items()}
DELIVERY_STATES_FROM_PROTO = {value: state for state, value in DELIVERY_STATES.items()}


def timestamp(ms: int | None) -> timestamp_pb2.Timestamp | None:
    if ms is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromMilliseconds(ms)
    return ts


def webhook(w: records.Webhook) -> webhooks_pb2.Webhook:
    return webhooks_pb2.Webhook(
        id=w.id,
        alias=w.alias,
        url=w.url,
        description=w.description,
        enabled=w.enabled,
        event_types=w.event_types,
        headers=w.headers,
        rate_limit_per_s=w.rate_limit_per_s,
        disabled_reason=w.disabled_reason,
        create_time=timestamp(w.create_time),
        update_time=timestamp(w.update_time),
        filter=w.filter,
    )


def flow(f: records.Flow) -> flows_pb2.Flow:
    return flows_pb2.Flow(
        id=f.id,
        alias=f.alias,
        name=f.name,
        description=f.description,
        definition=jsonvalue.stored_to_struct(f.definition),
        version=f.version,
        webhook_ids=f.webhook_ids,
        create_time=timestamp(f.create_time),
        update_time=timestamp(f.update_time),
    )


def job(j: records.Job) -> jobs_pb2.Job:
    message = jobs_pb2.Job(
        id=j.id,
        flow_id=j.flow_id,
        flow_alias=j.flow_alias,
        flow_version=j.flow_version,
        state=JOB_STATES[j.state],
        code=JOB_CODES[j.code],
        message=j.message,
        input=jsonvalue.stored_to_value(j.input),
        correlation_id=j.correlation_id,
        create_time=timestamp(j.create_time),
        claim_time=timestamp(j.claim_time),
        end_time=timestamp(j.end_time),
        idempotency_key=j.idempotency_key,
    )
    if j.output is not None or j.state == JobState.COMPLETED:
        message.output.CopyFrom(jsonvalue.stored_to_value(j.output))
    return message


def event_type(t: records.EventType) -> events_pb2.EventType:
    return events_pb2.EventType(
        name=t.name,
        description=t.description,
        data_schema=None if t.data_schema is None else jsonvalue.stored_to_struct(t.data_schema),
        example=None if t.example is None else jsonvalue.stored_to_struct(t.example),
        deprecated=t.deprecated,
        archived=t.archived,
        built_in=t.built_in,
        create_time=timestamp(t.create_time),
        update_time=timestamp(t.update_time),
    )


def publish_status(error: HooklineError) -> events_pb2.PublishStatus:
    """What one refused event of a PublishEvents call gets: the status PublishEvent would have failed with."""
    return events_pb2.PublishStatus(
        code=error.code.value[0],
        message=error.message[:1000],
        field_violations=[
            events_pb2.FieldViolation(field=v.field, description=v.description) for v in error.violations
        ],
    )


def event(e: records.Event) -> events_pb2.Event:
    return events_pb2.Event(
        id=e.id,
        event_type=e.event_type,
        job_id=e.job_id,
        flow_id=e.flow_id,
        webhook_id=e.webhook_id,
        body=e.body,
        create_time=timestamp(e.create_time),
    )


def delivery(d: records.Delivery) -> webhooks_pb2.Delivery:
    return webhooks_pb2.Delivery(
        id=d.id,
        webhook_id=d.webhook_id,
        event_id=d.event_id,
        event_type=d.event_type,
        job_id=d.job_id,
        state=DELIVERY_STATES[d.state],
        attempt_count=d.attempt_count,
        next_attempt_time=timestamp(d.next_attempt_time),
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        flow_id=d.flow_id,
        create_time=timestamp(d.create_time),
        update_time=timestamp(d.update_time),
    )


def attempt(a: records.Attempt) -> webhooks_pb2.Attempt:
    return webhooks_pb2.Attempt(
        id=a.id,
        delivery_id=a.delivery_id,
        number=a.number,
        start_time=timestamp(a.start_time),
        duration_ms=a.duration_ms,
        status_code=a.status_code,
        error=a.error,
        response_headers=a.response_headers,
        response_body=a.response_body,
        response_truncated=a.response_truncated,
    )


def change(c: records.Change, cursor: str) -> webhooks_pb2.DeliveryEvent:
    return webhooks_pb2.DeliveryEvent(
        cursor=cursor,
        kind=CHANGE_KINDS[c.kind],
        delivery=delivery(c.delivery),
        attempt=attempt(c.attempt) if c.attempt else None,
        time=timestamp(c.time),
    )


def webhook_stats(s: records.WebhookStats) -> webhooks_pb2.WebhookStats:
    return webhooks_pb2.WebhookStats(
        webhook_id=s.webhook_id,
        last_success_time=timestamp(s.last_success_time),
        failing_since=timestamp(s.failing_since),
        window_start_time=timestamp(s.window_start),
        counts=[
            webhooks_pb2.WebhookStats.StateCount(state=DELIVERY_STATES[state], count=count)
            for state, count in s.counts.items()
        ],
    )

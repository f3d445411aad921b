"""Acceptance: the whole loop from a job to a signed webhook on a real HTTP
receiver on loopback, with the live delivery stream watching it.

A flow is created and linked to a webhook, a WatchDeliveries stream is opened,
a job is started, and what arrives at the receiver is checked against DESIGN
§4 (payload), §5 (request, signing, retries) and §6 (stream), together with
what GetJob, GetEvent, ListDeliveries and ListAttempts say about it.

Run with `pytest -s` to see how long each job's end took to reach the receiver.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import statistics
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2, json_format, struct_pb2
from standardwebhooks.webhooks import Webhook as SWWebhook

from hookline import signing
from hookline.client import (
    AddFlowWebhookRequest,
    CancelJobRequest,
    Client,
    CreateFlowRequest,
    CreateWebhookRequest,
    DeliveryEvent,
    DeliveryEventKind,
    DeliveryState,
    Flow,
    GetDeliveryRequest,
    GetEventRequest,
    GetJobRequest,
    GetWebhookRequest,
    Job,
    JobState,
    JobStatusCode,
    ListAttemptsRequest,
    ListDeliveriesRequest,
    RetryDeliveryRequest,
    SendTestEventRequest,
    StartJobRequest,
    UpdateWebhookRequest,
    WatchDeliveriesRequest,
    Webhook,
)

pytestmark = pytest.mark.acceptance

JOB_EVENTS = ["JOB.COMPLETED", "JOB.ERROR", "JOB.CANCELED"]
RFC3339_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
WAIT_S = 15.0
# How long "nothing arrives" is given after the message that did arrive.
QUIET_S = 1.5

# Seconds from Job.end_time to the arrival at the receiver, one per job loop.
LATENCIES: list[tuple[str, float]] = []


@pytest.fixture(scope="module", autouse=True)
def latency_report() -> Iterator[None]:
    yield
    if LATENCIES:
        figures = ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in LATENCIES)
        median = statistics.median(seconds for _, seconds in LATENCIES)
        print(f"\njob end -> receiver arrival: {figures}; median {median * 1000:.1f} ms")


# --- helpers ------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def value(data: Any) -> struct_pb2.Value:
    return json_format.ParseDict(data, struct_pb2.Value())


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(data)
    return message


def kind(message: DeliveryEvent) -> str:
    return DeliveryEventKind.Name(message.kind).removeprefix("DELIVERY_EVENT_KIND_")


def rfc3339_ms(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class Watch:
    """A WatchDeliveries stream read by a background thread."""

    def __init__(self, client: Client, request: WatchDeliveriesRequest):
        self._call = client.webhooks.WatchDeliveries(request)
        self._cond = threading.Condition()
        self._messages: list[DeliveryEvent] = []
        self._error: grpc.RpcError | None = None
        self._ended = False
        self._thread = threading.Thread(target=self._read, name="watch-deliveries", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self._call:
                with self._cond:
                    self._messages.append(message)
                    self._cond.notify_all()
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.CANCELLED:
                self._error = error
        except Exception as error:  # noqa: BLE001 (reported by wait())
            self._error = error  # type: ignore[assignment]
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    @property
    def messages(self) -> list[DeliveryEvent]:
        with self._cond:
            return list(self._messages)

    def wait(
        self, predicate: Callable[[list[DeliveryEvent]], bool], what: str, timeout: float = WAIT_S
    ) -> list[DeliveryEvent]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self._messages):
                if self._error is not None:
                    raise AssertionError(f"stream failed while waiting for {what}: {self._error!r}")
                if self._ended:
                    raise AssertionError(f"stream ended while waiting for {what}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [kind(m) for m in self._messages]
                    raise AssertionError(f"timed out after {timeout} s waiting for {what}; got {got}")
                self._cond.wait(remaining)
            return list(self._messages)

    def wait_for_kind(self, name: str, delivery_id: str = "", count: int = 1) -> list[DeliveryEvent]:
        def seen(messages: list[DeliveryEvent]) -> bool:
            hits = [m for m in messages if kind(m) == name and (not delivery_id or m.delivery.id == delivery_id)]
            return len(hits) >= count

        return self.wait(seen, f"{count} x {name}")

    def close(self) -> None:
        self._call.cancel()
        self._thread.join(5)

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_watch(client: Client, **fields: str) -> Watch:
    """A stream that has sent its first message, so it sees everything after."""
    watch = Watch(client, WatchDeliveriesRequest(**fields))
    watch.wait(lambda messages: len(messages) >= 1, "the first message")
    return watch


def changes_of(messages: list[DeliveryEvent]) -> list[DeliveryEvent]:
    """The messages after the opening SYNC that report a change (heartbeats dropped)."""
    return [m for m in messages[1:] if kind(m) != "SYNC"]


def make_webhook(
    client: Client, receiver: Any, name: str, *, enabled: bool | None = None, event_types: list[str] | None = None
) -> tuple[Webhook, str, str]:
    """A webhook on a fresh receiver path: (webhook, secret, path)."""
    path = f"/{unique(name)}"
    webhook = Webhook(
        alias=unique(name),
        url=receiver.url(path),
        event_types=event_types or JOB_EVENTS,
        description=f"acceptance {name}",
    )
    if enabled is not None:
        webhook.enabled = enabled
    response = client.webhooks.CreateWebhook(CreateWebhookRequest(webhook=webhook))
    assert response.webhook.id.startswith("wh_")
    assert response.secret.startswith("whsec_")
    return response.webhook, response.secret, path


def make_flow(
    client: Client, name: str, steps: list[dict[str, Any]], webhooks: tuple[Webhook, ...] | list[Webhook] = ()
) -> Flow:
    flow = client.flows.CreateFlow(
        CreateFlowRequest(
            flow=Flow(
                alias=unique(name),
                name=f"acceptance {name}",
                definition=struct({"steps": steps}),
            )
        )
    )
    for webhook in webhooks:
        flow = client.flows.AddFlowWebhook(AddFlowWebhookRequest(flow_id=flow.id, webhook_id=webhook.id))
    assert set(flow.webhook_ids) == {w.id for w in webhooks}
    return flow


def get_job(client: Client, job_id: str) -> Job:
    return client.jobs.GetJob(GetJobRequest(id=job_id))


def wait_for_job_state(client: Client, job_id: str, state: int) -> Job:
    return wait_until(
        lambda: (job := get_job(client, job_id)).state == state and job,
        f"job {job_id} to be {JobState.Name(state)}",
    )


def check_signatures(body: bytes, headers: dict[str, str], secret: str, attempt_number: int) -> None:
    """Both schemes of DESIGN §5, verified three independent ways."""
    # Standard Webhooks, with the reference library.
    assert SWWebhook(secret).verify(body, headers) == json.loads(body)
    # Standard Webhooks, with hookline's own helper.
    assert signing.verify(body, headers, secret) == json.loads(body)
    # DecisionRules: hex HMAC-SHA256 of the raw body keyed with the whole secret.
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["x-webhook-signature"] == expected
    assert headers["x-webhook-delivery-attempt"] == str(attempt_number - 1)
    assert headers["webhook-timestamp"] == headers["x-webhook-timestamp"]
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    # hookline's helper falls back to the DecisionRules header on its own.
    decisionrules_only = {k: v for k, v in headers.items() if not k.startswith("webhook-")}
    assert signing.verify(body, decisionrules_only, secret) == json.loads(body)
    # And a wrong secret is refused by both verifiers.
    wrong = signing.generate_secret()
    with pytest.raises(signing.VerificationError):
        signing.verify(body, headers, wrong)
    with pytest.raises(Exception, match="signature"):
        SWWebhook(wrong).verify(body, headers)


def check_request(body: bytes, headers: dict[str, str]) -> None:
    assert headers["content-type"].split(";")[0].strip() == "application/json"
    assert headers["user-agent"].startswith("hookline/")
    payload = json.loads(body)
    assert headers["webhook-id"] == payload["metadata"]["eventId"]


def check_compact(body: bytes) -> None:
    """Compact JSON, exactly what JSON.stringify(JSON.parse(body)) gives back."""
    body.decode("utf-8")
    assert body == json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert b".0," not in body and b".0}" not in body and b".0]" not in body


def check_job_payload(
    payload: dict[str, Any],
    *,
    event_type: str,
    job: Job,
    flow: Flow,
    input_data: Any,
    correlation_id: str,
    state: str,
    code: str,
    message: str,
    output: Any,
    space_id: str,
) -> None:
    """Every field of DESIGN §4 for a JOB.* event."""
    assert set(payload) == {"eventType", "entityType", "action", "data", "metadata"}
    assert payload["eventType"] == event_type
    assert payload["entityType"] == "JOB"
    assert payload["action"] == event_type.split(".", 1)[1]

    data = payload["data"]
    assert {
        "jobId",
        "correlationId",
        "flow",
        "status",
        "inputData",
        "output",
        "createdAt",
        "claimedAt",
        "endedAt",
    } <= set(data)
    assert data["jobId"] == job.id
    assert data["correlationId"] == correlation_id
    assert data["flow"] == {"id": flow.id, "alias": flow.alias, "version": flow.version}
    assert data["status"] == {"state": state, "code": code, "message": message}
    assert data["inputData"] == input_data
    assert data["output"] == output
    for name in ("createdAt", "claimedAt", "endedAt"):
        assert isinstance(data[name], str) and RFC3339_MS.match(data[name]), (name, data[name])
    # The same moments GetJob reports, in order.
    assert data["createdAt"] == rfc3339_ms(job.create_time.ToMilliseconds())
    assert data["claimedAt"] == rfc3339_ms(job.claim_time.ToMilliseconds())
    assert data["endedAt"] == rfc3339_ms(job.end_time.ToMilliseconds())
    assert data["createdAt"] <= data["claimedAt"] <= data["endedAt"]

    metadata = payload["metadata"]
    assert set(metadata) >= {"eventId", "timestamp", "spaceId", "correlationId"}
    assert metadata["eventId"].startswith("evt_")
    assert RFC3339_MS.match(metadata["timestamp"]), metadata["timestamp"]
    assert metadata["timestamp"] >= data["endedAt"]
    assert metadata["spaceId"] == space_id
    assert metadata["correlationId"] == correlation_id


def check_stream(
    messages: list[DeliveryEvent],
    *,
    delivery_id: str,
    event_id: str,
    event_type: str,
    job_id: str,
    webhook_id: str,
    expected: list[tuple[str, int | None]],
    secret: str,
) -> None:
    """SYNC first, then exactly `expected` (kind, attempt status) for the delivery, in order."""
    assert kind(messages[0]) == "SYNC"
    assert messages[0].cursor
    assert not messages[0].HasField("delivery")
    changes = changes_of(messages)
    assert [(kind(m), m.attempt.status_code if kind(m) == "ATTEMPT_RESULT" else None) for m in changes] == expected
    for m in changes:
        assert m.delivery.id == delivery_id
        assert m.delivery.webhook_id == webhook_id
        assert m.delivery.event_id == event_id
        assert m.delivery.event_type == event_type
        assert m.delivery.job_id == job_id
        assert m.cursor
    # Opaque cursors: each change has its own.
    cursors = [m.cursor for m in changes]
    assert len(set(cursors)) == len(cursors)
    # The delivery's state as each change left it.
    states = {
        "QUEUED": "PENDING",
        "ATTEMPT_STARTED": "SENDING",
        "RETRY_SCHEDULED": "PENDING",
        "SUCCEEDED": "SUCCEEDED",
        "FAILED": "FAILED",
    }
    results = 0
    for m in changes:
        if kind(m) in states:
            assert DeliveryState.Name(m.delivery.state) == "DELIVERY_STATE_" + states[kind(m)], kind(m)
        if kind(m) == "ATTEMPT_RESULT":
            results += 1
            assert m.attempt.number == results
            assert m.attempt.delivery_id == delivery_id
        if kind(m) == "RETRY_SCHEDULED":
            assert m.delivery.HasField("next_attempt_time")
    # No secret ever shows on a stream.
    for m in messages:
        assert secret not in str(m)
        assert secret.encode() not in m.SerializeToString()
        assert secret.removeprefix("whsec_").encode() not in m.SerializeToString()


def only_delivery(client: Client, webhook_id: str, job_id: str = "") -> Any:
    deliveries = list(
        client.webhooks.ListDeliveries(ListDeliveriesRequest(webhook_id=webhook_id, job_id=job_id)).deliveries
    )
    assert len(deliveries) == 1, deliveries
    return deliveries[0]


@pytest.fixture(scope="module")
def space_id(hookline_app: Any) -> str:
    from hookline.server.storage import spaces

    return spaces.space_id_by_name("default")


# --- the whole loop, one event type at a time -----------------------------------------

COMPLETED_INPUT = {"items": [1, 2, 3], "customer": {"name": "Žluťoučký kůň", "tier": "gold"}, "rate": 2.5}
ERROR_INPUT = {"amount": 250, "items": [7, 8]}
CANCELED_INPUT = {"items": [4, 5]}

LOOPS = {
    "JOB.COMPLETED": dict(
        steps=[{"transform": "{total: sum(items), n: length(items)}"}],
        input=COMPLETED_INPUT,
        state="COMPLETED",
        code="JOB_SUCCESS",
        message="",
        output={"total": 6, "n": 3},
        job_state=JobState.JOB_STATE_COMPLETED,
        job_code=JobStatusCode.JOB_SUCCESS,
    ),
    "JOB.ERROR": dict(
        steps=[{"fail_if": "amount > `100`", "message": "amount over the limit"}, {"transform": "{total: sum(items)}"}],
        input=ERROR_INPUT,
        state="ERROR",
        code="JOB_EXECUTION_ERROR",
        message="amount over the limit",
        output=None,
        job_state=JobState.JOB_STATE_ERROR,
        job_code=JobStatusCode.JOB_EXECUTION_ERROR,
    ),
    "JOB.CANCELED": dict(
        steps=[{"sleep_ms": 10000}, {"transform": "{total: sum(items)}"}],
        input=CANCELED_INPUT,
        state="CANCELED",
        code="JOB_USER_CANCELED",
        message=None,
        output=None,
        job_state=JobState.JOB_STATE_CANCELED,
        job_code=JobStatusCode.JOB_USER_CANCELED,
    ),
}


@pytest.mark.parametrize("event_type", JOB_EVENTS)
def test_whole_loop(client: Client, receiver: Any, space_id: str, event_type: str) -> None:
    spec = LOOPS[event_type]
    name = event_type.lower().replace(".", "-")
    webhook, secret, path = make_webhook(client, receiver, name)
    flow = make_flow(client, name, spec["steps"], [webhook])
    correlation_id = unique("order")

    with open_watch(client, webhook_id=webhook.id) as watch:
        started = client.jobs.StartJob(
            StartJobRequest(
                flow=flow.alias,
                input=value(spec["input"]),
                correlation_id=correlation_id,
            )
        )
        assert started.id.startswith("job_")
        if event_type == "JOB.CANCELED":
            wait_for_job_state(client, started.id, JobState.JOB_STATE_RUNNING)
            canceling = client.jobs.CancelJob(CancelJobRequest(id=started.id))
            assert canceling.state in (JobState.JOB_STATE_CANCELING, JobState.JOB_STATE_CANCELED)

        (arrival,) = receiver.wait_for(path, 1, timeout=WAIT_S)
        job = get_job(client, started.id)
        watch.wait_for_kind("SUCCEEDED")
        time.sleep(0.3)  # anything that should not come would come now
        messages = watch.messages

    body, headers = arrival.body, arrival.headers

    # The job as GetJob reports it.
    assert job.state == spec["job_state"], JobState.Name(job.state)
    assert job.code == spec["job_code"], JobStatusCode.Name(job.code)
    assert (job.flow_id, job.flow_alias, job.flow_version) == (flow.id, flow.alias, flow.version)
    assert job.correlation_id == correlation_id
    assert json_format.MessageToDict(job.input) == spec["input"]
    if spec["output"] is None:
        assert not job.HasField("output") or job.output.WhichOneof("kind") == "null_value"
    else:
        assert json_format.MessageToDict(job.output) == spec["output"]
    if spec["message"] is not None:
        assert job.message == spec["message"]
    assert job.HasField("create_time") and job.HasField("claim_time") and job.HasField("end_time")

    # The request and both signatures.
    check_request(body, headers)
    check_signatures(body, headers, secret, attempt_number=1)

    # The body: compact, fixed bytes, every field of §4.
    check_compact(body)
    payload = json.loads(body)
    check_job_payload(
        payload,
        event_type=event_type,
        job=job,
        flow=flow,
        input_data=spec["input"],
        correlation_id=correlation_id,
        state=spec["state"],
        code=spec["code"],
        message=job.message if spec["message"] is None else spec["message"],
        output=spec["output"],
        space_id=space_id,
    )
    if event_type == "JOB.COMPLETED":
        assert b'"output":{"total":6,"n":3}' in body
        assert b'"items":[1,2,3]' in body
        assert b'"rate":2.5' in body
        assert "Žluťoučký kůň".encode() in body  # raw UTF-8, not \u escapes
    else:
        assert b'"output":null' in body
    event_id = payload["metadata"]["eventId"]
    event = client.webhooks.GetEvent(GetEventRequest(id=event_id))
    assert event.body == body
    assert event.event_type == event_type
    assert event.job_id == job.id
    assert event.flow_id == flow.id

    # The delivery.
    delivery = only_delivery(client, webhook.id, job.id)
    assert delivery.event_id == event_id
    assert delivery.event_type == event_type
    assert delivery.state == DeliveryState.DELIVERY_STATE_SUCCEEDED
    assert delivery.attempt_count == 1
    assert delivery.last_status_code == 200

    # The stream, in order.
    check_stream(
        messages,
        delivery_id=delivery.id,
        event_id=event_id,
        event_type=event_type,
        job_id=job.id,
        webhook_id=webhook.id,
        secret=secret,
        expected=[("QUEUED", None), ("ATTEMPT_STARTED", None), ("ATTEMPT_RESULT", 200), ("SUCCEEDED", None)],
    )

    # Only ordering is asserted about time; the latency is reported.
    end = job.end_time.ToMilliseconds() / 1000
    assert end <= arrival.time + 0.001
    LATENCIES.append((event_type, arrival.time - end))
    print(f"\n{event_type}: job end -> receiver arrival {(arrival.time - end) * 1000:.1f} ms")


def test_resume_replays_exactly_the_later_changes_then_goes_live(client: Client, receiver: Any) -> None:
    webhook, secret, path = make_webhook(client, receiver, "resume", event_types=["JOB.COMPLETED", "WEBHOOK.TEST"])
    flow = make_flow(client, "resume", LOOPS["JOB.COMPLETED"]["steps"], [webhook])

    with open_watch(client, webhook_id=webhook.id) as watch:
        job = client.jobs.StartJob(StartJobRequest(flow=flow.id, input=value(COMPLETED_INPUT)))
        receiver.wait_for(path, 1, timeout=WAIT_S)
        watch.wait_for_kind("SUCCEEDED")
        original = changes_of(watch.messages)
    assert [kind(m) for m in original] == ["QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED"]
    assert all(m.delivery.job_id == job.id for m in original)
    queued = original[0]

    with Watch(client, WatchDeliveriesRequest(webhook_id=webhook.id, cursor=queued.cursor)) as resumed:
        # Replay, then a heartbeat: by then every retained change has been sent.
        messages = resumed.wait(
            lambda ms: len(ms) > 1 and kind(ms[-1]) == "SYNC" and len(changes_of(ms)) >= len(original) - 1,
            "the replay and a heartbeat",
        )
        assert kind(messages[0]) == "SYNC"
        replayed = changes_of(messages)
        assert [(m.cursor, kind(m), m.delivery.id) for m in replayed] == [
            (m.cursor, kind(m), m.delivery.id) for m in original[1:]
        ]
        assert [m.SerializeToString(deterministic=True) for m in replayed] == [
            m.SerializeToString(deterministic=True) for m in original[1:]
        ]

        # Live: a new delivery on the same webhook shows up on the resumed stream.
        sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook.id, message="live"))
        resumed.wait_for_kind("SUCCEEDED", delivery_id=sent.delivery.id)
        live = [m for m in changes_of(resumed.messages) if m.delivery.id == sent.delivery.id]
        assert [kind(m) for m in live] == ["QUEUED", "ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED"]
        cursors = [m.cursor for m in changes_of(resumed.messages)]
        assert len(set(cursors)) == len(cursors)
        assert queued.cursor not in cursors
    (test_arrival,) = receiver.wait_for(path, 2, timeout=WAIT_S)[1:]
    assert json.loads(test_arrival.body)["eventType"] == "WEBHOOK.TEST"
    check_signatures(test_arrival.body, test_arrival.headers, secret, attempt_number=1)


# --- retries ----------------------------------------------------------------------


def test_receiver_failing_twice_then_succeeding_gets_three_attempts(client: Client, receiver: Any) -> None:
    webhook, secret, path = make_webhook(client, receiver, "retry", event_types=["JOB.COMPLETED"])
    receiver.respond(path, [500, 500, 200])
    flow = make_flow(client, "retry", LOOPS["JOB.COMPLETED"]["steps"], [webhook])

    with open_watch(client, webhook_id=webhook.id) as watch:
        job = client.jobs.StartJob(
            StartJobRequest(flow=flow.id, input=value(COMPLETED_INPUT), correlation_id=unique("retry"))
        )
        arrivals = receiver.wait_for(path, 3, timeout=WAIT_S)
        watch.wait_for_kind("SUCCEEDED")
        time.sleep(QUIET_S)
        messages = watch.messages
    assert len(receiver.at(path)) == 3

    # The same event every time: same id, same bytes; each attempt signed anew.
    event_id = json.loads(arrivals[0].body)["metadata"]["eventId"]
    assert {a.headers["webhook-id"] for a in arrivals} == {event_id}
    assert {a.body for a in arrivals} == {arrivals[0].body}
    for number, arrival in enumerate(arrivals, start=1):
        check_request(arrival.body, arrival.headers)
        check_signatures(arrival.body, arrival.headers, secret, attempt_number=number)
    assert [a.headers["x-webhook-delivery-attempt"] for a in arrivals] == ["0", "1", "2"]
    assert arrivals[0].time <= arrivals[1].time <= arrivals[2].time

    delivery = only_delivery(client, webhook.id, job.id)
    assert delivery.state == DeliveryState.DELIVERY_STATE_SUCCEEDED
    assert delivery.attempt_count == 3
    assert delivery.last_status_code == 200
    attempts = list(client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=delivery.id)).attempts)
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 200)]
    assert all(a.delivery_id == delivery.id for a in attempts)
    assert attempts[0].error and attempts[1].error
    assert attempts[0].response_body == b'{"error":"scripted failure"}'
    assert attempts[2].response_body == b'{"ok":true}'
    assert (
        attempts[0].start_time.ToMilliseconds()
        <= attempts[1].start_time.ToMilliseconds()
        <= attempts[2].start_time.ToMilliseconds()
    )

    check_stream(
        messages,
        delivery_id=delivery.id,
        event_id=event_id,
        event_type="JOB.COMPLETED",
        job_id=job.id,
        webhook_id=webhook.id,
        secret=secret,
        expected=[
            ("QUEUED", None),
            ("ATTEMPT_STARTED", None),
            ("ATTEMPT_RESULT", 500),
            ("RETRY_SCHEDULED", None),
            ("ATTEMPT_STARTED", None),
            ("ATTEMPT_RESULT", 500),
            ("RETRY_SCHEDULED", None),
            ("ATTEMPT_STARTED", None),
            ("ATTEMPT_RESULT", 200),
            ("SUCCEEDED", None),
        ],
    )


def test_spent_schedule_fails_and_retry_delivery_adds_one_attempt(client: Client, receiver: Any) -> None:
    webhook, secret, path = make_webhook(client, receiver, "spent", event_types=["JOB.COMPLETED"])
    receiver.respond(path, [500])
    flow = make_flow(client, "spent", LOOPS["JOB.COMPLETED"]["steps"], [webhook])

    with open_watch(client, webhook_id=webhook.id) as watch:
        job = client.jobs.StartJob(StartJobRequest(flow=flow.id, input=value(COMPLETED_INPUT)))
        receiver.wait_for(path, 3, timeout=WAIT_S)
        watch.wait_for_kind("FAILED")
        time.sleep(QUIET_S)
        assert len(receiver.at(path)) == 3  # the schedule has three entries
        delivery = only_delivery(client, webhook.id, job.id)
        assert delivery.state == DeliveryState.DELIVERY_STATE_FAILED
        assert delivery.attempt_count == 3
        assert delivery.last_status_code == 500
        event_id = delivery.event_id
        check_stream(
            watch.messages,
            delivery_id=delivery.id,
            event_id=event_id,
            event_type="JOB.COMPLETED",
            job_id=job.id,
            webhook_id=webhook.id,
            secret=secret,
            expected=[
                ("QUEUED", None),
                ("ATTEMPT_STARTED", None),
                ("ATTEMPT_RESULT", 500),
                ("RETRY_SCHEDULED", None),
                ("ATTEMPT_STARTED", None),
                ("ATTEMPT_RESULT", 500),
                ("RETRY_SCHEDULED", None),
                ("ATTEMPT_STARTED", None),
                ("ATTEMPT_RESULT", 500),
                ("FAILED", None),
            ],
        )

        # One more attempt, now; it fails too, and nothing follows it.
        client.webhooks.RetryDelivery(RetryDeliveryRequest(id=delivery.id))
        fourth = receiver.wait_for(path, 4, timeout=WAIT_S)[3]
        watch.wait_for_kind("FAILED", count=2)
        time.sleep(QUIET_S)
        assert len(receiver.at(path)) == 4
        assert fourth.headers["webhook-id"] == event_id
        assert fourth.headers["x-webhook-delivery-attempt"] == "3"
        check_signatures(fourth.body, fourth.headers, secret, attempt_number=4)
        delivery = client.webhooks.GetDelivery(GetDeliveryRequest(id=delivery.id))
        assert delivery.state == DeliveryState.DELIVERY_STATE_FAILED
        assert delivery.attempt_count == 4

        # Once the receiver is back, one more RetryDelivery succeeds.
        receiver.respond(path, [200])
        client.webhooks.RetryDelivery(RetryDeliveryRequest(id=delivery.id))
        fifth = receiver.wait_for(path, 5, timeout=WAIT_S)[4]
        watch.wait_for_kind("SUCCEEDED")
        assert fifth.headers["webhook-id"] == event_id
        assert fifth.headers["x-webhook-delivery-attempt"] == "4"
        check_signatures(fifth.body, fifth.headers, secret, attempt_number=5)
        messages = watch.messages

    delivery = client.webhooks.GetDelivery(GetDeliveryRequest(id=delivery.id))
    assert delivery.state == DeliveryState.DELIVERY_STATE_SUCCEEDED
    assert delivery.attempt_count == 5
    attempts = list(client.webhooks.ListAttempts(ListAttemptsRequest(delivery_id=delivery.id)).attempts)
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 500), (3, 500), (4, 500), (5, 200)]
    # Each RetryDelivery: the delivery is queued again, then one attempt.
    tail = [kind(m) for m in changes_of(messages)][10:]
    assert len(tail) == 8, tail
    assert tail[0] in ("RETRY_SCHEDULED", "QUEUED") and tail[4] in ("RETRY_SCHEDULED", "QUEUED"), tail
    assert tail[1:4] == ["ATTEMPT_STARTED", "ATTEMPT_RESULT", "FAILED"]
    assert tail[5:8] == ["ATTEMPT_STARTED", "ATTEMPT_RESULT", "SUCCEEDED"]


# --- who receives nothing -------------------------------------------------------------


def test_disabled_and_unlinked_webhooks_receive_nothing(client: Client, receiver: Any) -> None:
    linked, linked_secret, linked_path = make_webhook(client, receiver, "linked")
    off_at_create, _, off_at_create_path = make_webhook(client, receiver, "off-at-create", enabled=False)
    switched_off, _, switched_off_path = make_webhook(client, receiver, "switched-off")
    unlinked, _, unlinked_path = make_webhook(client, receiver, "unlinked")

    assert off_at_create.enabled is False
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=off_at_create.id)).enabled is False
    updated = client.webhooks.UpdateWebhook(
        UpdateWebhookRequest(
            webhook=Webhook(id=switched_off.id, enabled=False),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        )
    )
    assert updated.enabled is False
    assert updated.url == switched_off.url  # the mask changed nothing else

    flow = make_flow(client, "fanout", LOOPS["JOB.COMPLETED"]["steps"], [linked, off_at_create, switched_off])
    # The unlinked webhook subscribes to the same events, but for another flow.
    make_flow(client, "elsewhere", LOOPS["JOB.COMPLETED"]["steps"], [unlinked])

    with open_watch(client) as space_watch:
        job = client.jobs.StartJob(StartJobRequest(flow=flow.id, input=value(COMPLETED_INPUT)))
        (arrival,) = receiver.wait_for(linked_path, 1, timeout=WAIT_S)
        space_watch.wait_for_kind("SUCCEEDED")
        time.sleep(QUIET_S)
        messages = space_watch.messages

    check_signatures(arrival.body, arrival.headers, linked_secret, attempt_number=1)
    assert json.loads(arrival.body)["data"]["jobId"] == job.id
    for path in (off_at_create_path, switched_off_path, unlinked_path):
        assert receiver.at(path) == [], path
    for webhook in (off_at_create, switched_off, unlinked):
        assert list(client.webhooks.ListDeliveries(ListDeliveriesRequest(webhook_id=webhook.id)).deliveries) == [], (
            webhook.alias
        )
    # The space-wide stream saw this job's delivery to the linked webhook only.
    job_changes = [m for m in changes_of(messages) if m.delivery.job_id == job.id]
    assert {m.delivery.webhook_id for m in job_changes} == {linked.id}
    assert only_delivery(client, linked.id, job.id).state == DeliveryState.DELIVERY_STATE_SUCCEEDED

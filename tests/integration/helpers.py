"""Small helpers shared by the integration tests."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from hookline.client import (
    Client,
    CreateFlowRequest,
    CreateWebhookRequest,
    CreateWebhookResponse,
    Delivery,
    DeliveryState,
    Flow,
    GetDeliveryRequest,
    GetJobRequest,
    Job,
    JobState,
    ListFlowsRequest,
    ListJobsRequest,
    ListWebhooksRequest,
    StartJobRequest,
    Webhook,
)

T = TypeVar("T")

TERMINAL_JOB_STATES = (JobState.JOB_STATE_COMPLETED, JobState.JOB_STATE_ERROR, JobState.JOB_STATE_CANCELED)


def unique(prefix: str = "t") -> str:
    """An alias no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


# --- JSON <-> protobuf --------------------------------------------------------------


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(data)
    return s


def value(data: Any) -> struct_pb2.Value:
    v = struct_pb2.Value()
    json_format.ParseDict(data, v)
    return v


def plain(message: struct_pb2.Value | struct_pb2.Struct) -> Any:
    """A Struct or Value as plain Python data."""
    return json_format.MessageToDict(message)


def nested(depth: int) -> Any:
    """JSON nested `depth` levels deep: a top-level object is depth 1."""
    doc: Any = "leaf"
    for _ in range(depth):
        doc = {"a": doc}
    return doc


def nested_list(depth: int) -> Any:
    """A list nested `depth` levels deep (cheaper for protobuf than objects)."""
    doc: Any = "leaf"
    for _ in range(depth):
        doc = [doc]
    return doc


# --- making things ------------------------------------------------------------------


def make_webhook(
    client: Client,
    url: str,
    *,
    alias: str | None = None,
    event_types: Iterable[str] = ("WEBHOOK.TEST",),
    secret: str = "",
    **fields: Any,
) -> CreateWebhookResponse:
    """Create a webhook (unique alias unless given); returns the response with its secret."""
    webhook = Webhook(alias=alias or unique("wh"), url=url, event_types=list(event_types), **fields)
    return client.webhooks.CreateWebhook(CreateWebhookRequest(webhook=webhook, secret=secret))


def make_flow(
    client: Client,
    steps: Iterable[dict[str, Any]] = (),
    *,
    alias: str | None = None,
    definition: dict[str, Any] | None = None,
    webhook_ids: Iterable[str] = (),
    **fields: Any,
) -> Flow:
    """Create a flow (unique alias unless given) running `steps`, or `definition` as given."""
    body = definition if definition is not None else {"steps": list(steps)}
    flow = Flow(alias=alias or unique("flow"), definition=struct(body), webhook_ids=list(webhook_ids), **fields)
    return client.flows.CreateFlow(CreateFlowRequest(flow=flow))


def start_job(client: Client, flow: str, input: Any = None, **fields: Any) -> Job:
    request = StartJobRequest(flow=flow, **fields)
    if input is not None:
        request.input.CopyFrom(value(input))
    return client.jobs.StartJob(request)


# --- waiting --------------------------------------------------------------------------


def wait_until(
    fetch: Callable[[], T], done: Callable[[T], bool], *, timeout: float = 10.0, what: str = "condition"
) -> T:
    """Call `fetch` until `done(result)`; the last result, or a failure after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s; last: {result}")
        time.sleep(0.05)


def wait_job(client: Client, job_id: str, *states: int, timeout: float = 10.0) -> Job:
    """The job once it is in one of `states` (default: any terminal state)."""
    wanted = states or TERMINAL_JOB_STATES
    return wait_until(
        lambda: client.jobs.GetJob(GetJobRequest(id=job_id)),
        lambda j: j.state in wanted,
        timeout=timeout,
        what=f"job {job_id} in {[JobState.Name(s) for s in wanted]}",
    )


def wait_delivery(client: Client, delivery_id: str, *states: int, timeout: float = 10.0) -> Delivery:
    """The delivery once it is in one of `states` (default SUCCEEDED or FAILED)."""
    wanted = states or (DeliveryState.DELIVERY_STATE_SUCCEEDED, DeliveryState.DELIVERY_STATE_FAILED)
    return wait_until(
        lambda: client.webhooks.GetDelivery(GetDeliveryRequest(id=delivery_id)),
        lambda d: d.state in wanted,
        timeout=timeout,
        what=f"delivery {delivery_id} in {[DeliveryState.Name(s) for s in wanted]}",
    )


# --- listing --------------------------------------------------------------------------


def list_all(method: Callable[..., Any], request: Any, field: str, *, page_size: int = 1000) -> list[Any]:
    """Every item of a List call, following next_page_token."""
    items: list[Any] = []
    request.page_size = page_size
    request.page_token = ""
    for _ in range(10_000):
        response = method(request)
        items.extend(getattr(response, field))
        if not response.next_page_token:
            return items
        request.page_token = response.next_page_token
    raise AssertionError("pagination does not end")


def pages(method: Callable[..., Any], request: Any, field: str, page_size: int) -> list[list[Any]]:
    """Every page of a List call with `page_size`, as lists of items."""
    result: list[list[Any]] = []
    request.page_size = page_size
    request.page_token = ""
    for _ in range(10_000):
        response = method(request)
        result.append(list(getattr(response, field)))
        if not response.next_page_token:
            return result
        request.page_token = response.next_page_token
    raise AssertionError("pagination does not end")


def webhook_ids(client: Client) -> list[str]:
    return [w.id for w in list_all(client.webhooks.ListWebhooks, ListWebhooksRequest(), "webhooks")]


def flow_ids(client: Client) -> list[str]:
    return [f.id for f in list_all(client.flows.ListFlows, ListFlowsRequest(), "flows")]


def job_ids(client: Client, **filters: Any) -> list[str]:
    return [j.id for j in list_all(client.jobs.ListJobs, ListJobsRequest(**filters), "jobs")]


# --- errors ---------------------------------------------------------------------------


def rpc_error(code: grpc.StatusCode, call: Callable[..., Any], *args: Any, **kwargs: Any) -> grpc.RpcError:
    """Make the call, which must fail with `code`; returns the error. For a stream,
    the error may come while reading it."""
    with pytest.raises(grpc.RpcError) as caught:
        result = call(*args, **kwargs)
        if hasattr(result, "__next__"):
            for _ in result:
                pass
    error = caught.value
    assert error.code() == code, f"expected {code.name}, got {error.code().name}: {error.details()}"
    assert error.details(), "the error carries no message"
    return error


def violations(error: grpc.RpcError) -> dict[str, str]:
    """The google.rpc.BadRequest field violations of an error, by field."""
    status = rpc_status.from_call(error)
    assert status is not None, f"no rich status on {error.code().name}: {error.details()}"
    found: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found.update({v.field: v.description for v in bad.field_violations})
    return found


def invalid_argument(call: Callable[..., Any], request: Any, field: str) -> tuple[grpc.RpcError, str]:
    """The call fails INVALID_ARGUMENT with a BadRequest violation on `field`;
    returns the error and that violation's description."""
    error = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, call, request)
    found = violations(error)
    assert field in found, f"no violation on {field!r}; got {found} ({error.details()})"
    assert found[field], f"violation on {field!r} has no description"
    return error, found[field]


def body_json(body: bytes) -> Any:
    return json.loads(body)


def concurrently(count: int, call: Callable[[], T]) -> tuple[list[T], list[grpc.RpcError]]:
    """Run `call` from `count` threads at once; its results and its gRPC errors."""
    results: list[T] = []
    errors: list[grpc.RpcError] = []
    lock = threading.Lock()
    start = threading.Barrier(count)

    def run() -> None:
        start.wait()
        try:
            result = call()
        except grpc.RpcError as error:
            with lock:
                errors.append(error)
        else:
            with lock:
                results.append(result)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors

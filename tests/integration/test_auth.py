"""Authentication and roles: every RPC needs a key of the right role, except
health checking and reflection."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from conftest import BACKEND
from google.protobuf import message_factory
from google.protobuf.wrappers_pb2 import StringValue
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hookline.client import (
    CancelJobsRequest,
    CreateFlowRequest,
    CreateWebhookRequest,
    Flow,
    GetFlowRequest,
    GetJobRequest,
    GetWebhookRequest,
    JobState,
    ListEventTypesRequest,
    ListFlowsRequest,
    ListJobsRequest,
    ListWebhooksRequest,
    StartJobRequest,
    WatchDeliveriesRequest,
    WatchJobRequest,
    Webhook,
)
from hookline.server.api import access
from hookline.server.api.interceptor import principal
from hookline.server.errors import Unauthenticated
from hookline.server.storage import revocations, spaces
from hookline.v1 import (
    events_pb2,
    flows_pb2,
    flows_pb2_grpc,
    jobs_pb2,
    jobs_pb2_grpc,
    webhooks_pb2,
    webhooks_pb2_grpc,
)

from .helpers import flow_ids, job_ids, make_flow, rpc_error, start_job, struct, unique, value, wait_job, webhook_ids

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED

HOOKLINE_SERVICES = [
    module.DESCRIPTOR.services_by_name[name]
    for module, name in (
        (webhooks_pb2, "WebhookService"),
        (flows_pb2, "FlowService"),
        (jobs_pb2, "JobService"),
        (events_pb2, "EventService"),
    )
]

# --- a service of the test alone, with the request-streaming kinds hookline has none of yet

ECHO = "/hookline.test.Echo/"
WIRE = (StringValue.FromString, StringValue.SerializeToString)


class Echo:
    """Records the callers (principals) its methods ran for."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self._lock = threading.Lock()

    def _record(self) -> None:
        with self._lock:
            self.ran.append(principal().role)

    def collect(self, requests: Iterator[StringValue], context: grpc.ServicerContext) -> StringValue:
        self._record()
        return StringValue(value="".join(r.value for r in requests))

    def chat(self, requests: Iterator[StringValue], context: grpc.ServicerContext) -> Iterator[StringValue]:
        self._record()
        yield from requests

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            "hookline.test.Echo",
            {
                "Collect": grpc.stream_unary_rpc_method_handler(self.collect, *WIRE),
                "Chat": grpc.stream_stream_rpc_method_handler(self.chat, *WIRE),
            },
        )


@pytest.fixture(scope="module")
def echo() -> Echo:
    return Echo()


@pytest.fixture(scope="module")
def grpc_add_to_server(echo: Echo) -> Callable:
    def add(app: Any, server: grpc.Server) -> None:
        app.add_to_server(server)
        server.add_generic_rpc_handlers((echo.handler(),))

    return add


def echo_calls(channel: grpc.Channel, *texts: str) -> list[Callable[..., Any]]:
    """A call of each request-streaming kind, sending `texts` (a and b by default)."""
    wire = {"request_serializer": WIRE[1], "response_deserializer": WIRE[0]}
    collect = channel.stream_unary(ECHO + "Collect", **wire)
    chat = channel.stream_stream(ECHO + "Chat", **wire)
    requests = [StringValue(value=t) for t in texts or ("a", "b")]
    return [
        lambda **kw: collect(iter(requests), timeout=5, **kw).value,
        lambda **kw: [r.value for r in chat(iter(requests), timeout=5, **kw)],
    ]


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


def test_request_streaming_calls_without_a_key_are_unauthenticated(grpc_channel, echo):
    for call in echo_calls(grpc_channel):
        assert "key" in rpc_error(UNAUTHENTICATED, call).details()
    assert echo.ran == []


def test_a_method_missing_from_the_roles_table_is_refused_for_every_key(grpc_channel, hookline_app, echo):
    solver = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "solver").token
    for token in (hookline_app.admin_key, solver):
        for call in echo_calls(grpc_channel):
            error = rpc_error(PERMISSION_DENIED, call, metadata=bearer(token))
            assert "no key may call /hookline.test.Echo/" in error.details()
    assert echo.ran == []


def test_a_request_streaming_method_in_the_table_runs_for_its_roles(grpc_channel, hookline_app, echo, monkeypatch):
    monkeypatch.setitem(access.METHOD_ACCESS, ECHO + "Collect", access.MANAGEMENT)
    monkeypatch.setitem(access.METHOD_ACCESS, ECHO + "Chat", access.MANAGEMENT)
    solver = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "solver").token
    collect, chat = echo_calls(grpc_channel)
    assert collect(metadata=bearer(hookline_app.admin_key)) == "ab"
    assert chat(metadata=bearer(hookline_app.admin_key)) == ["a", "b"]
    assert echo.ran == ["management", "management"]
    for call in (collect, chat):
        assert "needs a management key" in rpc_error(PERMISSION_DENIED, call, metadata=bearer(solver)).details()
    # Each streamed request is checked as a unary one is.
    for call in echo_calls(grpc_channel, "fine", "nul\0"):
        error = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, call, metadata=bearer(hookline_app.admin_key))
        assert "NUL" in error.details()


def test_the_roles_table_lists_exactly_the_methods_served():
    from grpc_health.v1 import health_pb2

    served = [*HOOKLINE_SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"]]
    served.append(reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"])
    methods = {f"/{service.full_name}/{method.name}" for service in served for method in service.methods}
    assert set(access.METHOD_ACCESS) == methods
    open_methods = {m for m, a in access.METHOD_ACCESS.items() if a is access.OPEN}
    assert all(m.startswith(("/grpc.health.v1.", "/grpc.reflection.")) for m in open_methods)


def test_a_solver_key_is_denied_every_method_outside_job_service(grpc_channel, hookline_app):
    solver = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "solver").token
    for service in HOOKLINE_SERVICES:
        if service.name == "JobService":
            continue  # the solver key's own service: test_a_solver_key_runs_jobs
        for method in service.methods:
            request_type = message_factory.GetMessageClass(method.input_type)
            response_type = message_factory.GetMessageClass(method.output_type)
            kind = channel_kind(grpc_channel, method.client_streaming, method.server_streaming)
            call = kind(
                f"/{service.full_name}/{method.name}",
                request_serializer=request_type.SerializeToString,
                response_deserializer=response_type.FromString,
            )
            request: Any = request_type()
            if method.client_streaming:
                request = iter([request])
            error = rpc_error(PERMISSION_DENIED, call, request, metadata=bearer(solver), timeout=5)
            roles = access.METHOD_ACCESS[f"/{service.full_name}/{method.name}"].value
            assert f"needs a {' or '.join(sorted(roles))} key" in error.details(), method.full_name


def channel_kind(channel: grpc.Channel, client_streaming: bool, server_streaming: bool) -> Callable[..., Any]:
    kinds = {
        (False, False): channel.unary_unary,
        (False, True): channel.unary_stream,
        (True, False): channel.stream_unary,
        (True, True): channel.stream_stream,
    }
    return kinds[client_streaming, server_streaming]


def calls(channel: grpc.Channel):  # type: ignore[no-untyped-def]
    """One call of each service (unary and streaming), on a channel without the client's key."""
    webhooks = webhooks_pb2_grpc.WebhookServiceStub(channel)
    flows = flows_pb2_grpc.FlowServiceStub(channel)
    jobs = jobs_pb2_grpc.JobServiceStub(channel)
    return [
        (webhooks.ListWebhooks, ListWebhooksRequest()),
        (webhooks.ListEventTypes, ListEventTypesRequest()),
        (webhooks.WatchDeliveries, WatchDeliveriesRequest()),
        (flows.ListFlows, ListFlowsRequest()),
        (jobs.ListJobs, ListJobsRequest()),
        (jobs.WatchJob, WatchJobRequest(id="job_00000000000000000000000000")),
    ]


def test_a_call_without_a_key_is_unauthenticated(grpc_channel):
    for method, request in calls(grpc_channel):
        error = rpc_error(UNAUTHENTICATED, method, request, timeout=5)
        assert "key" in error.details()


@pytest.mark.parametrize(
    "header",
    [
        "Bearer hl_000000000000_notarealsecret",  # unknown key id
        "Bearer garbage",  # not hl_<id>_<secret>
        "Bearer ",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "hl_000000000000_notarealsecret",  # no scheme
    ],
)
def test_a_bad_key_is_unauthenticated(grpc_channel, header):
    for method, request in calls(grpc_channel):
        rpc_error(UNAUTHENTICATED, method, request, metadata=[("authorization", header)], timeout=5)


def test_a_wrong_secret_for_a_real_key_id_is_unauthenticated(hookline_app, connect):
    key_id = hookline_app.admin_key.split("_")[1]
    impostor = connect(f"hl_{key_id}_{'x' * 43}")
    rpc_error(UNAUTHENTICATED, impostor.webhooks.ListWebhooks, ListWebhooksRequest())


def test_a_revoked_key_is_unauthenticated(client, hookline_app, connect):
    key = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "management")
    holder = connect(key.token)
    holder.webhooks.ListWebhooks(ListWebhooksRequest())
    spaces.revoke_key(key.key_id)
    error = rpc_error(UNAUTHENTICATED, holder.webhooks.ListWebhooks, ListWebhooksRequest())
    assert "revoked" in error.details() or "unknown" in error.details()
    client.webhooks.ListWebhooks(ListWebhooksRequest())  # other keys still work


def test_a_key_read_as_it_is_revoked_is_not_remembered(hookline_app):
    # A call that read the key just before its revocation committed must not
    # leave it remembered: the next call reads it again and is refused.
    key = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "solver")
    secret_sha256 = spaces._hash(key.token.split("_", 2)[2])
    _, state = spaces.known_keys.get(key.key_id, secret_sha256)
    principal = spaces.authenticate(key.token)  # read and remembered
    spaces.revoke_key(key.key_id)
    spaces.known_keys.remember(key.key_id, secret_sha256, principal, state)  # the late reader
    assert spaces.known_keys.get(key.key_id, secret_sha256)[0] is None
    with pytest.raises(Unauthenticated):
        spaces.authenticate(key.token)


@pytest.mark.skipif(BACKEND != "sqlite", reason="the revocation counter is the embedded database's")
def test_a_revocation_counted_by_another_process_forgets_remembered_keys(hookline_app):
    key = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), "solver")
    secret_sha256 = spaces._hash(key.token.split("_", 2)[2])
    spaces.authenticate(key.token)
    assert spaces.known_keys.get(key.key_id, secret_sha256)[0] is not None
    # Another process maps the same file; its count is seen without a query.
    counter = revocations.counter()
    assert counter is not None
    revocations.RevocationCounter(counter.path).bump()
    assert spaces.known_keys.get(key.key_id, secret_sha256)[0] is None


def test_an_unauthenticated_call_changes_nothing(client, grpc_channel):
    before_webhooks, before_flows = webhook_ids(client), flow_ids(client)
    webhooks = webhooks_pb2_grpc.WebhookServiceStub(grpc_channel)
    flows = flows_pb2_grpc.FlowServiceStub(grpc_channel)
    rpc_error(
        UNAUTHENTICATED,
        webhooks.CreateWebhook,
        CreateWebhookRequest(
            webhook=Webhook(alias=unique("anon"), url="https://example.com/", event_types=["WEBHOOK.TEST"])
        ),
    )
    rpc_error(UNAUTHENTICATED, flows.CreateFlow, CreateFlowRequest(flow=Flow(alias=unique("anon"))))
    assert webhook_ids(client) == before_webhooks
    assert flow_ids(client) == before_flows


def test_a_solver_key_runs_jobs(client, solver_client):
    flow = make_flow(client, [{"transform": "{seen: x}"}])
    job = start_job(solver_client, flow.alias, {"x": 7})
    assert solver_client.jobs.GetJob(GetJobRequest(id=job.id)).id == job.id
    assert job.id in job_ids(solver_client, flow_id=flow.id)
    done = wait_job(solver_client, job.id)
    assert done.state == JobState.JOB_STATE_COMPLETED
    assert solver_client.jobs.CancelJobs(CancelJobsRequest(flow_id=flow.id)).canceled_count == 0
    # The job belongs to the space: the management key sees it too.
    assert client.jobs.GetJob(GetJobRequest(id=job.id)) == done


def test_a_solver_key_cannot_manage_webhooks_or_flows(client, solver_client):
    flow = make_flow(client, [])
    before_webhooks, before_flows = webhook_ids(client), flow_ids(client)
    denied = [
        (solver_client.webhooks.ListWebhooks, ListWebhooksRequest()),
        (solver_client.webhooks.GetWebhook, GetWebhookRequest(id="anything")),
        (
            solver_client.webhooks.CreateWebhook,
            CreateWebhookRequest(
                webhook=Webhook(alias=unique("solver"), url="https://example.com/", event_types=["WEBHOOK.TEST"])
            ),
        ),
        (solver_client.webhooks.ListEventTypes, ListEventTypesRequest()),
        (solver_client.webhooks.WatchDeliveries, WatchDeliveriesRequest()),
        (solver_client.flows.ListFlows, ListFlowsRequest()),
        (solver_client.flows.GetFlow, GetFlowRequest(id=flow.id)),
        (
            solver_client.flows.CreateFlow,
            CreateFlowRequest(flow=Flow(alias=unique("solver"), definition=struct({"steps": []}))),
        ),
    ]
    for method, request in denied:
        error = rpc_error(PERMISSION_DENIED, method, request, timeout=5)
        assert "management" in error.details()
    assert webhook_ids(client) == before_webhooks
    assert flow_ids(client) == before_flows


def test_a_solver_key_of_another_space_cannot_run_my_flows(client, other_space):
    flow = make_flow(client, [])
    rpc_error(
        grpc.StatusCode.NOT_FOUND, other_space.solver.jobs.StartJob, StartJobRequest(flow=flow.id, input=value({}))
    )
    assert job_ids(client, flow_id=flow.id) == []


def test_health_check_needs_no_key(grpc_channel):
    health = health_pb2_grpc.HealthStub(grpc_channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == health_pb2.HealthCheckResponse.SERVING
    for service in ("hookline.v1.WebhookService", "hookline.v1.FlowService", "hookline.v1.JobService"):
        response = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_needs_no_key(grpc_channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(grpc_channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5)
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"hookline.v1.WebhookService", "hookline.v1.FlowService", "hookline.v1.JobService"} <= names

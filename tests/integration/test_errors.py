"""Bad inputs: each is rejected with the right status code, a message a person
can act on, BadRequest field violations for INVALID_ARGUMENT, and no change."""

from __future__ import annotations

import base64

import grpc
import pytest
from google.protobuf import duration_pb2, field_mask_pb2, struct_pb2
from google.protobuf.message import DecodeError

from hookline.client import (
    CreateFlowRequest,
    CreateWebhookRequest,
    DeliveryEvent,
    Flow,
    GetEventRequest,
    GetFlowRequest,
    GetJobRequest,
    GetWebhookRequest,
    Job,
    ListAttemptsRequest,
    ListDeliveriesRequest,
    ListEventsRequest,
    ListFlowsRequest,
    ListFlowWebhooksRequest,
    ListJobsRequest,
    ListWebhooksRequest,
    RotateWebhookSecretRequest,
    SendTestEventRequest,
    StartJobRequest,
    UpdateFlowRequest,
    UpdateWebhookRequest,
    WatchDeliveriesRequest,
    Webhook,
)

from .helpers import (
    flow_ids,
    invalid_argument,
    job_ids,
    make_flow,
    make_webhook,
    nested,
    nested_list,
    plain,
    rpc_error,
    start_job,
    struct,
    unique,
    value,
    violations,
    wait_delivery,
    webhook_ids,
)


def create_webhook_request(**fields):  # type: ignore[no-untyped-def]
    webhook = dict(alias=unique("bad"), url="https://example.com/hook", event_types=["WEBHOOK.TEST"])
    webhook.update(fields)
    return CreateWebhookRequest(webhook=Webhook(**webhook))


def assert_webhook_not_created(client, request, before):  # type: ignore[no-untyped-def]
    assert webhook_ids(client) == before
    if request.webhook.alias:
        rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.GetWebhook, GetWebhookRequest(id=request.webhook.alias))


# --- CreateWebhook ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("not a url", "url"),
        ("example.com/hook", "http"),
        ("ftp://example.com/hook", "http"),
        ("file:///etc/passwd", "http"),
        ("http://", "host"),
        ("http://example.com:99999/", "url"),
        ("", "required"),
        ("https://hooks@example.com/", "user info"),
        ("https://:@example.com/", "user info"),
        ("https://example.com\\@evil.example/", "user info"),  # browsers read example.com as the host
        ("https://example.com/hook#part", "fragment"),
        ("https://example.com:0/hook", "port 0"),
        ("https://example..com/hook", "host name"),
        ("https://exa%6dple.com/hook", "host name"),
        ("https://" + "a" * 64 + ".example.com/", "host name"),
        ("https://xn--zz.example/", "a-label"),  # not valid IDNA: the sender cannot encode it
        ("https://exa\u200bmple.com/", "idna"),
        ("https://example.com/\x7f", "control"),
        ("https://example.com/\t", "white space"),
    ],
)
def test_create_webhook_with_a_bad_url(client, url, words):
    before = webhook_ids(client)
    request = create_webhook_request(url=url)
    error, description = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.url")
    assert words in description.lower()
    assert "webhook.url" in error.details()
    assert_webhook_not_created(client, request, before)


@pytest.mark.parametrize("url", ["https://hooks:s3cr3t-pw@example.com/in", "https://user:s3cr3t-pw@example.com:99999/"])
def test_a_url_with_a_password_is_refused_without_showing_it(client, receiver, url):
    before = webhook_ids(client)
    request = create_webhook_request(url=url)
    error, description = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.url")
    assert "s3cr3t-pw" not in error.details() and "s3cr3t-pw" not in description
    assert_webhook_not_created(client, request, before)
    if "user info" in description:
        assert "header" in description  # where the credentials go instead

    original = make_webhook(client, receiver.url("/userinfo"), description="as created").webhook
    update = UpdateWebhookRequest(
        webhook=Webhook(id=original.id, url=url), update_mask=field_mask_pb2.FieldMask(paths=["url"])
    )
    error, description = invalid_argument(client.webhooks.UpdateWebhook, update, "webhook.url")
    assert "s3cr3t-pw" not in error.details() and "s3cr3t-pw" not in description
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=original.id)) == original


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook?x=1",
        "https://bücher.example/hook",
        "https://xn--bcher-kva.example/hook",
        "https://hooks_internal.example.com./",
        "https://example.com:8443/",
        "https://[2606:4700::1111]/hook",
    ],
)
def test_create_webhook_with_an_unusual_but_good_url(client, url):
    created = client.webhooks.CreateWebhook(create_webhook_request(url=url)).webhook
    assert created.url == url


def test_create_webhook_with_a_too_long_url_names_the_limit(client):
    before = webhook_ids(client)
    request = create_webhook_request(url="https://example.com/" + "a" * 2100)
    _, description = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.url")
    assert "2048" in description
    assert_webhook_not_created(client, request, before)


def test_create_webhook_with_a_literal_private_address(client):
    before = webhook_ids(client)
    request = create_webhook_request(url="http://169.254.169.254/latest/meta-data")
    invalid_argument(client.webhooks.CreateWebhook, request, "webhook.url")
    assert_webhook_not_created(client, request, before)


ID_SHAPED = "wh_01m8dmjszby2r7fkeaqzjmkcdh"


@pytest.mark.parametrize("alias", ["", "9lives", "has space", "a" * 65, "a/b", ID_SHAPED, "ünï"])
def test_create_webhook_with_a_bad_alias(client, alias):
    before = webhook_ids(client)
    request = create_webhook_request(alias=alias)
    error, _ = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.alias")
    assert "alias" in error.details()
    assert webhook_ids(client) == before


def test_create_webhook_with_a_duplicate_alias_is_already_exists(client, receiver):
    original = make_webhook(client, receiver.url("/dup"), description="the first").webhook
    before = webhook_ids(client)
    request = create_webhook_request(alias=original.alias, url="https://example.com/other", description="the second")
    error = rpc_error(grpc.StatusCode.ALREADY_EXISTS, client.webhooks.CreateWebhook, request)
    assert original.alias in error.details()
    assert webhook_ids(client) == before
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=original.alias)) == original


def test_create_webhook_with_an_unknown_event_type(client):
    before = webhook_ids(client)
    request = create_webhook_request(event_types=["JOB.COMPLETED", "JOB.EXPLODED"])
    error, description = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.event_types[1]")
    assert "JOB.EXPLODED" in description
    assert "JOB.EXPLODED" in error.details()
    assert_webhook_not_created(client, request, before)


def test_create_webhook_with_no_event_types(client):
    before = webhook_ids(client)
    request = create_webhook_request(event_types=[])
    _, description = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.event_types")
    assert "JOB.COMPLETED" in description  # it names the choices
    assert_webhook_not_created(client, request, before)


def test_create_webhook_with_too_many_event_types_names_the_limit(client):
    before = webhook_ids(client)
    request = create_webhook_request(event_types=["WEBHOOK.TEST"] * 65)
    _, description = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.event_types")
    assert "64" in description
    assert_webhook_not_created(client, request, before)


def test_create_webhook_with_a_too_long_description_names_the_limit(client):
    before = webhook_ids(client)
    request = create_webhook_request(description="x" * 1001)
    _, description = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.description")
    assert "1000" in description
    assert_webhook_not_created(client, request, before)


@pytest.mark.parametrize("rate", [100_001, 2**31, 2**32 - 1])
def test_create_webhook_with_a_too_high_rate_limit_names_the_limit(client, rate):
    before = webhook_ids(client)
    request = create_webhook_request(rate_limit_per_s=rate)
    _, description = invalid_argument(client.webhooks.CreateWebhook, request, "webhook.rate_limit_per_s")
    assert "100000" in description
    assert_webhook_not_created(client, request, before)


@pytest.mark.parametrize("name", ["webhook-signature", "Content-Type", "User-Agent", "X-Webhook-Signature"])
def test_create_webhook_may_not_replace_hookline_headers(client, name):
    before = webhook_ids(client)
    request = create_webhook_request(headers={name: "forged"})
    error = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, client.webhooks.CreateWebhook, request)
    assert "cannot be replaced" in error.details()
    assert_webhook_not_created(client, request, before)


def test_create_webhook_reports_every_bad_field_at_once(client):
    before = webhook_ids(client)
    request = create_webhook_request(alias="", url="ftp://x", event_types=[])
    error = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, client.webhooks.CreateWebhook, request)
    assert {"webhook.alias", "webhook.url", "webhook.event_types"} <= set(violations(error))
    assert webhook_ids(client) == before


# --- UpdateWebhook ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "paths", "field"),
    [
        ({"url": "ftp://example.com/"}, ["url"], "webhook.url"),
        ({"url": "nope"}, [], "webhook.url"),
        ({"url": "http://10.1.2.3/hook"}, ["url"], "webhook.url"),
        ({"alias": ""}, ["alias"], "webhook.alias"),
        ({"event_types": []}, ["event_types"], "webhook.event_types"),
        ({"event_types": ["NOPE"]}, [], "webhook.event_types[0]"),
        ({"description": "x" * 1001}, ["description"], "webhook.description"),
        ({"rate_limit_per_s": 2**32 - 1}, ["rate_limit_per_s"], "webhook.rate_limit_per_s"),
    ],
)
def test_update_webhook_with_bad_values_changes_nothing(client, receiver, fields, paths, field):
    original = make_webhook(client, receiver.url("/upd"), description="as created").webhook
    request = UpdateWebhookRequest(
        webhook=Webhook(id=original.id, **fields), update_mask=field_mask_pb2.FieldMask(paths=paths)
    )
    invalid_argument(client.webhooks.UpdateWebhook, request, field)
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=original.id)) == original


def test_update_webhook_to_a_duplicate_alias_is_already_exists(client, receiver):
    taken = make_webhook(client, receiver.url("/taken")).webhook
    original = make_webhook(client, receiver.url("/mine")).webhook
    request = UpdateWebhookRequest(webhook=Webhook(id=original.id, alias=taken.alias, description="changed"))
    rpc_error(grpc.StatusCode.ALREADY_EXISTS, client.webhooks.UpdateWebhook, request)
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=original.id)) == original
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=taken.alias)) == taken


def test_update_webhook_with_an_unknown_mask_path(client, receiver):
    original = make_webhook(client, receiver.url("/badmask")).webhook
    request = UpdateWebhookRequest(
        webhook=Webhook(id=original.id, description="x"),
        update_mask=field_mask_pb2.FieldMask(paths=["description", "secret"]),
    )
    _, description = invalid_argument(client.webhooks.UpdateWebhook, request, "update_mask")
    assert "secret" in description
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=original.id)) == original


def test_update_unknown_webhook_is_not_found(client):
    rpc_error(
        grpc.StatusCode.NOT_FOUND,
        client.webhooks.UpdateWebhook,
        UpdateWebhookRequest(webhook=Webhook(id=unique("ghost"), description="x")),
    )


def test_requests_without_an_id_are_invalid(client):
    invalid_argument(client.webhooks.GetWebhook, GetWebhookRequest(), "id")
    invalid_argument(
        client.webhooks.UpdateWebhook, UpdateWebhookRequest(webhook=Webhook(description="x")), "webhook.id"
    )
    invalid_argument(client.flows.GetFlow, GetFlowRequest(), "id")
    invalid_argument(client.jobs.GetJob, GetJobRequest(), "id")
    invalid_argument(client.webhooks.SendTestEvent, SendTestEventRequest(), "id")
    invalid_argument(client.flows.ListFlowWebhooks, ListFlowWebhooksRequest(), "flow_id")


# --- CreateFlow / UpdateFlow --------------------------------------------------------------


@pytest.mark.parametrize(
    ("definition", "field"),
    [
        ({"steps": [{"transform": "foo[?"}]}, "flow.definition.steps[0].transform"),
        ({"steps": [{"transform": "a"}, {"fail_if": "a ==", "message": "m"}]}, "flow.definition.steps[1].fail_if"),
        ({"steps": [{"transform": "nosuchfn(a)"}]}, "flow.definition.steps[0].transform"),
        ({"steps": [{"explode": "now"}]}, "flow.definition.steps[0].explode"),
        ({"steps": [{"sleep_ms": -1}]}, "flow.definition.steps[0].sleep_ms"),
        ({"steps": "transform"}, "flow.definition.steps"),
        ({"timeout_seconds": 0, "steps": []}, "flow.definition.timeout_seconds"),
        ({"input_schema": {"type": "no-such-type"}, "steps": []}, "flow.definition.input_schema.type"),
        ({"stepz": []}, "flow.definition.stepz"),
    ],
)
def test_create_flow_with_a_bad_definition(client, definition, field):
    before = flow_ids(client)
    alias = unique("badflow")
    request = CreateFlowRequest(flow=Flow(alias=alias, definition=struct(definition)))
    error, description = invalid_argument(client.flows.CreateFlow, request, field)
    assert field in error.details()
    assert flow_ids(client) == before
    rpc_error(grpc.StatusCode.NOT_FOUND, client.flows.GetFlow, GetFlowRequest(id=alias))


def test_bad_jmespath_names_the_expression(client):
    request = CreateFlowRequest(
        flow=Flow(alias=unique("badflow"), definition=struct({"steps": [{"transform": "foo[?"}]}))
    )
    _, description = invalid_argument(client.flows.CreateFlow, request, "flow.definition.steps[0].transform")
    assert "JMESPath" in description and "foo[?" in description


@pytest.mark.parametrize("alias", ["", "1flow", "flow_01m8dmjszby2r7fkeaqzjmkcdh", "with/slash"])
def test_create_flow_with_a_bad_alias(client, alias):
    before = flow_ids(client)
    request = CreateFlowRequest(flow=Flow(alias=alias, definition=struct({"steps": []})))
    invalid_argument(client.flows.CreateFlow, request, "flow.alias")
    assert flow_ids(client) == before


def test_create_flow_with_a_duplicate_alias_is_already_exists(client):
    original = make_flow(client, [{"transform": "a"}], name="first")
    before = flow_ids(client)
    request = CreateFlowRequest(flow=Flow(alias=original.alias, name="second", definition=struct({"steps": []})))
    error = rpc_error(grpc.StatusCode.ALREADY_EXISTS, client.flows.CreateFlow, request)
    assert original.alias in error.details()
    assert flow_ids(client) == before
    assert client.flows.GetFlow(GetFlowRequest(id=original.alias)) == original


def test_create_flow_linking_an_unknown_webhook_is_not_found(client):
    before = flow_ids(client)
    alias = unique("links")
    request = CreateFlowRequest(flow=Flow(alias=alias, definition=struct({"steps": []}), webhook_ids=[unique("ghost")]))
    rpc_error(grpc.StatusCode.NOT_FOUND, client.flows.CreateFlow, request)
    assert flow_ids(client) == before


def test_update_flow_with_a_bad_definition_keeps_the_version(client):
    original = make_flow(client, [{"transform": "a"}])
    request = UpdateFlowRequest(
        flow=Flow(id=original.id, name="renamed", definition=struct({"steps": [{"transform": "a.["}]}))
    )
    invalid_argument(client.flows.UpdateFlow, request, "flow.definition.steps[0].transform")
    after = client.flows.GetFlow(GetFlowRequest(id=original.id))
    assert after == original
    assert after.version == 1
    rpc_error(grpc.StatusCode.NOT_FOUND, client.flows.GetFlow, GetFlowRequest(id=original.id, version=2))


def test_update_flow_to_a_duplicate_alias_is_already_exists(client):
    taken = make_flow(client)
    original = make_flow(client)
    request = UpdateFlowRequest(flow=Flow(id=original.id, alias=taken.alias, name="changed"))
    rpc_error(grpc.StatusCode.ALREADY_EXISTS, client.flows.UpdateFlow, request)
    assert client.flows.GetFlow(GetFlowRequest(id=original.id)) == original


def test_update_flow_with_an_unknown_mask_path(client):
    original = make_flow(client)
    request = UpdateFlowRequest(
        flow=Flow(id=original.id, name="x"), update_mask=field_mask_pb2.FieldMask(paths=["version"])
    )
    invalid_argument(client.flows.UpdateFlow, request, "update_mask")
    assert client.flows.GetFlow(GetFlowRequest(id=original.id)) == original


def test_get_flow_with_a_negative_version(client):
    flow = make_flow(client)
    invalid_argument(client.flows.GetFlow, GetFlowRequest(id=flow.id, version=-1), "version")


def test_flow_definition_nested_too_deep_names_the_limit(client):
    before = flow_ids(client)
    definition = {"input_schema": {"enum": [nested_list(40)]}, "steps": []}
    request = CreateFlowRequest(flow=Flow(alias=unique("deep"), definition=struct(definition)))
    error = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, client.flows.CreateFlow, request)
    assert "32" in error.details()
    assert flow_ids(client) == before


# --- StartJob -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def echo(client):
    return make_flow(client, [], name="Echo")


def test_start_job_on_an_unknown_flow_is_not_found(client, echo):
    correlation = unique("corr")
    for ref in (unique("ghost"), "flow_00000000000000000000000000"):
        error = rpc_error(grpc.StatusCode.NOT_FOUND, start_job, client, ref, {"a": 1}, correlation_id=correlation)
        assert ref in error.details()
    assert job_ids(client, correlation_id=correlation) == []


def test_start_job_on_a_missing_version_is_not_found(client, echo):
    correlation = unique("corr")
    error = rpc_error(grpc.StatusCode.NOT_FOUND, start_job, client, echo.id, {}, version=2, correlation_id=correlation)
    assert "version" in error.details()
    invalid_argument(
        client.jobs.StartJob, StartJobRequest(flow=echo.id, version=-1, correlation_id=correlation), "version"
    )
    assert job_ids(client, correlation_id=correlation) == []


def test_start_job_without_a_flow(client):
    invalid_argument(client.jobs.StartJob, StartJobRequest(input=value({"a": 1})), "flow")


def test_start_job_with_overlong_keys(client, echo):
    correlation = unique("corr")
    invalid_argument(
        client.jobs.StartJob,
        StartJobRequest(flow=echo.id, idempotency_key="k" * 256, correlation_id=correlation),
        "idempotency_key",
    )
    invalid_argument(client.jobs.StartJob, StartJobRequest(flow=echo.id, correlation_id="c" * 256), "correlation_id")
    assert job_ids(client, correlation_id=correlation) == []


def test_start_job_input_nested_deeper_than_32_names_the_limit(client, echo):
    correlation = unique("corr")
    error, description = invalid_argument(
        client.jobs.StartJob,
        StartJobRequest(flow=echo.id, input=value(nested(33)), correlation_id=correlation),
        "input",
    )
    assert "32" in description and "32" in error.details()
    assert job_ids(client, correlation_id=correlation) == []
    # 32 levels are fine.
    job = start_job(client, echo.id, nested(32), correlation_id=correlation)
    assert plain(job.input) == nested(32)


def test_start_job_input_with_nan_is_invalid(client, echo):
    request = StartJobRequest(flow=echo.id, input=struct_pb2.Value(number_value=float("nan")))
    _, description = invalid_argument(client.jobs.StartJob, request, "input")
    assert "NaN" in description


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def deep_start_job_request(flow: str, depth: int, correlation_id: str) -> bytes:
    """StartJobRequest bytes whose input Value nests `depth` lists deep, built by
    hand (protobuf itself refuses to build or parse this past 100 levels)."""
    value = _field(3, b"leaf")  # Value.string_value
    for _ in range(depth):
        value = _field(6, _field(1, value))  # Value.list_value -> ListValue.values
    return _field(1, flow.encode()) + _field(3, value) + _field(4, correlation_id.encode())


def test_a_request_that_fails_to_decode_is_invalid_argument_naming_the_limit(client, hookline_app, echo):
    correlation = unique("corr")
    payload = deep_start_job_request(echo.id, 150, correlation)
    with pytest.raises(DecodeError):
        StartJobRequest.FromString(payload)  # protobuf's own parser refuses it too
    call = client.channel.unary_unary(
        "/hookline.v1.JobService/StartJob",
        request_serializer=lambda raw: raw,
        response_deserializer=Job.FromString,
    )
    error = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, call, payload)
    assert "100" in error.details()
    assert job_ids(client, correlation_id=correlation) == []
    # The same bytes at a shallow depth decode and start a job.
    ok = call(deep_start_job_request(echo.id, 3, correlation))
    assert ok.flow_id == echo.id
    assert job_ids(client, correlation_id=correlation) == [ok.id]


def test_garbage_bytes_are_invalid_argument(client):
    call = client.channel.unary_unary(
        "/hookline.v1.WebhookService/GetWebhook",
        request_serializer=lambda raw: raw,
        response_deserializer=Webhook.FromString,
    )
    rpc_error(grpc.StatusCode.INVALID_ARGUMENT, call, b"\xff\xff\xff\xff")


# --- pagination ---------------------------------------------------------------------------


def list_calls(client):  # type: ignore[no-untyped-def]
    return [
        (client.webhooks.ListWebhooks, ListWebhooksRequest),
        (client.flows.ListFlows, ListFlowsRequest),
        (client.jobs.ListJobs, ListJobsRequest),
        (client.webhooks.ListDeliveries, ListDeliveriesRequest),
        (client.webhooks.ListEvents, ListEventsRequest),
    ]


@pytest.mark.parametrize(
    "token",
    ["garbage", "!!!", base64.urlsafe_b64encode(b'{"x": 1}').decode(), base64.urlsafe_b64encode(b"[1, 2]").decode()],
)
def test_a_garbage_page_token_is_invalid_argument(client, token):
    for method, request_cls in list_calls(client):
        _, description = invalid_argument(method, request_cls(page_token=token), "page_token")
        assert "token" in description or "issued" in description


def test_a_garbage_page_token_on_nested_lists(client, receiver):
    hook = make_webhook(client, receiver.url("/pt")).webhook
    flow = make_flow(client, webhook_ids=[hook.id])
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    wait_delivery(client, sent.delivery.id)
    invalid_argument(
        client.flows.ListFlowWebhooks, ListFlowWebhooksRequest(flow_id=flow.id, page_token="junk"), "page_token"
    )
    invalid_argument(
        client.webhooks.ListAttempts, ListAttemptsRequest(delivery_id=sent.delivery.id, page_token="junk"), "page_token"
    )


def test_a_negative_page_size_is_invalid_argument(client):
    for method, request_cls in list_calls(client):
        invalid_argument(method, request_cls(page_size=-1), "page_size")


def test_a_page_token_only_works_with_its_own_filters(client):
    flows = [make_flow(client, []) for _ in range(2)]
    for flow in flows:
        for _ in range(2):
            start_job(client, flow.id)
    first = client.jobs.ListJobs(ListJobsRequest(flow_id=flows[0].id, page_size=1))
    assert first.next_page_token
    invalid_argument(
        client.jobs.ListJobs,
        ListJobsRequest(flow_id=flows[1].id, page_size=1, page_token=first.next_page_token),
        "page_token",
    )


def test_a_page_size_past_the_maximum_is_capped(client):
    response = client.webhooks.ListEvents(ListEventsRequest(page_size=100_000))
    assert len(response.events) <= 1000


# --- WatchDeliveries ------------------------------------------------------------------------


def test_watch_deliveries_with_two_filters_is_invalid(client, receiver):
    hook = make_webhook(client, receiver.url("/w")).webhook
    flow = make_flow(client)
    invalid_argument(
        client.webhooks.WatchDeliveries, WatchDeliveriesRequest(webhook_id=hook.id, flow_id=flow.id), "flow_id"
    )


def test_watch_deliveries_with_a_garbage_cursor_is_invalid(client):
    invalid_argument(client.webhooks.WatchDeliveries, WatchDeliveriesRequest(cursor="not-a-cursor"), "cursor")


def test_watch_deliveries_on_unknown_webhook_or_flow_is_not_found(client):
    rpc_error(
        grpc.StatusCode.NOT_FOUND, client.webhooks.WatchDeliveries, WatchDeliveriesRequest(webhook_id=unique("ghost"))
    )
    rpc_error(
        grpc.StatusCode.NOT_FOUND, client.webhooks.WatchDeliveries, WatchDeliveriesRequest(flow_id=unique("ghost"))
    )


# --- more limits ---------------------------------------------------------------------------


def test_limits_are_inclusive(client, receiver):
    alias = "a" * 64
    url = receiver.url("/") + "p" * (2048 - len(receiver.url("/")))
    hook = make_webhook(client, url, alias=alias, description="d" * 1000, event_types=["WEBHOOK.TEST"] * 64).webhook
    assert (hook.alias, hook.url, len(hook.description)) == (alias, url, 1000)
    assert list(hook.event_types) == ["WEBHOOK.TEST"]


def test_start_job_input_over_1_mib_names_the_limit(client, echo):
    correlation = unique("corr")
    request = StartJobRequest(flow=echo.id, input=value({"blob": "x" * (1 << 20)}), correlation_id=correlation)
    _, description = invalid_argument(client.jobs.StartJob, request, "input")
    assert "1048576" in description
    assert job_ids(client, correlation_id=correlation) == []


def test_webhook_headers_are_checked(client):
    before = webhook_ids(client)
    invalid_argument(
        client.webhooks.CreateWebhook,
        create_webhook_request(headers={"X-A": "line\r\nX-Evil: 1"}),
        "webhook.headers['X-A']",
    )
    invalid_argument(
        client.webhooks.CreateWebhook,
        create_webhook_request(headers={"bad header": "v"}),
        "webhook.headers['bad header']",
    )
    _, description = invalid_argument(
        client.webhooks.CreateWebhook,
        create_webhook_request(headers={f"X-H{i}": "v" for i in range(33)}),
        "webhook.headers",
    )
    assert "32" in description
    assert webhook_ids(client) == before


def test_rotate_with_a_negative_grace_period_is_invalid(client, receiver):
    hook = make_webhook(client, receiver.url("/grace")).webhook
    invalid_argument(
        client.webhooks.RotateWebhookSecret,
        RotateWebhookSecretRequest(id=hook.id, grace_period=duration_pb2.Duration(seconds=-1)),
        "grace_period",
    )
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=hook.id)) == hook


def test_send_test_event_with_a_too_long_message(client, receiver):
    hook = make_webhook(client, receiver.url("/long-message")).webhook
    _, description = invalid_argument(
        client.webhooks.SendTestEvent, SendTestEventRequest(id=hook.id, message="m" * 1001), "message"
    )
    assert "1000" in description
    assert list(client.webhooks.ListDeliveries(ListDeliveriesRequest(webhook_id=hook.id)).deliveries) == []


def test_flow_name_and_description_limits(client):
    before = flow_ids(client)
    invalid_argument(
        client.flows.CreateFlow,
        CreateFlowRequest(flow=Flow(alias=unique("f"), name="n" * 201, definition=struct({"steps": []}))),
        "flow.name",
    )
    invalid_argument(
        client.flows.CreateFlow,
        CreateFlowRequest(flow=Flow(alias=unique("f"), description="d" * 1001, definition=struct({"steps": []}))),
        "flow.description",
    )
    assert flow_ids(client) == before


def test_flow_definition_with_nan_is_invalid(client):
    before = flow_ids(client)
    definition = struct({"steps": []})
    definition.fields["timeout_seconds"].number_value = float("nan")
    error = rpc_error(
        grpc.StatusCode.INVALID_ARGUMENT,
        client.flows.CreateFlow,
        CreateFlowRequest(flow=Flow(alias=unique("nan"), definition=definition)),
    )
    assert "timeout_seconds" in error.details() or "NaN" in error.details()
    assert flow_ids(client) == before


@pytest.mark.parametrize("state", [99, -3])
def test_an_unknown_state_filter_is_invalid_argument(client, state):
    invalid_argument(client.jobs.ListJobs, ListJobsRequest(state=state), "state")
    invalid_argument(client.webhooks.ListDeliveries, ListDeliveriesRequest(state=state), "state")


def test_a_stream_request_that_fails_to_decode_is_invalid_argument(client):
    call = client.channel.unary_stream(
        "/hookline.v1.WebhookService/WatchDeliveries",
        request_serializer=lambda raw: raw,
        response_deserializer=DeliveryEvent.FromString,
    )
    rpc_error(grpc.StatusCode.INVALID_ARGUMENT, call, b"\xff\xff\xff", timeout=5)


HUGE = "x" * 20_000


@pytest.mark.parametrize(
    ("call", "request_", "code"),
    [
        (lambda c: c.webhooks.GetWebhook, GetWebhookRequest(id=HUGE), "NOT_FOUND"),
        (lambda c: c.flows.GetFlow, GetFlowRequest(id=HUGE), "NOT_FOUND"),
        (lambda c: c.jobs.GetJob, GetJobRequest(id="job_" + HUGE), "NOT_FOUND"),
        (lambda c: c.jobs.StartJob, StartJobRequest(flow=HUGE), "NOT_FOUND"),
        (lambda c: c.webhooks.GetEvent, GetEventRequest(id="evt_" + HUGE), "NOT_FOUND"),
        (
            lambda c: c.flows.CreateFlow,
            CreateFlowRequest(flow=Flow(alias="huge", definition=struct({"steps": [{"transform": "a[" + HUGE}]}))),
            "INVALID_ARGUMENT",
        ),
        (
            lambda c: c.flows.CreateFlow,
            CreateFlowRequest(flow=Flow(alias="huge", definition=struct({"steps": [{HUGE: 1}]}))),
            "INVALID_ARGUMENT",
        ),
    ],
    ids=["GetWebhook", "GetFlow", "GetJob", "StartJob", "GetEvent", "long-jmespath", "long-step-key"],
)
def test_a_huge_value_in_a_request_still_gets_its_status(client, call, request_, code):
    """The error must reach the caller: a message echoing a 20,000-character value
    overflows the 16 KiB limit on gRPC metadata and the caller sees only a broken stream."""
    accepted = {grpc.StatusCode[code], grpc.StatusCode.INVALID_ARGUMENT}
    with pytest.raises(grpc.RpcError) as caught:
        call(client)(request_)
    assert caught.value.code() in accepted, f"{caught.value.code().name}: {caught.value.details()[:200]}"

"""Spaces: nothing crosses them. Another space's objects are NOT_FOUND (never
revealed), missing from lists, unchanged by the attempt, and cannot be linked."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import timestamp_pb2

from hookline.client import (
    AddFlowWebhookRequest,
    CancelJobRequest,
    CancelJobsRequest,
    CreateFlowRequest,
    DeleteFlowRequest,
    DeleteWebhookRequest,
    DeliveryEventKind,
    DeliveryState,
    Flow,
    GetDeliveryRequest,
    GetEventRequest,
    GetFlowRequest,
    GetJobRequest,
    GetWebhookRequest,
    JobState,
    ListAttemptsRequest,
    ListDeliveriesRequest,
    ListEventsRequest,
    ListFlowWebhooksRequest,
    ListJobsRequest,
    RecoverDeliveriesRequest,
    RemoveFlowWebhookRequest,
    RetryDeliveryRequest,
    RotateWebhookSecretRequest,
    SendTestEventRequest,
    SetFlowWebhooksRequest,
    UpdateFlowRequest,
    UpdateWebhookRequest,
    WatchDeliveriesRequest,
    WatchJobRequest,
    Webhook,
)

from .helpers import (
    flow_ids,
    job_ids,
    list_all,
    make_flow,
    make_webhook,
    rpc_error,
    start_job,
    struct,
    unique,
    wait_delivery,
    wait_job,
    webhook_ids,
)

NOT_FOUND = grpc.StatusCode.NOT_FOUND


@dataclass
class Mine:
    """Objects of the default space."""

    webhook: Webhook
    flow: Flow
    job_id: str
    delivery_id: str
    event_id: str


@pytest.fixture(scope="module")
def mine(client, receiver) -> Mine:  # type: ignore[no-untyped-def]
    hook = make_webhook(client, receiver.url("/mine"), event_types=["WEBHOOK.TEST", "JOB.COMPLETED"]).webhook
    flow = make_flow(client, [], webhook_ids=[hook.id])
    job = start_job(client, flow.id, {"secret": "plans"})
    wait_job(client, job.id)
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    wait_delivery(client, sent.delivery.id)
    return Mine(
        client.webhooks.GetWebhook(GetWebhookRequest(id=hook.id)),
        client.flows.GetFlow(GetFlowRequest(id=flow.id)),
        job.id,
        sent.delivery.id,
        sent.event.id,
    )


def test_another_space_cannot_see_or_touch_my_webhooks(client, other_space, mine):
    them = other_space.client.webhooks
    for ref in (mine.webhook.id, mine.webhook.alias):
        error = rpc_error(NOT_FOUND, them.GetWebhook, GetWebhookRequest(id=ref))
        assert "not found" in error.details()
        rpc_error(NOT_FOUND, them.UpdateWebhook, UpdateWebhookRequest(webhook=Webhook(id=ref, description="pwned")))
        rpc_error(NOT_FOUND, them.RotateWebhookSecret, RotateWebhookSecretRequest(id=ref))
        rpc_error(NOT_FOUND, them.SendTestEvent, SendTestEventRequest(id=ref))
        rpc_error(NOT_FOUND, them.ListDeliveries, ListDeliveriesRequest(webhook_id=ref))
        rpc_error(
            NOT_FOUND,
            them.RecoverDeliveries,
            RecoverDeliveriesRequest(webhook_id=ref, since=timestamp_pb2.Timestamp(seconds=0)),
        )
        rpc_error(NOT_FOUND, them.WatchDeliveries, WatchDeliveriesRequest(webhook_id=ref))
        rpc_error(NOT_FOUND, them.DeleteWebhook, DeleteWebhookRequest(id=ref))
    assert mine.webhook.id not in webhook_ids(other_space.client)
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=mine.webhook.id)) == mine.webhook


def test_another_space_cannot_see_or_touch_my_flows(client, other_space, mine):
    them = other_space.client.flows
    for ref in (mine.flow.id, mine.flow.alias):
        rpc_error(NOT_FOUND, them.GetFlow, GetFlowRequest(id=ref))
        rpc_error(NOT_FOUND, them.UpdateFlow, UpdateFlowRequest(flow=Flow(id=ref, name="pwned")))
        rpc_error(NOT_FOUND, them.ListFlowWebhooks, ListFlowWebhooksRequest(flow_id=ref))
        rpc_error(NOT_FOUND, them.SetFlowWebhooks, SetFlowWebhooksRequest(flow_id=ref))
        rpc_error(NOT_FOUND, them.DeleteFlow, DeleteFlowRequest(id=ref))
        rpc_error(NOT_FOUND, start_job, other_space.client, ref, {})
        rpc_error(NOT_FOUND, other_space.client.jobs.ListJobs, ListJobsRequest(flow_id=ref))
        rpc_error(NOT_FOUND, other_space.client.jobs.CancelJobs, CancelJobsRequest(flow_id=ref))
        rpc_error(NOT_FOUND, other_space.client.webhooks.WatchDeliveries, WatchDeliveriesRequest(flow_id=ref))
    assert mine.flow.id not in flow_ids(other_space.client)
    assert client.flows.GetFlow(GetFlowRequest(id=mine.flow.id)) == mine.flow


def test_another_space_cannot_see_or_touch_my_jobs(client, other_space, mine):
    them = other_space.client.jobs
    before = client.jobs.GetJob(GetJobRequest(id=mine.job_id))
    rpc_error(NOT_FOUND, them.GetJob, GetJobRequest(id=mine.job_id))
    rpc_error(NOT_FOUND, them.CancelJob, CancelJobRequest(id=mine.job_id))
    rpc_error(NOT_FOUND, them.WatchJob, WatchJobRequest(id=mine.job_id))
    rpc_error(NOT_FOUND, other_space.solver.jobs.GetJob, GetJobRequest(id=mine.job_id))
    assert mine.job_id not in job_ids(other_space.client)
    assert client.jobs.GetJob(GetJobRequest(id=mine.job_id)) == before


def test_cancel_jobs_of_another_space_leaves_mine_waiting(client, other_space):
    flow = make_flow(client, [{"sleep_ms": 3000}])
    job = start_job(client, flow.id)
    other_space.client.jobs.CancelJobs(CancelJobsRequest())
    assert client.jobs.GetJob(GetJobRequest(id=job.id)).state != JobState.JOB_STATE_CANCELED
    client.flows.DeleteFlow(DeleteFlowRequest(id=flow.id))


def test_another_space_cannot_see_or_touch_my_deliveries_and_events(client, other_space, mine):
    them = other_space.client.webhooks
    before = client.webhooks.GetDelivery(GetDeliveryRequest(id=mine.delivery_id))
    rpc_error(NOT_FOUND, them.GetDelivery, GetDeliveryRequest(id=mine.delivery_id))
    rpc_error(NOT_FOUND, them.ListAttempts, ListAttemptsRequest(delivery_id=mine.delivery_id))
    rpc_error(NOT_FOUND, them.RetryDelivery, RetryDeliveryRequest(id=mine.delivery_id))
    rpc_error(NOT_FOUND, them.GetEvent, GetEventRequest(id=mine.event_id))
    assert list_all(them.ListDeliveries, ListDeliveriesRequest(event_id=mine.event_id), "deliveries") == []
    assert list_all(them.ListDeliveries, ListDeliveriesRequest(job_id=mine.job_id), "deliveries") == []
    assert list_all(them.ListEvents, ListEventsRequest(job_id=mine.job_id), "events") == []
    assert list_all(them.ListEvents, ListEventsRequest(flow_id=mine.flow.id), "events") == []
    all_theirs = {d.id for d in list_all(them.ListDeliveries, ListDeliveriesRequest(), "deliveries")}
    assert mine.delivery_id not in all_theirs
    assert mine.event_id not in {e.id for e in list_all(them.ListEvents, ListEventsRequest(), "events")}
    assert client.webhooks.GetDelivery(GetDeliveryRequest(id=mine.delivery_id)) == before


def test_a_webhook_of_another_space_cannot_be_linked(client, other_space, mine):
    them = other_space.client
    theirs = make_flow(them, [])
    foreign = [mine.webhook.id, mine.webhook.alias]
    for ref in foreign:
        error = rpc_error(
            NOT_FOUND, them.flows.AddFlowWebhook, AddFlowWebhookRequest(flow_id=theirs.id, webhook_id=ref)
        )
        assert "not found" in error.details()
        rpc_error(NOT_FOUND, them.flows.SetFlowWebhooks, SetFlowWebhooksRequest(flow_id=theirs.id, webhook_ids=[ref]))
        rpc_error(NOT_FOUND, them.flows.UpdateFlow, UpdateFlowRequest(flow=Flow(id=theirs.id, webhook_ids=[ref])))
        rpc_error(NOT_FOUND, them.flows.RemoveFlowWebhook, RemoveFlowWebhookRequest(flow_id=theirs.id, webhook_id=ref))
    assert them.flows.GetFlow(GetFlowRequest(id=theirs.id)) == theirs
    assert list(them.flows.ListFlowWebhooks(ListFlowWebhooksRequest(flow_id=theirs.id)).webhooks) == []

    before = flow_ids(them)
    alias = unique("linked")
    rpc_error(
        NOT_FOUND,
        them.flows.CreateFlow,
        CreateFlowRequest(flow=Flow(alias=alias, definition=struct({"steps": []}), webhook_ids=[mine.webhook.id])),
    )
    assert flow_ids(them) == before


def test_my_flow_cannot_link_a_webhook_of_another_space(client, other_space, mine, receiver):
    theirs = make_webhook(other_space.client, receiver.url("/theirs")).webhook
    rpc_error(NOT_FOUND, client.flows.AddFlowWebhook, AddFlowWebhookRequest(flow_id=mine.flow.id, webhook_id=theirs.id))
    rpc_error(
        NOT_FOUND,
        client.flows.SetFlowWebhooks,
        SetFlowWebhooksRequest(flow_id=mine.flow.id, webhook_ids=[mine.webhook.id, theirs.id]),
    )
    assert list(client.flows.GetFlow(GetFlowRequest(id=mine.flow.id)).webhook_ids) == [mine.webhook.id]


def test_aliases_are_unique_per_space_only(client, other_space, mine, receiver):
    twin = make_webhook(other_space.client, receiver.url("/twin"), alias=mine.webhook.alias).webhook
    assert twin.id != mine.webhook.id
    assert other_space.client.webhooks.GetWebhook(GetWebhookRequest(id=mine.webhook.alias)).id == twin.id
    assert client.webhooks.GetWebhook(GetWebhookRequest(id=mine.webhook.alias)).id == mine.webhook.id
    flow_twin = make_flow(other_space.client, [], alias=mine.flow.alias)
    assert other_space.client.flows.GetFlow(GetFlowRequest(id=mine.flow.alias)).id == flow_twin.id


def test_a_space_wide_stream_shows_only_its_own_space(client, other_space, receiver):
    mine_hook = make_webhook(client, receiver.url("/watch-mine")).webhook
    their_hook = make_webhook(other_space.client, receiver.url("/watch-theirs")).webhook
    stream = other_space.client.webhooks.WatchDeliveries(WatchDeliveriesRequest(), timeout=20)
    assert next(stream).kind == DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC
    mine_sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=mine_hook.id))
    wait_delivery(client, mine_sent.delivery.id)
    their_sent = other_space.client.webhooks.SendTestEvent(SendTestEventRequest(id=their_hook.id))
    got = []
    try:
        for message in stream:
            got.append(message)
            if (
                message.delivery.id == their_sent.delivery.id
                and message.delivery.state == DeliveryState.DELIVERY_STATE_SUCCEEDED
            ):
                break
    finally:
        stream.cancel()
    seen = {m.delivery.webhook_id for m in got if m.HasField("delivery")}
    assert seen == {their_hook.id}


def test_idempotency_keys_are_scoped_to_the_space(client, other_space):
    key = unique("shared-key")
    mine_flow = make_flow(client, [])
    their_flow = make_flow(other_space.client, [])
    my_job = start_job(client, mine_flow.id, {"a": 1}, idempotency_key=key)
    their_job = start_job(other_space.client, their_flow.id, {"a": 1}, idempotency_key=key)
    assert their_job.id != my_job.id
    assert their_job.flow_id == their_flow.id
    assert start_job(client, mine_flow.id, {"a": 1}, idempotency_key=key).id == my_job.id

"""A server that runs the API only (role "api": no job runner, no delivery
worker), so jobs stay WAITING and deliveries PENDING: cancelling WAITING jobs
one by one, per flow and space-wide; what disabling or deleting a webhook does
to its PENDING deliveries."""

from __future__ import annotations

from collections.abc import Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2

from hookline.client import (
    CancelJobRequest,
    CancelJobsRequest,
    DeleteFlowRequest,
    DeleteWebhookRequest,
    DeliveryState,
    GetDeliveryRequest,
    GetJobRequest,
    JobState,
    JobStatusCode,
    ListEventsRequest,
    ListJobsRequest,
    RetryDeliveryRequest,
    SendTestEventRequest,
    UpdateWebhookRequest,
    Webhook,
)
from hookline.server.settings import Settings

from .helpers import body_json, job_ids, list_all, make_flow, make_webhook, rpc_error, start_job, unique


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        role="api",
        retry_schedule="0,100ms,200ms",
        poll_interval_s=0.2,
        stream_heartbeat_s=1.0,
    )


def canceled_events(client, job_id):  # type: ignore[no-untyped-def]
    events = client.webhooks.ListEvents(ListEventsRequest(job_id=job_id)).events
    return [body_json(e.body)["data"]["status"] for e in events if e.event_type == "JOB.CANCELED"]


def test_started_jobs_wait(client):
    flow = make_flow(client, [])
    job = start_job(client, flow.id, {"a": 1})
    assert job.state == JobState.JOB_STATE_WAITING
    assert job.code == JobStatusCode.JOB_WAITING
    assert not job.HasField("claim_time")
    assert not job.HasField("end_time")
    assert job_ids(client, flow_id=flow.id, state=JobState.JOB_STATE_WAITING) == [job.id]


def test_cancel_a_waiting_job_ends_it_at_once(client):
    flow = make_flow(client, [])
    job = start_job(client, flow.id)
    canceled = client.jobs.CancelJob(CancelJobRequest(id=job.id))
    assert canceled.state == JobState.JOB_STATE_CANCELED
    assert canceled.code == JobStatusCode.JOB_USER_CANCELED
    assert canceled.HasField("end_time")
    assert not canceled.HasField("claim_time")  # never claimed
    assert client.jobs.GetJob(GetJobRequest(id=job.id)) == canceled
    assert canceled_events(client, job.id) == [
        {"state": "CANCELED", "code": "JOB_USER_CANCELED", "message": canceled.message}
    ]
    error = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, client.jobs.CancelJob, CancelJobRequest(id=job.id))
    assert "CANCELED" in error.details()
    assert len(canceled_events(client, job.id)) == 1


def test_cancel_jobs_of_a_flow_returns_the_count_and_spares_other_flows(client):
    target = make_flow(client, [])
    other = make_flow(client, [])
    targets = [start_job(client, target.id, {"i": i}).id for i in range(3)]
    finished = start_job(client, target.id)
    client.jobs.CancelJob(CancelJobRequest(id=finished.id))
    spared = [start_job(client, other.id, {"i": i}).id for i in range(2)]

    response = client.jobs.CancelJobs(CancelJobsRequest(flow_id=target.alias))
    assert response.canceled_count == 3

    for job_id in targets:
        job = client.jobs.GetJob(GetJobRequest(id=job_id))
        assert (job.state, job.code) == (JobState.JOB_STATE_CANCELED, JobStatusCode.JOB_USER_CANCELED)
        assert len(canceled_events(client, job_id)) == 1  # one event per job
    for job_id in spared:
        assert client.jobs.GetJob(GetJobRequest(id=job_id)).state == JobState.JOB_STATE_WAITING
    assert client.jobs.CancelJobs(CancelJobsRequest(flow_id=target.id)).canceled_count == 0


def test_cancel_jobs_of_the_space(client):
    flows = [make_flow(client, []) for _ in range(2)]
    for flow in flows:
        start_job(client, flow.id)
        start_job(client, flow.id)
    waiting = job_ids(client, state=JobState.JOB_STATE_WAITING)
    assert len(waiting) >= 4

    response = client.jobs.CancelJobs(CancelJobsRequest())
    assert response.canceled_count == len(waiting)
    assert job_ids(client, state=JobState.JOB_STATE_WAITING) == []
    assert set(waiting) <= set(job_ids(client, state=JobState.JOB_STATE_CANCELED))
    assert client.jobs.CancelJobs(CancelJobsRequest()).canceled_count == 0


def test_cancel_jobs_of_unknown_flow_is_not_found(client):
    flow = make_flow(client, [])
    job = start_job(client, flow.id)
    rpc_error(grpc.StatusCode.NOT_FOUND, client.jobs.CancelJobs, CancelJobsRequest(flow_id=unique("ghost")))
    assert client.jobs.GetJob(GetJobRequest(id=job.id)).state == JobState.JOB_STATE_WAITING
    client.jobs.CancelJob(CancelJobRequest(id=job.id))


def test_delete_flow_cancels_its_waiting_jobs_with_system_canceled(client, receiver):
    hook = make_webhook(client, receiver.url("/deleted"), event_types=["JOB.CANCELED"]).webhook
    flow = make_flow(client, [], webhook_ids=[hook.id])
    other = make_flow(client, [])
    jobs = [start_job(client, flow.id, {"i": i}).id for i in range(2)]
    bystander = start_job(client, other.id).id

    client.flows.DeleteFlow(DeleteFlowRequest(id=flow.alias))

    for job_id in jobs:
        job = client.jobs.GetJob(GetJobRequest(id=job_id))
        assert job.state == JobState.JOB_STATE_CANCELED
        assert job.code == JobStatusCode.JOB_SYSTEM_CANCELED
        assert [s["code"] for s in canceled_events(client, job_id)] == ["JOB_SYSTEM_CANCELED"]
    assert client.jobs.GetJob(GetJobRequest(id=bystander)).state == JobState.JOB_STATE_WAITING
    listed = {j.id: j for j in list_all(client.jobs.ListJobs, ListJobsRequest(), "jobs")}
    assert all(listed[j].code == JobStatusCode.JOB_SYSTEM_CANCELED for j in jobs)
    client.jobs.CancelJob(CancelJobRequest(id=bystander))


def test_deleting_a_webhook_cancels_its_pending_deliveries(client, receiver):
    hook = make_webhook(client, receiver.url("/never")).webhook
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    assert sent.delivery.state == DeliveryState.DELIVERY_STATE_PENDING

    client.webhooks.DeleteWebhook(DeleteWebhookRequest(id=hook.id))

    delivery = client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id))
    assert delivery.state == DeliveryState.DELIVERY_STATE_CANCELED
    assert "deleted" in delivery.last_error
    # CANCELED is final.
    rpc_error(
        grpc.StatusCode.FAILED_PRECONDITION, client.webhooks.RetryDelivery, RetryDeliveryRequest(id=sent.delivery.id)
    )
    assert client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id)) == delivery


def test_disabling_a_webhook_fails_its_pending_deliveries_and_enabling_resends_nothing(client, receiver):
    hook = make_webhook(client, receiver.url("/never")).webhook
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    mask = field_mask_pb2.FieldMask(paths=["enabled"])

    client.webhooks.UpdateWebhook(UpdateWebhookRequest(webhook=Webhook(id=hook.id, enabled=False), update_mask=mask))
    failed = client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id))
    assert failed.state == DeliveryState.DELIVERY_STATE_FAILED
    assert "disabled" in failed.last_error
    rpc_error(
        grpc.StatusCode.FAILED_PRECONDITION, client.webhooks.RetryDelivery, RetryDeliveryRequest(id=sent.delivery.id)
    )

    client.webhooks.UpdateWebhook(UpdateWebhookRequest(webhook=Webhook(id=hook.id, enabled=True), update_mask=mask))
    assert (
        client.webhooks.GetDelivery(GetDeliveryRequest(id=sent.delivery.id)).state
        == DeliveryState.DELIVERY_STATE_FAILED
    )
    # Now it may be retried.
    retried = client.webhooks.RetryDelivery(RetryDeliveryRequest(id=sent.delivery.id))
    assert retried.state == DeliveryState.DELIVERY_STATE_PENDING

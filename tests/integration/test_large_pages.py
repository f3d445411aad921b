"""Listings stay under the 4 MiB a gRPC client receives by default, however
large the items: a page ends early and its token carries on from there. The
test's client has gRPC's default limits."""

from __future__ import annotations

from typing import Any

from hookline.client import JobState, ListEventsRequest, ListFlowsRequest, ListJobsRequest, WatchJobRequest

from .helpers import make_flow, start_job, unique

FOUR_MIB = 4 * 1024 * 1024


def pages(method: Any, request: Any, field: str) -> list[Any]:
    """Every page of a listing, from the first to the one with no token."""
    result = []
    while True:
        page = method(request)
        result.append(page)
        if not page.next_page_token:
            return result
        request.page_token = page.next_page_token


def test_jobs_and_their_events_with_large_outputs_list_in_pages_a_client_can_receive(client: Any) -> None:
    # Each job's input and output are ~600 KiB; its JOB.COMPLETED event carries both.
    flow = make_flow(client, [{"transform": "@"}])
    tag = unique("big")
    started = [
        start_job(client, flow.id, {"blob": f"{n:03d}" + "x" * 600_000}, correlation_id=tag).id for n in range(8)
    ]
    for job_id in started:
        [*_, ended] = client.jobs.WatchJob(WatchJobRequest(id=job_id), timeout=60)
        assert ended.state == JobState.JOB_STATE_COMPLETED, ended.message
    listed = pages(client.jobs.ListJobs, ListJobsRequest(correlation_id=tag), "jobs")
    assert len(listed) > 1
    assert all(page.ByteSize() < FOUR_MIB for page in listed)
    assert [job.id for page in listed for job in page.jobs] == started  # in order, none twice, none missing
    assert all(len(job.output.struct_value.fields["blob"].string_value) == 600_003 for p in listed for job in p.jobs)

    events = pages(client.webhooks.ListEvents, ListEventsRequest(flow_id=flow.id, event_type="JOB.COMPLETED"), "events")
    assert len(events) > 1 and all(page.ByteSize() < FOUR_MIB for page in events)
    assert sorted(e.job_id for page in events for e in page.events) == sorted(started)


def test_flows_with_large_definitions_list_in_pages_a_client_can_receive(client: Any) -> None:
    steps = [{"fail_if": "`false`", "message": "n" * 500_000}]
    made = {make_flow(client, steps).id for _ in range(10)}
    listed = pages(client.flows.ListFlows, ListFlowsRequest(), "flows")
    assert all(page.ByteSize() < FOUR_MIB for page in listed)
    assert made <= {flow.id for page in listed for flow in page.flows}

"""Generated flows run on generated inputs: steps built from JMESPath literals
that yield unpaired surrogates, NaN, infinities and numbers past a double's
range (see strategies.ODD_EXPRESSION). Properties, for every job:

* it ends COMPLETED, or ERROR with a message;
* afterwards every read of it answers: GetJob, WatchJob, ListJobs unfiltered and
  filtered by flow, state and correlation id, and they agree;
* its event's body is UTF-8 JSON carrying the same output and message.

And at the end every job of the run still reads back, one by one and listed."""

from __future__ import annotations

import json
from typing import Any

import grpc
from google.protobuf import json_format
from hypothesis import HealthCheck, Phase, given, settings

from hookline.client import (
    GetJobRequest,
    Job,
    JobState,
    JobStatusCode,
    ListEventsRequest,
    ListJobsRequest,
    StartJobRequest,
    WatchJobRequest,
)

from .strategies import INPUT, RUNNABLE_DEFINITION
from .world import TERMINAL_JOB_STATES, World, json_value, unique

RUNS = settings(
    max_examples=60,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
ENDED_CODES = {JobStatusCode.JOB_EXECUTION_ERROR, JobStatusCode.JOB_VALIDATION_ERROR}


def every_page(method: Any, request: Any, attr: str) -> list[Any]:
    """Every item of a List call, page by page; a page that fails raises RpcError."""
    items: list[Any] = []
    while True:
        response = method(request, timeout=30)
        items.extend(getattr(response, attr))
        if not response.next_page_token:
            return items
        request.page_token = response.next_page_token


def watched_to_end(world: World, job_id: str) -> Job:
    """The job's last state through WatchJob, which ends once the job has."""
    seen = list(world.client.jobs.WatchJob(WatchJobRequest(id=job_id), timeout=30))
    assert seen and seen[-1].state in TERMINAL_JOB_STATES, f"WatchJob ended before the job did: {seen[-1:]}"
    return seen[-1]


def read_every_way(world: World, job_id: str) -> Job:
    """The job by GetJob, once WatchJob and every listing that should hold it
    (unfiltered, by flow, state and correlation id) have shown it alike; a read
    that fails raises RpcError."""
    job = world.client.jobs.GetJob(GetJobRequest(id=job_id), timeout=30)
    assert watched_to_end(world, job_id) == job
    for request in (
        ListJobsRequest(),
        ListJobsRequest(flow_id=job.flow_id),
        ListJobsRequest(state=job.state),
        ListJobsRequest(correlation_id=job.correlation_id),
    ):
        request.page_size = 100
        found = [j for j in every_page(world.client.jobs.ListJobs, request, "jobs") if j.id == job_id]
        assert found == [job], f"ListJobs({request}) shows {found} for {job}"
    return job


def check_ended(job: Job) -> None:
    if job.state == JobState.JOB_STATE_COMPLETED:
        assert job.HasField("output")
        return
    assert job.state == JobState.JOB_STATE_ERROR, f"ended {JobState.Name(job.state)}: {job}"
    assert job.code in ENDED_CODES, f"ended {JobStatusCode.Name(job.code)}: {job.message}"
    assert job.message.strip(), "an ERROR without a message"


def check_event(world: World, job: Job) -> None:
    """The job's event: UTF-8 JSON with the state, message and output the API shows."""
    events = every_page(world.client.webhooks.ListEvents, ListEventsRequest(job_id=job.id, page_size=10), "events")
    [event] = [e for e in events if e.event_type.startswith("JOB.")]
    # Numbers as JavaScript reads them: doubles (a whole one past 2**53 is written in its shortest digits).
    data = json.loads(event.body.decode("utf-8"), parse_int=float)["data"]
    state = JobState.Name(job.state).removeprefix("JOB_STATE_")
    assert (data["status"]["state"], data["status"]["message"]) == (state, job.message)
    if job.state == JobState.JOB_STATE_COMPLETED:
        assert data["output"] == json_format.MessageToDict(job.output)


def test_generated_flows_end_and_read_back(world: World) -> None:
    hook = world.snapshot().webhooks[0].id

    @RUNS
    @given(definition=RUNNABLE_DEFINITION, document=INPUT)
    def job_ends_and_reads_back(definition: dict[str, Any], document: Any) -> None:
        flow = world.add_flow([hook], definition["steps"], prefix="run")
        request = StartJobRequest(flow=flow.id, input=json_value(document), correlation_id=unique("run"))
        started = world.client.jobs.StartJob(request, timeout=30)
        try:
            watched_to_end(world, started.id)
            job = read_every_way(world, started.id)
        except grpc.RpcError as error:
            raise AssertionError(f"a read failed {error.code().name}: {error.details()}; steps: {definition}") from None
        check_ended(job)
        check_event(world, job)

    job_ends_and_reads_back()


def test_every_job_of_the_run_reads_back(world: World) -> None:
    jobs = every_page(world.client.jobs.ListJobs, ListJobsRequest(page_size=100), "jobs")
    assert jobs
    for job in jobs:
        if job.state in TERMINAL_JOB_STATES:
            assert world.client.jobs.GetJob(GetJobRequest(id=job.id), timeout=30) == job
            assert watched_to_end(world, job.id) == job

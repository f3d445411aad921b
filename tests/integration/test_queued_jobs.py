"""Jobs waiting for a worker while every worker is busy: the runner may have
them lined up (on the embedded database it reads as many again as it has
workers), but they are WAITING until they run: not RUNNING in reads, listings
or metrics, canceled at once by CancelJob and CancelJobs with their event sent,
their timeout counted from when they start, and any runner may take them."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from conftest import Watching

from hookline.client import (
    CancelJobRequest,
    CancelJobsRequest,
    GetJobRequest,
    Job,
    JobState,
    JobStatusCode,
    WatchJobRequest,
)
from hookline.server.execution.runner import JobRunner
from hookline.server.settings import Settings
from hookline.server.storage import stats

from .helpers import TERMINAL_JOB_STATES, job_ids, make_flow, make_webhook, start_job, unique

WORKERS = 2
HOLD = [{"sleep_ms": 60_000}]  # holds a worker until canceled


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(job_workers=WORKERS)


def watch(client: Any, job_id: str) -> Watching:
    return Watching(client.jobs.WatchJob(WatchJobRequest(id=job_id), timeout=60))


def running(client: Any, job_id: str) -> Watching:
    """A watch of the job, once it has been seen RUNNING."""
    watching = watch(client, job_id)
    watching.wait_for(lambda seen: any(j.state == JobState.JOB_STATE_RUNNING for j in seen), what="RUNNING")
    return watching


def ended(watching: Watching) -> Job:
    seen = watching.wait_for(lambda seen: bool(seen) and seen[-1].state in TERMINAL_JOB_STATES, what="the end")
    return seen[-1]


@pytest.fixture
def busy(client, hookline_app) -> Any:  # type: ignore[no-untyped-def]
    """Every worker busy with a job that holds it; they are canceled afterwards."""
    flow = make_flow(client, HOLD)
    holders = [start_job(client, flow.id).id for _ in range(WORKERS)]
    watches = [running(client, job_id) for job_id in holders]
    yield holders
    for job_id in holders:
        try:
            client.jobs.CancelJob(CancelJobRequest(id=job_id))
        except grpc.RpcError as error:  # the test canceled it already
            assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    for watching in watches:
        ended(watching)


def line_up(hookline_app, client, flow_id: str, count: int, **fields: Any) -> list[str]:  # type: ignore[no-untyped-def]
    """Start `count` jobs and give the runner its claim pass: it has done with
    them whatever it does with jobs it cannot start yet."""
    started = [start_job(client, flow_id, **fields).id for _ in range(count)]
    hookline_app.runner.claim_once()
    return started


def test_a_job_waiting_for_a_worker_reads_waiting_and_is_not_counted_running(client, hookline_app, busy):
    flow = make_flow(client, [{"transform": "@"}])
    queued = line_up(hookline_app, client, flow.id, WORKERS)
    for job_id in queued:
        job = client.jobs.GetJob(GetJobRequest(id=job_id))
        assert job.state == JobState.JOB_STATE_WAITING, JobState.Name(job.state)
        assert not job.HasField("claim_time")
    assert set(job_ids(client, state=JobState.JOB_STATE_RUNNING)) == set(busy)
    assert set(queued) <= set(job_ids(client, state=JobState.JOB_STATE_WAITING))
    assert stats.jobs_by_state().get("RUNNING", 0) == WORKERS  # what hookline_jobs{state="RUNNING"} shows
    watches = [watch(client, job_id) for job_id in queued]
    client.jobs.CancelJob(CancelJobRequest(id=busy[0]))  # a worker is free: the queued jobs run
    for watching in watches:
        assert ended(watching).state == JobState.JOB_STATE_COMPLETED


def test_cancel_ends_a_job_waiting_for_a_worker_at_once_with_its_event(client, hookline_app, receiver, busy):
    path = f"/queued/{unique()}"
    hook = make_webhook(client, receiver.url(path), event_types=["JOB.CANCELED"]).webhook
    flow = make_flow(client, [{"transform": "@"}], webhook_ids=[hook.id])
    [first, second] = line_up(hookline_app, client, flow.id, 2)

    canceled = client.jobs.CancelJob(CancelJobRequest(id=first))
    assert (canceled.state, canceled.code) == (JobState.JOB_STATE_CANCELED, JobStatusCode.JOB_USER_CANCELED)
    assert client.jobs.CancelJobs(CancelJobsRequest(flow_id=flow.id)).canceled_count == 1
    later = client.jobs.GetJob(GetJobRequest(id=second))
    assert (later.state, later.code) == (JobState.JOB_STATE_CANCELED, JobStatusCode.JOB_USER_CANCELED)
    delivered = receiver.wait_for(path, 2)
    assert sorted(json.loads(r.body)["data"]["jobId"] for r in delivered) == sorted([first, second])


def test_a_queued_job_is_claimed_and_timed_from_when_it_starts(client, hookline_app, busy):
    # A timeout with room for a loaded machine: the claim time, not the timing, is what is checked.
    flow = make_flow(client, definition={"timeout_seconds": 5, "steps": [{"sleep_ms": 300}]})
    [job_id] = line_up(hookline_app, client, flow.id, 1)
    watching = watch(client, job_id)
    client.jobs.CancelJob(CancelJobRequest(id=busy[0]))
    holder = ended(watch(client, busy[0]))
    done = ended(watching)
    assert done.state == JobState.JOB_STATE_COMPLETED, done.message
    assert done.claim_time.ToMilliseconds() >= holder.end_time.ToMilliseconds() - 5
    assert 300 <= done.end_time.ToMilliseconds() - done.claim_time.ToMilliseconds() < 5000


def test_a_job_another_runner_lined_up_is_run_by_any_runner(client, hookline_app, hookline_settings, busy):
    """As after a crash: jobs lined up by a runner that never gets to them are
    still WAITING, and another runner claims and runs them."""
    flow = make_flow(client, [{"transform": "{ran: `true`}"}])
    queued = line_up(hookline_app, client, flow.id, WORKERS)
    watches = [watch(client, job_id) for job_id in queued]
    other = JobRunner(hookline_settings)
    try:
        assert other.claim_once() >= len(queued)
        assert [ended(w).state for w in watches] == [JobState.JOB_STATE_COMPLETED] * len(queued)
    finally:
        other.stop(grace_s=5)
    # The runner that lined them up finds them taken and goes on with the next jobs.
    client.jobs.CancelJob(CancelJobRequest(id=busy[0]))
    assert ended(watch(client, start_job(client, flow.id).id)).state == JobState.JOB_STATE_COMPLETED

"""The job runner over storage of the test's own (storage.queues.JobQueue): the
database's, but failing to end jobs when the test says. A fault of the
database itself (DatabaseFault) is waited out and the run's real result
recorded; any other error leaves the job to its lease, and the reaper ends it
ERROR/ZOMBIE_PROCESS."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import pytest

from hookline.server.errors import Unavailable
from hookline.server.execution.runner import JobRunner
from hookline.server.settings import Settings
from hookline.server.states import JobCode, JobState
from hookline.server.storage import database, flows, jobs, spaces
from hookline.server.storage.database import DatabaseFault
from hookline.server.storage.queues import DatabaseJobs
from hookline.server.storage.records import ClaimedJob, Job, JobEnd

from .harness import NOW_MS, Clock

LEASE_S = 10.0


class FailingToFinish(DatabaseJobs):
    """The database's jobs, but each call to end jobs raises the next of
    `failures` until there is none left."""

    def __init__(self, failures: Sequence[Exception]) -> None:
        self.failures = list(failures)
        self.finish_calls = 0
        self.calls_ended = threading.Semaphore(0)  # released as each call returns or raises

    def finish_and_claim(
        self, ends: Sequence[JobEnd], next_ids: Sequence[str], now: int, lease_ms: int
    ) -> tuple[list[Job | None], list[ClaimedJob | None]]:
        self.finish_calls += 1
        try:
            if self.failures:
                raise self.failures.pop(0)
            return super().finish_and_claim(ends, next_ids, now, lease_ms)
        finally:
            self.calls_ended.release()

    def wait_for_calls(self, count: int) -> None:
        for n in range(count):
            assert self.calls_ended.acquire(timeout=10), f"the runner stopped after {n} tries to end the job"


@pytest.fixture
def job_id(db: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A WAITING job of a flow that only passes its input on."""
    # Leases are reaped only a lease after the database was last away: none of
    # an earlier test's outages counts here.
    monkeypatch.setattr(database, "_last_outage", float("-inf"))
    space_id, _ = spaces.create_space("runner-tier")
    flows.create_flow(space_id, "passes", "passes", "", {"steps": []}, [])
    [job] = jobs.start_jobs([jobs.StartRequest(space_id, "passes", 0, '{"n": 1}', "", "", 0)])
    assert isinstance(job, Job)
    return job.id


@pytest.fixture
def clock() -> Clock:
    return Clock()


@contextmanager
def runner(store: DatabaseJobs, clock: Clock) -> Iterator[JobRunner]:
    made = JobRunner(Settings(job_workers=1, job_lease_s=LEASE_S), clock=clock, jobs=store)
    try:
        yield made
    finally:
        made.stop(grace_s=5)


def the_job(job_id: str) -> Job:
    [found] = jobs.jobs_by_id([job_id]).values()
    return found


def test_a_run_is_recorded_with_its_result_once_the_database_is_back(job_id: str, clock: Clock) -> None:
    away = DatabaseFault(Unavailable("the database is unavailable (database is locked); try again shortly"))
    store = FailingToFinish([away, away, away])
    with runner(store, clock) as running:
        assert running.claim_once() == 1
        store.wait_for_calls(4)
    ended = the_job(job_id)
    assert (ended.state, ended.code, ended.output) == (JobState.COMPLETED, JobCode.JOB_SUCCESS, {"n": 1})


def test_an_error_that_is_not_the_databases_leaves_the_job_to_the_reaper(job_id: str, clock: Clock) -> None:
    store = FailingToFinish([RuntimeError("a bug in ending jobs")])
    with runner(store, clock) as running:
        assert running.claim_once() == 1
        store.wait_for_calls(1)
        assert the_job(job_id).state == JobState.RUNNING  # not tried again
        clock.now_ms = NOW_MS + int(LEASE_S * 1000) + 1  # its lease has lapsed: nobody renews it
        running.reap_once()
        ended = the_job(job_id)
    assert store.finish_calls == 1
    assert (ended.state, ended.code) == (JobState.ERROR, JobCode.ZOMBIE_PROCESS)

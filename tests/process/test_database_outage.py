"""The database goes away under two `hookline serve` processes sharing it — a
restart, a stop of some seconds, every connection terminated — while jobs are
started, run and delivered. Calls meanwhile fail UNAVAILABLE (never INTERNAL),
health says NOT_SERVING, and once it is back work resumes by itself: every
acknowledged job ends with its real outcome and is delivered.

The database is a throwaway cluster of the test's own, so the shared server is
never disturbed."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hookline.client import Client, JobState, ListJobsRequest, StartJobRequest

from .conftest import BACKEND, Process, Storage, ThrowawayPostgres, all_pages, client_of, eventually, job_flow

pytestmark = pytest.mark.skipif(BACKEND != "postgresql", reason="PostgreSQL's outages; the SQLite run has its own")

# Leases shorter than the longest outage below, so a lease lapses while the
# database is away: the run's real outcome must still be what is recorded.
FLAGS = ("--job-lease", "3s", "--delivery-lease", "5s", "--request-timeout", "2")


@dataclass
class Starter:
    """Starts jobs on `clients` in turn, one every `every_s`, until stopped;
    keeps the ids acknowledged and the codes of the calls refused."""

    clients: list[Client]
    flow: str
    every_s: float = 0.02
    acknowledged: list[str] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    first_ok_after: dict[float, float] = field(default_factory=dict)  # mark -> time of first OK after it
    _marks: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def mark(self) -> float:
        """From now, note when the next call succeeds."""
        now = time.monotonic()
        self._marks.append(now)
        return now

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.every_s):
            n += 1
            try:
                job = self.clients[n % len(self.clients)].jobs.StartJob(StartJobRequest(flow=self.flow), timeout=20)
            except grpc.RpcError as error:
                self.refused[error.code().name] += 1
                continue
            self.acknowledged.append(job.id)
            for mark in self._marks:
                self.first_ok_after.setdefault(mark, time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def health_of(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=2).status
        except grpc.RpcError:
            return -1


NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING


@pytest.fixture
def cluster_storage(throwaway_postgres: ThrowawayPostgres, tmp_path: Path) -> Iterator[Storage]:
    url = throwaway_postgres.create_database(f"hookline_{uuid.uuid4().hex[:8]}")
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    yield Storage(tmp_path / "data", url, {**os.environ, "HOOKLINE_MASTER_KEY": key})


def _fault(kind: str, cluster: ThrowawayPostgres, storage: Storage, processes: list[Process]) -> None:
    """Make the fault happen; returns once the database is back."""
    if kind == "restart":
        cluster.restart()
    elif kind == "down 5 s":
        cluster.stop()
        try:
            # While it is away both processes say so, and calls are refused.
            eventually(lambda: all(health_of(p.address) == NOT_SERVING for p in processes), 5, "NOT_SERVING reported")
            time.sleep(5 - 1)  # the outage itself lasts; nothing here waits for an event
        finally:
            cluster.start()
    else:
        database = str(storage.database).rsplit("/", 1)[1]
        assert cluster.terminate_connections(database) > 0


@pytest.mark.parametrize("kind", ["restart", "down 5 s", "connections terminated"])
def test_work_resumes_after_the_database_comes_back(  # type: ignore[no-untyped-def]
    kind, throwaway_postgres, cluster_storage, tmp_path, receiver
):
    processes = [Process(cluster_storage, f"p{i}", "all", tmp_path, FLAGS) for i in range(2)]
    try:
        client = client_of(processes[0])
        path = f"/outage-{kind.replace(' ', '-')}"
        job_flow(client, receiver, path, sleep_ms=200)  # jobs are in flight when it happens
        starter = Starter([client_of(processes[0], p.address) for p in processes], path.strip("/") + "-flow")
        eventually(lambda: len(starter.acknowledged) >= 50, 30, "jobs started before the fault")

        _fault(kind, throwaway_postgres, cluster_storage, processes)
        back = starter.mark()
        eventually(lambda: back in starter.first_ok_after, 30, "a StartJob answered OK after the database returned")
        eventually(lambda: len(starter.acknowledged) >= 150, 60, "jobs started after the fault")
        starter.stop()

        # Every acknowledged job ends with its real outcome and reaches its receiver.
        job_ids = set(starter.acknowledged)

        def delivered() -> set[str]:
            return {json.loads(r.body)["data"]["jobId"] for r in receiver.at(path)}

        eventually(lambda: job_ids <= delivered(), 60, "every acknowledged job delivered")
        settled = time.monotonic()
        jobs = all_pages(client.jobs.ListJobs, ListJobsRequest(), "jobs")
        states = Counter(JobState.Name(j.state) for j in jobs if j.id in job_ids)
        assert states == {"JOB_STATE_COMPLETED": len(job_ids)}
        events = Counter(json.loads(r.body)["eventType"] for r in receiver.at(path))
        assert set(events) == {"JOB.COMPLETED"}

        # Calls during the outage were refused as the caller's to retry, never INTERNAL.
        assert set(starter.refused) <= {"UNAVAILABLE"}, starter.refused
        assert all(health_of(p.address) == SERVING for p in processes)
        for p in processes:
            assert "Traceback" not in p.log_path.read_text(), p.log_path.read_text()[-3000:]
        print(
            f"\n{kind}: first StartJob OK {starter.first_ok_after[back] - back:.2f} s after the database was back, "
            f"all {len(job_ids)} jobs delivered {settled - back:.2f} s after; refused meanwhile: "
            f"{dict(starter.refused) or 'none'}"
        )
    finally:
        for p in processes:
            p.stop()

"""Several `hookline serve` processes on one PostgreSQL: streams cross processes
and resume without gaps; a process killed mid-run loses nothing and repeats no
more than it had in flight."""

from __future__ import annotations

import base64
import os
import random
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from conftest import postgres_database

from hookline.client import (
    DeliveryEventKind,
    DeliveryState,
    JobState,
    ListDeliveriesRequest,
    ListEventsRequest,
    ListJobsRequest,
    StartJobRequest,
    WatchDeliveriesRequest,
)

from .conftest import BACKEND, Process, Storage, StreamReader, all_pages, client_of, job_flow

pytestmark = pytest.mark.skipif(BACKEND != "postgresql", reason="several processes share PostgreSQL, not SQLite")

KIND = DeliveryEventKind


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[Storage]:
    """A database of its own for each test: each starts from an empty one."""
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with postgres_database() as url:
        yield Storage(tmp_path / "data", url, {**os.environ, "HOOKLINE_MASTER_KEY": key})


@pytest.fixture
def processes(storage: Storage, tmp_path: Path) -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for p in started:
        p.stop()


def test_a_stream_on_one_process_sees_deliveries_made_by_another(storage, processes, tmp_path, receiver):  # type: ignore[no-untyped-def]
    api = Process(storage, "api", "api", tmp_path)
    processes.append(api)
    worker = Process(storage, "worker", "worker", tmp_path)
    processes.append(worker)
    client = client_of(api)
    webhook_id = job_flow(client, receiver, "/cross")

    reader = StreamReader(client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=webhook_id)))
    seen = reader.seen
    time.sleep(0.5)
    for _ in range(5):
        client.jobs.StartJob(StartJobRequest(flow="cross-flow"))  # the api process runs no jobs: the worker does
    receiver.wait_for("/cross", 5, timeout=30)
    deadline = time.monotonic() + 10
    while sum(m.kind == KIND.DELIVERY_EVENT_KIND_SUCCEEDED for m in seen) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    reader.stop()
    kinds = [m.kind for m in seen]
    assert kinds[0] == KIND.DELIVERY_EVENT_KIND_SYNC
    assert kinds.count(KIND.DELIVERY_EVENT_KIND_SUCCEEDED) == 5
    assert kinds.count(KIND.DELIVERY_EVENT_KIND_QUEUED) == 5

    # Resume from the third message: exactly what followed it, in order, then live.
    changes = [m for m in seen if m.kind != KIND.DELIVERY_EVENT_KIND_SYNC]
    resumed: list = []
    stream = client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=webhook_id, cursor=changes[2].cursor))
    for message in stream:
        if message.kind != KIND.DELIVERY_EVENT_KIND_SYNC:
            resumed.append(message)
        if len(resumed) == len(changes) - 3:
            break
    stream.cancel()
    assert [(m.cursor, m.kind, m.delivery.id) for m in resumed] == [
        (m.cursor, m.kind, m.delivery.id) for m in changes[3:]
    ]


def test_killing_one_of_three_processes_loses_nothing(storage, processes, tmp_path, receiver):  # type: ignore[no-untyped-def]
    jobs = 2000
    for name in ("p1", "p2", "p3"):
        processes.append(Process(storage, name, "all", tmp_path))
    client = client_of(processes[0])
    job_flow(client, receiver, "/chaos", sleep_ms=5)
    clients = [client_of(processes[0], p.address) for p in processes]

    def start(n: int) -> str:
        return clients[n % 3].jobs.StartJob(StartJobRequest(flow="chaos-flow")).id

    with ThreadPoolExecutor(16) as pool:
        job_ids = set(pool.map(start, range(jobs)))

    deadline = time.monotonic() + 120
    while len(receiver.requests) < jobs // 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = random.choice(processes)
    victim.kill()
    [(in_flight,)] = storage.query("SELECT COUNT(*) FROM delivery WHERE state = 'SENDING'")
    [(running,)] = storage.query("SELECT COUNT(*) FROM job WHERE state IN ('RUNNING', 'CANCELING')")
    survivor = clients[(processes.index(victim) + 1) % 3]

    def settled() -> bool:
        for state in (JobState.JOB_STATE_WAITING, JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_CANCELING):
            if survivor.jobs.ListJobs(ListJobsRequest(state=state, page_size=1)).jobs:
                return False
        for state in (DeliveryState.DELIVERY_STATE_PENDING, DeliveryState.DELIVERY_STATE_SENDING):
            if survivor.webhooks.ListDeliveries(ListDeliveriesRequest(state=state, page_size=1)).deliveries:
                return False
        return True

    deadline = time.monotonic() + 300
    while not settled():
        assert time.monotonic() < deadline, "jobs and deliveries did not settle"
        time.sleep(0.5)

    events = {
        e.job_id: e.id
        for e in all_pages(survivor.webhooks.ListEvents, ListEventsRequest(), "events")
        if e.event_type.startswith("JOB.")
    }
    assert set(events) == job_ids
    arrivals = Counter(r.headers["webhook-id"] for r in receiver.requests if r.path == "/chaos")
    missing = set(events.values()) - set(arrivals)
    duplicates = sum(arrivals.values()) - len(arrivals)
    print(
        f"\nchaos test: {jobs} jobs on 3 processes, one killed; expected {len(events)} (event, webhook) pairs, "
        f"arrived {len(events) - len(missing)}, duplicates {duplicates}, in flight at the kill {in_flight}, "
        f"jobs running at the kill {running}"
    )
    assert not missing
    assert duplicates <= in_flight
    failed = all_pages(
        survivor.webhooks.ListDeliveries, ListDeliveriesRequest(state=DeliveryState.DELIVERY_STATE_FAILED), "deliveries"
    )
    assert failed == []


def test_a_worker_process_says_where_the_api_is(storage, processes, tmp_path):  # type: ignore[no-untyped-def]
    processes.append(api := Process(storage, "api", "api", tmp_path))
    processes.append(worker := Process(storage, "worker", "worker", tmp_path))
    with client_of(api, worker.address) as client:
        for call in (
            lambda: client.jobs.ListJobs(ListJobsRequest()),
            lambda: next(iter(client.webhooks.WatchDeliveries(WatchDeliveriesRequest()))),
        ):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.UNIMPLEMENTED
            assert "--role worker" in refused.value.details() and "--role api" in refused.value.details()

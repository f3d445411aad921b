"""Crash safety: `hookline serve` is SIGKILLed in the middle of 500 jobs and
restarted. Every (event, webhook) pair still arrives at least once, jobs that
were RUNNING end ERROR/ZOMBIE_PROCESS with their event sent, and nothing stays
RUNNING, SENDING or PENDING."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from google.protobuf import struct_pb2

from hookline.client import (
    Client,
    CreateFlowRequest,
    CreateWebhookRequest,
    DeliveryState,
    Flow,
    GetJobRequest,
    JobState,
    JobStatusCode,
    ListDeliveriesRequest,
    ListEventsRequest,
    ListJobsRequest,
    StartJobRequest,
    Webhook,
)

from .conftest import RestartableServer, Storage, all_pages, eventually

JOBS = 500
PATHS = ("/crash-a", "/crash-b")
CRASH_FLAGS = (
    "--allow-target", "127.0.0.0/8", "--retry-schedule", "0,200ms,500ms,1s,1s,2s,5s",
    "--job-lease", "1s", "--job-workers", "4", "--request-timeout", "2", "--delivery-lease", "4s",
)  # fmt: skip


@pytest.fixture
def server(storage: Storage, tmp_path: Path) -> Iterator[RestartableServer]:
    s = RestartableServer(storage, tmp_path / "serve.log", CRASH_FLAGS)
    s.start()
    yield s
    s.stop()


def test_a_killed_server_loses_nothing(server: RestartableServer, receiver) -> None:  # type: ignore[no-untyped-def]
    client = Client(server.address, (server.storage.data_dir / "admin.key").read_text().strip())
    hooks = [
        client.webhooks.CreateWebhook(
            CreateWebhookRequest(
                webhook=Webhook(alias=f"crash{i}", url=receiver.url(p), event_types=["JOB.COMPLETED", "JOB.ERROR"])
            )
        ).webhook
        for i, p in enumerate(PATHS)
    ]
    definition = struct_pb2.Struct()
    definition.update({"steps": [{"sleep_ms": 50}, {"transform": "{n: n}"}]})
    client.flows.CreateFlow(
        CreateFlowRequest(flow=Flow(alias="crash", definition=definition, webhook_ids=[h.id for h in hooks]))
    )

    def start(n: int) -> str:
        job_input = struct_pb2.Value()
        job_input.struct_value.update({"n": n})
        return client.jobs.StartJob(StartJobRequest(flow="crash", input=job_input)).id

    with ThreadPoolExecutor(8) as pool:
        job_ids = list(pool.map(start, range(JOBS)))

    # Kill it in the middle: some messages sent, jobs running, deliveries in flight.
    eventually(lambda: len(receiver.requests) >= 150, 60, "150 messages did not arrive", every=0.2)
    server.kill()
    running = {r[0] for r in server.storage.query("SELECT id FROM job WHERE state IN ('RUNNING', 'CANCELING')")}
    [(waiting,)] = server.storage.query("SELECT COUNT(*) FROM job WHERE state = 'WAITING'")
    assert running and waiting, "the kill should land while jobs run and wait"

    server.start()
    client.close()
    client = Client(server.address, (server.storage.data_dir / "admin.key").read_text().strip())

    def settled() -> bool:
        unfinished = [
            s
            for s in (JobState.JOB_STATE_WAITING, JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_CANCELING)
            if all_pages(client.jobs.ListJobs, ListJobsRequest(state=s), "jobs")
        ]
        pending = [
            s
            for s in (DeliveryState.DELIVERY_STATE_PENDING, DeliveryState.DELIVERY_STATE_SENDING)
            if all_pages(client.webhooks.ListDeliveries, ListDeliveriesRequest(state=s), "deliveries")
        ]
        return not unfinished and not pending

    eventually(settled, 120, "jobs and deliveries did not settle", every=0.2)

    events = all_pages(client.webhooks.ListEvents, ListEventsRequest(), "events")
    job_events = {e.job_id: e.id for e in events if e.event_type.startswith("JOB.")}
    assert set(job_events) == set(job_ids), "every job ended with its event"
    expected = {(event_id, path) for event_id in job_events.values() for path in PATHS}
    arrivals = Counter((r.headers["webhook-id"], r.path) for r in receiver.requests if r.path in PATHS)
    missing = expected - set(arrivals)
    duplicates = sum(arrivals.values()) - len(arrivals)
    print(
        f"\ncrash test: expected {len(expected)} (event, webhook) pairs, arrived {len(expected) - len(missing)}, "
        f"duplicates {duplicates}, jobs running at the kill {len(running)}"
    )
    assert not missing

    for job_id in running:
        job = client.jobs.GetJob(GetJobRequest(id=job_id))
        assert (job.state, job.code) == (JobState.JOB_STATE_ERROR, JobStatusCode.ZOMBIE_PROCESS)
        body = json.loads(next(r.body for r in receiver.requests if r.headers["webhook-id"] == job_events[job_id]))
        assert body["data"]["status"] == {
            "state": "ERROR",
            "code": "ZOMBIE_PROCESS",
            "message": job.message,
        }
    client.close()


def _descendants(pid: int) -> set[int]:
    """Every live process below `pid`."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended meanwhile
        if fields[0] != "Z":
            parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: set[int] = set()
    below = [pid]
    while below:
        children = parents.get(below.pop(), [])
        found.update(children)
        below.extend(children)
    return found


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _alive(pids: set[int]) -> set[int]:
    alive = set()
    for pid in pids:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                alive.add(pid)
        except OSError:
            pass
    return alive


def test_a_killed_server_leaves_no_process_behind_even_one_computing(server: RestartableServer) -> None:
    client = Client(server.address, (server.storage.data_dir / "admin.key").read_text().strip())
    shared = "|".join(["[@, @]"] * 40)
    definition = struct_pb2.Struct()
    definition.update({"steps": [{"transform": f"{{p: {shared}, q: {shared}}} | p == q"}]})  # hours of CPU
    client.flows.CreateFlow(CreateFlowRequest(flow=Flow(alias="forever", definition=definition)))
    job_input = struct_pb2.Value()
    job_input.struct_value.SetInParent()  # {}: on null every step is null at once
    job = client.jobs.StartJob(StartJobRequest(flow="forever", input=job_input))
    eventually(
        lambda: client.jobs.GetJob(GetJobRequest(id=job.id)).state == JobState.JOB_STATE_RUNNING, 10, "it did not run"
    )
    client.close()
    assert server.process is not None
    below = _descendants(server.process.pid)  # delivery process, job workers and their fork server
    started = {pid: _cpu_s(pid) for pid in below}
    eventually(lambda: any(_cpu_s(pid) - started[pid] > 0.3 for pid in below), 10, "no worker computed")
    server.kill()
    eventually(lambda: not _alive(below), 10, f"processes {_alive(below)} outlived the server")

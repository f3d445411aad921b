"""The embedded database's disk fills up: calls that must write are refused
RESOURCE_EXHAUSTED with a message saying so (never INTERNAL), reads still
work, every job acknowledged before keeps its place, and once space is freed
everything carries on by itself: the jobs run and are delivered.

The data dir is a 20 MB filesystem of the test's own (tmpfs), which takes root
to mount; CI runs as root."""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from conftest import BACKEND

from hookline.client import GetJobRequest, GetWebhookRequest, JobState, ListJobsRequest
from hookline.server.settings import Settings

from .helpers import make_flow, make_webhook, rpc_error, start_job

pytestmark = [
    pytest.mark.skipif(BACKEND != "sqlite", reason="the embedded database's disk; the PostgreSQL run has its own"),
    pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small filesystem takes root (CI runs as root)"),
]


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    mount = tmp_path_factory.mktemp("small-disk")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings], small_disk: Path) -> Settings:
    return make_settings(data_dir=small_disk / "data")


def fill(disk: Path) -> Path:
    """Write a file until the disk has no room left, to the last block; returns it."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_refuses_writes_clearly_keeps_what_was_acknowledged_and_recovers(  # type: ignore[no-untyped-def]
    client, receiver, small_disk
):
    hook = make_webhook(client, receiver.url("/disk"), event_types=["JOB.COMPLETED"]).webhook
    # Jobs wait behind a long step, so some are still to run when the disk fills.
    flow = make_flow(client, [{"sleep_ms": 300}, {"transform": "@"}], webhook_ids=[hook.id])
    before = [start_job(client, flow.id, {"n": n, "pad": "x" * 2000}).id for n in range(40)]

    filler = fill(small_disk)
    refused = []
    for n in range(30):
        try:
            start_job(client, flow.id, {"n": n, "pad": "y" * 20_000})
        except grpc.RpcError as error:
            refused.append(error)
    assert refused, "the disk filled up but every StartJob was written"
    assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all("disk holding the database is full" in e.details() for e in refused), refused[0].details()
    # Reads are not writes: they still answer.
    assert client.jobs.GetJob(GetJobRequest(id=before[0])).id == before[0]
    client.jobs.ListJobs(ListJobsRequest(page_size=10))

    filler.unlink()
    after = start_job(client, flow.id, {"n": "after"}).id
    acknowledged = {*before, after}
    arrived = receiver.wait_for("/disk", len(acknowledged), timeout=60)
    assert {json.loads(r.body)["data"]["jobId"] for r in arrived} >= acknowledged
    for job_id in acknowledged:
        job = client.jobs.GetJob(GetJobRequest(id=job_id))
        assert job.state == JobState.JOB_STATE_COMPLETED, (job_id, job.code, job.message)


def test_a_write_refused_for_want_of_space_leaves_nothing_behind(client, small_disk):  # type: ignore[no-untyped-def]
    """A CreateWebhook refused for want of space made nothing: the webhook is not
    found, and creating it again once there is room works (no ALREADY_EXISTS)."""
    filler = fill(small_disk)
    try:
        # Writes go on into the space SQLite's log already holds, until that is used up too.
        for n in range(1000):
            alias = f"full-disk-{n}"
            try:
                make_webhook(client, "http://127.0.0.1:9/x", alias=alias, description="d" * 1000)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error.details()
                break
        else:
            raise AssertionError("1000 webhooks were written to a full disk")
        rpc_error(grpc.StatusCode.NOT_FOUND, client.webhooks.GetWebhook, GetWebhookRequest(id=alias))
    finally:
        filler.unlink()
    assert make_webhook(client, "http://127.0.0.1:9/x", alias=alias).webhook.alias == alias

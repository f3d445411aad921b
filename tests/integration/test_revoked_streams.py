"""Revoking a key ends its open streams (WatchDeliveries and WatchJob) with
UNAUTHENTICATED within seconds, and nothing committed after the revocation
reaches them; other keys' streams go on. (Revocation by another process, the
CLI, is in tests/cli/test_commands.py.)"""

from __future__ import annotations

import grpc
from conftest import Watching

from hookline.client import (
    CancelJobRequest,
    DeliveryEventKind,
    JobState,
    SendTestEventRequest,
    WatchDeliveriesRequest,
    WatchJobRequest,
)
from hookline.server.storage import deliveries, spaces
from hookline.server.streams import decode_cursor

from .helpers import make_flow, make_webhook, start_job, unique, wait_job

SYNC = DeliveryEventKind.DELIVERY_EVENT_KIND_SYNC
SUCCEEDED = DeliveryEventKind.DELIVERY_EVENT_KIND_SUCCEEDED


def new_key(connect, role="management"):  # type: ignore[no-untyped-def]
    key = spaces.create_key(spaces.space_id_by_name(spaces.DEFAULT_SPACE), role)
    return key, connect(key.token)


def succeeded(delivery_id: str):  # type: ignore[no-untyped-def]
    return lambda ms: any(m.delivery.id == delivery_id and m.kind == SUCCEEDED for m in ms)


def assert_ended_revoked(watching: Watching) -> None:
    error = watching.ended(timeout=10)
    assert error is not None, "the stream ended without an error"
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED, error.code()
    assert "revoked" in error.details()


def test_revoking_a_key_ends_its_delivery_streams(client, connect, receiver):
    hook = make_webhook(client, receiver.url("/" + unique("rv"))).webhook
    key, holder = new_key(connect)
    space_wide = Watching(holder.webhooks.WatchDeliveries(WatchDeliveriesRequest(), timeout=60))
    filtered = Watching(holder.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=hook.id), timeout=60))
    other = Watching(client.webhooks.WatchDeliveries(WatchDeliveriesRequest(webhook_id=hook.id), timeout=60))
    for watching in (space_wide, filtered, other):
        watching.wait_for(lambda ms: bool(ms), what="the first SYNC")
    before = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))
    for watching in (space_wide, filtered):
        watching.wait_for(succeeded(before.delivery.id), what="a delivery before the revocation")

    spaces.revoke_key(key.key_id)
    revoked_at = deliveries.last_change_seq()
    after = client.webhooks.SendTestEvent(SendTestEventRequest(id=hook.id))  # committed after it

    for watching in (space_wide, filtered):
        assert_ended_revoked(watching)
        changes = [m for m in watching.messages if m.kind != SYNC]
        assert all(decode_cursor(m.cursor) <= (revoked_at, 0) for m in changes)
        assert after.delivery.id not in {m.delivery.id for m in changes}
    other.wait_for(succeeded(after.delivery.id), what="the other key's stream going on")
    other.stop()


def test_revoking_a_key_ends_its_job_streams(client, connect):
    flow = make_flow(client, [{"sleep_ms": 30_000}])
    job = start_job(client, flow.id)
    wait_job(client, job.id, JobState.JOB_STATE_RUNNING)
    key, holder = new_key(connect, "solver")
    watching = Watching(holder.jobs.WatchJob(WatchJobRequest(id=job.id), timeout=60))
    watching.wait_for(lambda ms: bool(ms), what="the job's state")

    spaces.revoke_key(key.key_id)
    client.jobs.CancelJob(CancelJobRequest(id=job.id))  # a change committed after the revocation

    assert_ended_revoked(watching)
    assert [m.state for m in watching.messages] == [JobState.JOB_STATE_RUNNING]
    wait_job(client, job.id)


def test_a_key_revoked_while_no_change_happens_still_ends_its_streams(client, connect):
    key, holder = new_key(connect)
    watching = Watching(holder.webhooks.WatchDeliveries(WatchDeliveriesRequest(), timeout=60))
    watching.wait_for(lambda ms: bool(ms), what="the first SYNC")
    spaces.revoke_key(key.key_id)
    assert_ended_revoked(watching)

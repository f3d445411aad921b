"""The two live streams: WatchDeliveries (the delivery change log, resumable by
cursor) and WatchJob. Both wake on in-process notifications and poll as a
fallback, so they also see writes made by other processes."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from .errors import InvalidArgument, OutOfRange
from .notify import hub
from .storage import deliveries, jobs, retention
from .storage.database import release_connection
from .storage.records import Change, Job


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"c1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, seq = text.partition(":")
        if prefix != "c1" or not seq.isdigit():
            raise ValueError
        return int(seq)
    except ValueError:
        raise InvalidArgument.field("cursor", "is not a cursor this service issued") from None


@dataclass
class StreamItem:
    """One message of WatchDeliveries: a change, or a SYNC (change is None)."""

    cursor: str
    change: Change | None


def watch_deliveries(
    space_id: str,
    *,
    webhook_id: str,
    flow_id: str,
    job_id: str,
    cursor: str,
    alive: Callable[[], bool],
    stopping: threading.Event,
    poll_s: float,
    heartbeat_s: float,
) -> Iterator[StreamItem]:
    if cursor:
        seq = decode_cursor(cursor)
        if seq > deliveries.last_change_seq():
            raise InvalidArgument.field("cursor", "is ahead of this service's change log")
        if seq < retention.changes_purged_through():
            raise OutOfRange("the cursor is older than the retained change log; start again without one")
    else:
        seq = deliveries.last_change_seq()
    yield StreamItem(encode_cursor(seq), None)
    last_sent = time.monotonic()
    while alive() and not stopping.is_set():
        version = hub.version("changes")
        changes, reached = deliveries.changes_after(
            space_id, seq, webhook_id=webhook_id, flow_id=flow_id, job_id=job_id
        )
        for change in changes:
            yield StreamItem(encode_cursor(change.seq), change)
            last_sent = time.monotonic()
        moved = reached != seq
        seq = reached
        if moved:
            continue  # there may be more right behind
        silent = time.monotonic() - last_sent
        if silent >= heartbeat_s:
            yield StreamItem(encode_cursor(seq), None)
            last_sent = time.monotonic()
            continue
        release_connection()  # not held while waiting
        hub.wait("changes", version, min(poll_s, heartbeat_s - silent))


def watch_job(
    space_id: str,
    job_id: str,
    *,
    alive: Callable[[], bool],
    stopping: threading.Event,
    poll_s: float,
) -> Iterator[Job]:
    job = jobs.get_job(space_id, job_id)
    yield job
    while not job.finished and alive() and not stopping.is_set():
        version = hub.version("jobs")
        current = jobs.get_job(space_id, job_id)
        if (current.state, current.code) != (job.state, job.code):
            job = current
            yield job
            continue
        release_connection()
        hub.wait("jobs", version, poll_s)

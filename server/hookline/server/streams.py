"""The two live streams: WatchDeliveries (the delivery change log, resumable by
cursor) and WatchJob. Each follows what its process's feed (feeds.py) reads
once for every stream, so they see writes made by other processes too, and a
revoked key's streams end UNAUTHENTICATED. They are generators that never
block waiting: they yield a Wait instead (api/senders.py runs them)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from .errors import FieldViolation, InvalidArgument, OutOfRange
from .feeds import FILTERS, ChangeFeed, Dropped, JobFeed, StreamClosed, Subscription, Wait
from .storage import deliveries, jobs, spaces
from .storage.database import release_connection
from .storage.records import Change, Job, Principal


def encode_cursor(seq: int, within: int = 0) -> str:
    """The cursor of a position in the change log: every entry up to `seq`, and
    `within` changes of the entry after it (one that stands for two changes)."""
    text = f"c1:{seq}" if not within else f"c1:{seq}:{within}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """(seq, within) of encode_cursor."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, *numbers = text.split(":")
        if prefix != "c1" or not 1 <= len(numbers) <= 2 or not all(n.isdigit() for n in numbers):
            raise ValueError
        return int(numbers[0]), int(numbers[1]) if len(numbers) == 2 else 0
    except ValueError:
        raise InvalidArgument.field("cursor", "is not a cursor this service issued") from None


_START_AGAIN = "start again without a cursor, and catch up with ListDeliveries"


def _require_retained(seq: int, *, from_request: bool) -> None:
    """OUT_OF_RANGE if retention has purged changes after position `seq`: the
    stream cannot go on from it without a gap. Read after the changes read
    from `seq`, so a purge that overtook them is seen."""
    if seq >= deliveries.changes_purged_through():
        return
    if from_request:
        raise OutOfRange(
            f"the cursor is older than the retained change log (the changes after it were purged); {_START_AGAIN}",
            [FieldViolation("cursor", "is older than the retained change log")],
        )
    raise OutOfRange(
        f"the stream fell behind the retained change log (changes it had yet to send were purged); {_START_AGAIN}"
    )


@dataclass
class StreamItem:
    """One message of WatchDeliveries: a change, or a SYNC (change is None)."""

    cursor: str
    change: Change | None


def watch_deliveries(
    feed: ChangeFeed,
    caller: Principal,
    *,
    webhook_id: str,
    flow_id: str,
    job_id: str,
    cursor: str,
    on_end: Callable[[Callable[[], None]], object],
    heartbeat_s: float,
) -> Iterator[StreamItem | Wait]:
    """SYNC with the cursor, then every matching change after it: those already
    in the log read here, then those the process's change feed hands over, with
    a SYNC after each `heartbeat_s` of silence, and a Wait (feeds.py) whenever
    there is nothing to send yet. `on_end(callback)` has the callback called
    when the call ends (the client went away)."""
    within = 0  # changes of the entry after seq sent already
    if cursor:
        seq, within = decode_cursor(cursor)
        if seq + bool(within) > deliveries.last_change_seq():
            raise InvalidArgument.field("cursor", "is ahead of this service's change log")
        _require_retained(seq, from_request=True)
    else:
        seq = deliveries.last_change_seq()
    yield StreamItem(encode_cursor(seq, within), None)
    field, value = next(((f, v) for f, v in zip(FILTERS, (webhook_id, flow_id, job_id), strict=True) if v), ("", ""))
    filters = dict(webhook_id=webhook_id, flow_id=flow_id, job_id=job_id)
    behind = bool(cursor)  # else seq is where the log ends
    try:
        while True:
            if behind:  # read what is in the log on our own: the feed hands over only what is new
                seq = yield from _replay(caller, seq, deliveries.last_change_seq(), filters, within)
                within = 0
            subscription = feed.subscribe(caller.key_id, caller.space_id, seq, field=field, value=value)
            if on_end(subscription.close) is False:
                subscription.close()  # it has ended already
            try:
                seq = yield from _replay(caller, seq, subscription.start, filters)  # read by the feed before
                release_connection()  # not held while waiting
                seq = yield from _follow(subscription, seq, heartbeat_s)
            finally:
                feed.remove(subscription)
            behind = True  # the feed dropped the stream: it fell too far behind
    except StreamClosed:
        return


def _replay(
    caller: Principal, seq: int, through: int, filters: dict[str, str], within: int = 0
) -> Generator[StreamItem | Wait, None, int]:
    """The changes after `seq` (and the first `within` changes of the entry after
    it) up to `through`, read from the log here; returns `through`."""
    after = (seq, within)
    while seq < through:
        changes, reached = deliveries.changes_after(caller.space_id, seq, through=through, **filters)  # type: ignore[arg-type]
        spaces.require_active(caller.key_id)  # read after them: none committed after a revocation
        _require_retained(seq, from_request=False)
        seq = reached
        for change in changes:
            if change.position > after:
                yield StreamItem(encode_cursor(*change.position), change)
    return seq


def _follow(subscription: Subscription, seq: int, heartbeat_s: float) -> Generator[StreamItem | Wait, None, int]:
    """What the feed hands `subscription`, and heartbeats, with a Wait whenever
    there is nothing yet; returns the position reached once the feed dropped it."""
    last_sent = time.monotonic()
    while True:
        try:
            batch = subscription.poll(heartbeat=time.monotonic() - last_sent >= heartbeat_s)
        except Dropped:
            return seq
        if batch is None:
            yield Wait(subscription, last_sent + heartbeat_s)
            continue
        for change in batch.items:
            yield StreamItem(encode_cursor(*change.position), change)
        seq = batch.reached
        if not batch.items:  # silent for heartbeat_s
            yield StreamItem(encode_cursor(seq), None)
        last_sent = time.monotonic()


def watch_job(
    feed: JobFeed,
    caller: Principal,
    job_id: str,
    *,
    on_end: Callable[[Callable[[], None]], object],
) -> Iterator[Job | Wait]:
    """The job's current state, then each new one, ending at a terminal state;
    a Wait whenever there is nothing new yet."""
    job = jobs.get_job(caller.space_id, job_id)
    yield job
    if job.finished:
        return
    release_connection()
    subscription = feed.subscribe(caller.key_id, job)
    if on_end(subscription.close) is False:
        subscription.close()
    try:
        while not job.finished:
            batch = subscription.poll()
            if batch is None:
                yield Wait(subscription, None)
                continue
            for job in batch.items:
                yield job
    except StreamClosed:
        return
    finally:
        feed.remove(subscription)

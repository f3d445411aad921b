"""One reader per process for each kind of live stream, so that a change costs
about one query however many streams watch, and a waiting stream costs nothing.

ChangeFeed reads each new stretch of the delivery change log once and hands
every WatchDeliveries stream the entries its filter matches (found through an
index by space and filter, not by asking each stream); JobFeed reads every job
a WatchJob stream watches in one query when jobs change. A stream waits on its
Subscription (parked, see api/senders.py): no query and no poll of its own, its
heartbeat a deadline. A feed wakes on the hub's topic (commits in this process, NOTIFY
from others on PostgreSQL, the delivery process's relay on the embedded
database) and polls, once for all its streams, as the fallback.

Revoked keys: a feed reads which keys of the streams it is about to hand
something to are still active *after* reading what it hands them, so a key
revoked before a change committed is seen revoked and the change is not sent.
It also checks every stream's key when a revocation is announced (the "keys"
topic: in this process, or by NOTIFY from another one), when the revocation
counter beside the embedded database moves (`hookline keys revoke` in another
process), and every KEY_CHECK_S regardless. A revoked key's streams end with
UNAUTHENTICATED."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .errors import HooklineError, NotFound, shown
from .notify import hub
from .storage import deliveries, jobs, revocations, spaces
from .storage.database import FaultLog, release_connection
from .storage.records import Change, Job

log = logging.getLogger("hookline.feeds")

# Entries read from the change log at a time.
BATCH = 500
# A stream that falls this many messages behind (its client reads slowly) is
# dropped by the feed and catches up from the change log on its own.
MAX_BUFFERED = 2000
# How often the revocation counter of the embedded database is looked at
# (a memory read), and how often every stream's key is read regardless.
COUNTER_TICK_S = 0.25
KEY_CHECK_S = 5.0
# A read that failed (the database is away) is tried again this soon.
RETRY_S = 1.0


class StreamClosed(Exception):
    """The stream's client went away, or the server is stopping."""


class Dropped(Exception):
    """The feed hands the stream nothing more (it fell too far behind, or a read
    failed): it goes on from the change log on its own."""


@dataclass
class Batch:
    """What a feed handed a stream: items, and the position they bring it to."""

    items: list[Any]
    reached: int


@dataclass
class Wait:
    """What a stream's generator yields when it has nothing to send: wake it
    when `subscription` has something, or at `deadline` (time.monotonic())."""

    subscription: Subscription
    deadline: float | None


class Subscription:
    """One stream's place in a feed: the batches handed to it, taken by the
    stream when it runs. `start` is the position the feed took it up from."""

    def __init__(self, key_id: str, start: int = 0):
        self.key_id = key_id
        self.start = start
        self._lock = threading.Lock()
        self._batches: deque[Batch] = deque()
        self._buffered = 0
        self._reached = start
        self._error: HooklineError | None = None
        self._closed = False
        self._dropped = False
        self._waker: Callable[[], None] | None = None

    # -- the feed's side

    def hand(self, items: list[Any], reached: int) -> bool:
        """Queue `items`, everything up to position `reached`; False (and the
        stream is told) if it already has too many waiting: the feed drops it."""
        with self._lock:
            if self._dropped:
                return False
            if items and self._buffered + len(items) > MAX_BUFFERED:
                self._dropped = True
                handed = False
            else:
                handed = True
                if items:
                    self._batches.append(Batch(items, reached))
                    self._buffered += len(items)
                self._reached = max(self._reached, reached)
            waker = self._take_waker() if not handed or items else None
        if waker:
            waker()
        return handed

    def drop(self) -> None:
        """The feed hands this stream nothing more: it goes on from the log on its own."""
        with self._lock:
            self._dropped = True
            waker = self._take_waker()
        if waker:
            waker()

    def end(self, error: HooklineError) -> None:
        """End the stream with `error`; nothing queued is sent any more."""
        with self._lock:
            self._error = error
            self._batches.clear()
            waker = self._take_waker()
        if waker:
            waker()

    def close(self) -> None:
        """The client went away or the server is stopping."""
        with self._lock:
            self._closed = True
            waker = self._take_waker()
        if waker:
            waker()

    def _take_waker(self) -> Callable[[], None] | None:
        waker, self._waker = self._waker, None
        return waker

    # -- the stream's side

    def poll(self, heartbeat: bool = False) -> Batch | None:
        """The next batch; if none waits, None, or with `heartbeat` an empty batch
        at the position reached. Raises the error the feed ended the stream with,
        StreamClosed, or Dropped once everything queued was taken."""
        with self._lock:
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StreamClosed
            if self._batches:
                batch = self._batches.popleft()
                self._buffered -= len(batch.items)
                return batch
            if self._dropped:
                raise Dropped
            return Batch([], self._reached) if heartbeat else None

    def park(self, waker: Callable[[], None]) -> bool:
        """Have `waker()` called once there is something to poll; False if there already is."""
        with self._lock:
            if self._batches or self._error is not None or self._closed or self._dropped:
                return False
            self._waker = waker
            return True


class Feed:
    """What both feeds share: their subscriptions, the one thread that reads for
    all of them, when it reads (woken by `topic`, or every poll_s) and when it
    checks the streams' keys."""

    topic = ""

    def __init__(self, poll_s: float):
        self._poll_s = poll_s
        self._faults = FaultLog(log)
        self._cond = threading.Condition()
        self._subscriptions: set[Subscription] = set()
        self._thread: threading.Thread | None = None
        self._hub_callbacks: list[Callable[[], None]] = []
        self._stopped = False
        self._wanted = False  # read at once (woken, or a new stream needs it)
        self._keys_wanted = False

    # -- subscriptions

    def _add(self, subscription: Subscription) -> None:
        """Take a subscription up (with self._cond held)."""
        if self._stopped:
            subscription.close()
            return
        self._subscriptions.add(subscription)
        if self._thread is None:
            self._hub_callbacks = [hub.subscribe(self.topic, self._wake), hub.subscribe("keys", self._wake_keys)]
            self._thread = threading.Thread(target=self._run, name=f"{self.topic}-feed", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    def remove(self, subscription: Subscription) -> None:
        with self._cond:
            self._discard(subscription)

    def _discard(self, subscription: Subscription) -> None:
        """Forget a subscription (with self._cond held)."""
        self._subscriptions.discard(subscription)

    def subscriptions(self) -> int:
        with self._cond:
            return len(self._subscriptions)

    def stop(self) -> None:
        """End every stream (StreamClosed) and the thread; later subscriptions are closed at once."""
        with self._cond:
            self._stopped = True
            ending = list(self._subscriptions)
            self._subscriptions.clear()
            self._cond.notify_all()
            thread, self._thread = self._thread, None
        for subscription in ending:
            subscription.close()
        for unsubscribe in self._hub_callbacks:
            unsubscribe()
        if thread is not None:
            thread.join()

    def _wake(self) -> None:
        with self._cond:
            self._wanted = True
            self._cond.notify_all()

    def _wake_keys(self) -> None:
        with self._cond:
            self._keys_wanted = True
            self._cond.notify_all()

    # -- the thread

    def _run(self) -> None:
        next_read = next_key_check = 0.0
        counted = _revocations_counted()
        while True:
            with self._cond:
                while True:
                    if self._stopped:
                        return
                    now = time.monotonic()
                    if not self._subscriptions:
                        self._idle()
                        self._cond.wait()
                        continue
                    counter = _revocations_counted()
                    read = self._wanted or now >= next_read
                    check = self._keys_wanted or counter != counted or now >= next_key_check
                    if read or check:
                        break
                    tick = now + COUNTER_TICK_S if revocations.counter() is not None else next_key_check
                    self._cond.wait(min(next_read, next_key_check, tick) - now)
                self._wanted = self._keys_wanted = False
                counted = counter
            try:
                if check:
                    next_key_check = now + KEY_CHECK_S
                    self._check_keys()
                if read:
                    next_read = now + self._poll_s
                    if self._read():
                        self._wake()  # there is more right behind
            except Exception as error:
                # A database outage must not end the feed: streams wait, the feed tries again.
                self._faults.failure(f"reading the {self.topic} feed", error)
                next_read = time.monotonic() + min(self._poll_s, RETRY_S)
            finally:
                release_connection()  # not held while waiting

    def _idle(self) -> None:
        """No stream left (with self._cond held)."""

    def _read(self) -> bool:
        """Read once and hand out what was read; True if more is waiting."""
        raise NotImplementedError

    def _check_keys(self) -> None:
        with self._cond:
            current = list(self._subscriptions)
        self._end_revoked(current)

    def _end_revoked(self, receivers: Iterable[Subscription]) -> set[Subscription]:
        """End the streams among `receivers` whose key is revoked, read now; returns them."""
        receivers = list(receivers)
        inactive = spaces.inactive_keys({s.key_id for s in receivers})
        ended = {s for s in receivers if s.key_id in inactive}
        for subscription in ended:
            subscription.end(spaces.revoked(subscription.key_id))
        if ended:
            with self._cond:
                for subscription in ended:
                    self._discard(subscription)
        return ended


def _revocations_counted() -> int:
    counter = revocations.counter()
    return counter.value() if counter is not None else 0


# --- WatchDeliveries ------------------------------------------------------------------

FILTERS = ("webhook_id", "flow_id", "job_id")


class ChangeFeed(Feed):
    """Reads the delivery change log once for every WatchDeliveries stream of the process."""

    topic = "changes"

    def __init__(self, poll_s: float):
        super().__init__(poll_s)
        self._position: int | None = None  # read up to here; None while no stream is open
        # Streams by (space, filter field, value); ("", "") for a space-wide one.
        self._index: dict[tuple[str, str, str], set[Subscription]] = defaultdict(set)
        self._keys: dict[Subscription, tuple[str, str, str]] = {}

    def subscribe(self, key_id: str, space_id: str, after: int, *, field: str = "", value: str = "") -> Subscription:
        """A stream of `space_id` (all of it, or the entries whose `field` is
        `value`), handed every matching entry after the subscription's `start`:
        `after`, or the feed's position if it is further on. The stream reads
        the entries from `after` to `start` itself."""
        assert field in ("", *FILTERS)
        with self._cond:
            if self._position is None:
                self._position = after
            subscription = Subscription(key_id, max(after, self._position))
            key = (space_id, field, value)
            self._index[key].add(subscription)
            self._keys[subscription] = key
            self._add(subscription)
        return subscription

    def _discard(self, subscription: Subscription) -> None:
        super()._discard(subscription)
        key = self._keys.pop(subscription, None)
        if key is not None:
            self._index[key].discard(subscription)
            if not self._index[key]:
                del self._index[key]

    def _idle(self) -> None:
        self._position = None  # a stream opened later starts where it asks, not from here

    def _read(self) -> bool:
        with self._cond:
            position = self._position
        if position is None:
            return False
        entries = deliveries.read_change_log(position, BATCH)
        if not entries:
            return False
        # Positions missing before the first entry were purged if retention has cut
        # the log past the feed (or, on PostgreSQL, belong to rolled-back writes).
        purged = deliveries.changes_purged_through() if entries[0].seq > position + 1 else 0
        reached = entries[-1].seq
        with self._cond:
            self._position = reached
            everyone = list(self._subscriptions)
            # A stream missing purged changes is handed nothing more: it goes on from
            # the log on its own, which refuses it (OUT_OF_RANGE) rather than skip them.
            overtaken = {s for s in everyone if s.start < purged}
            everyone = [s for s in everyone if s not in overtaken]
            handed: dict[Subscription, list[Any]] = defaultdict(list)
            for entry in entries:
                for key in (
                    (entry.space_id, "", ""),
                    (entry.space_id, "webhook_id", entry.webhook_id),
                    (entry.space_id, "flow_id", entry.flow_id),
                    (entry.space_id, "job_id", entry.job_id),
                ):
                    for subscription in self._index.get(key, ()):
                        if entry.seq > subscription.start and subscription not in overtaken:
                            handed[subscription].append(entry)
        for subscription in overtaken:
            subscription.drop()
            self.remove(subscription)
        try:
            changes, ended = self._prepare(handed)
        except Exception:
            # The position has moved on: let the streams read what they missed on their own.
            for subscription in everyone:
                subscription.drop()
                self.remove(subscription)
            raise
        dropped = []
        for subscription in everyone:
            if subscription in ended:
                continue
            items = [change for e in handed.get(subscription, ()) for change in changes[e.seq]]
            if not subscription.hand(items, reached):
                dropped.append(subscription)
        for subscription in dropped:
            self.remove(subscription)
        return len(entries) == BATCH

    def _prepare(self, handed: dict[Subscription, list[Any]]) -> tuple[dict[int, list[Change]], set[Subscription]]:
        """The Changes of each entry to hand out (one or two; their attempts read
        in one query), and the receivers ended because their key is revoked (read
        after the entries: see the module's docstring)."""
        if not handed:
            return {}, set()
        wanted = {e.seq: e for batch in handed.values() for e in batch}
        changes: dict[int, list[Change]] = defaultdict(list)
        for change in deliveries.as_changes(sorted(wanted.values(), key=_seq)):
            changes[change.seq].append(change)
        return changes, self._end_revoked(handed)


def _seq(entry: Any) -> int:
    return entry.seq


# --- WatchJob -------------------------------------------------------------------------


class JobFeed(Feed):
    """Reads every job a WatchJob stream of the process watches, in one query."""

    topic = "jobs"

    def __init__(self, poll_s: float):
        super().__init__(poll_s)
        self._watched: dict[Subscription, Job] = {}  # the state each stream last got

    def subscribe(self, key_id: str, job: Job) -> Subscription:
        """A stream handed each new state of `job` (whose current state it has
        sent); the job is read at once, in case it changed meanwhile."""
        with self._cond:
            subscription = Subscription(key_id)
            self._watched[subscription] = job
            self._add(subscription)
            self._wanted = True
        return subscription

    def _discard(self, subscription: Subscription) -> None:
        super()._discard(subscription)
        self._watched.pop(subscription, None)

    def _read(self) -> bool:
        with self._cond:
            watched = dict(self._watched)  # taken before reading: what is read is newer than each
        found = jobs.jobs_by_id({job.id for job in watched.values()})
        moved: dict[Subscription, Job] = {}
        for subscription, seen in watched.items():
            job = found.get(seen.id)
            if job is None:  # purged
                subscription.end(NotFound(f"job {shown(seen.id)} not found"))
                self.remove(subscription)
            elif (job.state, job.code) != (seen.state, seen.code):
                moved[subscription] = job
        ended = self._end_revoked(moved) if moved else set()
        for subscription, job in moved.items():
            if subscription in ended:
                continue
            with self._cond:
                if subscription in self._watched:
                    self._watched[subscription] = job
            subscription.hand([job], 0)
            if job.finished:
                self.remove(subscription)
        return False


@dataclass
class Feeds:
    """The feeds of one process."""

    changes: ChangeFeed
    jobs: JobFeed

    @classmethod
    def create(cls, poll_s: float) -> Feeds:
        return cls(ChangeFeed(poll_s), JobFeed(poll_s))

    def stop(self) -> None:
        self.changes.stop()
        self.jobs.stop()

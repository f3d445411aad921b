"""Open streams run on a few sender threads, not on a thread of their own each.

A stream's messages come from the servicer's generator, as in any gRPC
server, but its handler is non-blocking: it returns at once, and a Sender
thread advances the generator and sends each message with the callback gRPC
gives such handlers. When the generator has nothing to send it yields a
feeds.Wait; the stream is then parked, holding no thread, until its
subscription has something for it, its heartbeat is due or its client goes
away. So 100 open streams are a few threads, not 100 that compete for the
interpreter lock with the threads serving ordinary calls (with a thread each,
a change sent to 100 streams made StartJob wait behind all of them).

Sending blocks once gRPC's buffers for a client that reads slowly are full,
holding up that sender; when every sender has been held up for STUCK_S,
another starts (at most one per stream), so a slow client never delays the
others. Senders beyond the first BASE stop after IDLE_S without work."""

from __future__ import annotations

import contextvars
import heapq
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import grpc

from ..feeds import Wait
from ..storage.database import release_connection

log = logging.getLogger("hookline.api")

BASE = 2
STUCK_S = 0.05
IDLE_S = 10.0
# Messages a stream sends before the others get their turn.
TURN = 64


class _Stream:
    """One open stream: its messages, the context they are made in, and how it is sent."""

    def __init__(
        self,
        items: Generator[Any, None, Any],
        run_in: contextvars.Context,
        context: grpc.ServicerContext,
        send: Callable[[Any], None],
        done: Callable[[], None],
        status_of: Callable[[BaseException], grpc.Status],
    ):
        self.items = items
        self.run_in = run_in
        self.context = context
        self.send = send
        self.done = done
        self.status_of = status_of
        self.state = "ready"  # ready | running | parked | done
        self.woken = False  # woken while running: run again rather than park
        self.gone = False  # the call ended (the client went away, or it finished)
        self.deadline: float | None = None


class Senders:
    """The sender threads of a server, and the streams they run."""

    def __init__(self, max_streams: int):
        self._limit = max_streams + BASE  # threads at most: one per stream is always enough
        self._stopped = False
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # senders wait here
        self._watch = threading.Condition(self._lock)  # the watcher of held-up senders waits here
        self._ready: deque[_Stream] = deque()
        self._parked: list[tuple[float, int, _Stream]] = []  # by deadline
        self._order = itertools.count()
        self._threads = 0
        self._idle = 0
        self._busy: dict[int, float] = {}  # sender -> when its current send or step began
        self._watcher: threading.Thread | None = None

    def start(
        self,
        items: Generator[Any, None, Any],
        run_in: contextvars.Context,
        context: grpc.ServicerContext,
        send: Callable[[Any], None],
        done: Callable[[], None],
        status_of: Callable[[BaseException], grpc.Status],
    ) -> None:
        """Run a stream: `items` (advanced in `run_in`) until it ends, each
        message sent with `send` (gRPC's callback); if `items` raises, the
        stream ends with `status_of(error)`; `done()` once it has ended."""
        stream = _Stream(items, run_in, context, send, done, status_of)
        if not context.add_callback(lambda: self._gone(stream)):
            stream.gone = True  # it ended already
        with self._lock:
            if self._watcher is None:
                self._watcher = threading.Thread(target=self._watch_senders, name="senders-watch", daemon=True)
                self._watcher.start()
            self._ready.append(stream)
            self._dispatch()

    def threads(self) -> int:
        with self._lock:
            return self._threads

    def stop(self) -> None:
        """Let the threads end once no stream is ready (the streams are ending by now)."""
        with self._lock:
            self._stopped = True
            self._work.notify_all()
            self._watch.notify_all()

    # -- waking streams (any thread)

    def _wake(self, stream: _Stream) -> None:
        with self._lock:
            if stream.state == "parked":
                stream.state = "ready"
                self._ready.append(stream)
                self._dispatch()
            elif stream.state == "running":
                stream.woken = True

    def _gone(self, stream: _Stream) -> None:
        stream.gone = True
        self._wake(stream)

    def _dispatch(self) -> None:
        """Have a sender take the ready streams (with the lock held)."""
        if self._idle:
            self._work.notify()
        elif self._threads < BASE:
            self._spawn()
        else:
            self._watch.notify()  # every sender is busy: see whether they are held up

    def _spawn(self) -> None:
        self._threads += 1
        threading.Thread(target=self._send, name=f"sender-{self._threads}", daemon=True).start()

    def _watch_senders(self) -> None:
        """Start another sender while work waits and every sender has been held up for STUCK_S."""
        with self._lock:
            while not self._stopped:
                now = time.monotonic()
                if self._idle:  # an idle sender sees to ready streams and deadlines itself
                    self._watch.wait()
                elif self._ready or (self._parked and self._parked[0][0] <= now):
                    held_up = self._busy and max(self._busy.values()) <= now - STUCK_S
                    if held_up and self._threads < self._limit:
                        self._spawn()
                    self._watch.wait(STUCK_S)
                elif self._parked:
                    self._watch.wait(max(STUCK_S, self._parked[0][0] - now))
                else:
                    self._watch.wait()

    # -- the senders

    def _send(self) -> None:
        me = threading.get_ident()
        while True:
            with self._lock:
                stream = self._next(me)
                if stream is None:
                    self._threads -= 1
                    return
            try:
                self._turn(stream, me)
            finally:
                release_connection()

    def _next(self, me: int) -> _Stream | None:
        """The next stream to run, waiting for one; None if this sender should stop (lock held)."""
        self._busy.pop(me, None)
        idle_since = time.monotonic()
        self._idle += 1
        try:
            while True:
                now = time.monotonic()
                while self._parked and self._parked[0][0] <= now:
                    _, _, due = heapq.heappop(self._parked)
                    if due.state == "parked" and due.deadline is not None and due.deadline <= now:
                        due.state = "ready"
                        self._ready.append(due)
                if self._ready:
                    stream = self._ready.popleft()
                    stream.state = "running"
                    stream.woken = False
                    self._busy[me] = now
                    if self._idle == 1:
                        self._watch.notify()  # no sender is idle now
                    return stream
                if self._stopped or (self._threads > BASE and now - idle_since >= IDLE_S):
                    return None
                timeout = IDLE_S if self._threads > BASE else None
                if self._parked:
                    soonest = max(0.0, self._parked[0][0] - now)
                    timeout = soonest if timeout is None else min(timeout, soonest)
                self._work.wait(timeout)
        finally:
            self._idle -= 1

    def _turn(self, stream: _Stream, me: int) -> None:
        """Run `stream` until it waits, ends or has sent TURN messages."""
        for _ in range(TURN):
            if stream.gone:
                self._finish(stream, close=True)
                return
            try:
                item = stream.run_in.run(next, stream.items)
            except StopIteration:
                self._finish(stream)
                return
            except Exception as error:
                self._finish(stream, error=error)
                return
            if isinstance(item, Wait):
                if item.subscription.park(lambda: self._wake(stream)):
                    self._park(stream, item.deadline)
                    return
                continue  # something came meanwhile
            with self._lock:
                self._busy[me] = time.monotonic()
            stream.send(item)  # blocks while gRPC's buffers for this client are full
        with self._lock:
            stream.state = "ready"
            self._ready.append(stream)

    def _park(self, stream: _Stream, deadline: float | None) -> None:
        with self._lock:
            if stream.woken or stream.gone:  # woken between the check and now
                stream.state = "ready"
                self._ready.append(stream)
                return
            stream.state = "parked"
            stream.deadline = deadline
            if deadline is not None:
                heapq.heappush(self._parked, (deadline, next(self._order), stream))
                self._watch.notify()

    def _finish(self, stream: _Stream, *, error: BaseException | None = None, close: bool = False) -> None:
        """End the stream: its status (OK, or the error's), and done()."""
        with self._lock:
            stream.state = "done"
        try:
            if close:
                stream.run_in.run(stream.items.close)  # its finally clauses run
            if error is not None:
                status = stream.status_of(error)
                stream.context.set_trailing_metadata(status.trailing_metadata)
                stream.context.set_code(status.code)
                stream.context.set_details(status.details)
            stream.send(None)  # the status; nothing happens if the call has ended
        except Exception:
            log.exception("ending a stream failed")
        finally:
            stream.done()

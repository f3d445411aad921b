"""Group commit: the writes of many threads in few transactions. Under SQLite
each write transaction takes the one write lock; threads that each commit their
own row queue on it, and while the holder waits for the interpreter the others
wait for the holder. Batching writes them all in one turn."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Entry(Generic[T, R]):
    __slots__ = ("item", "done", "result", "error", "_asleep")

    def __init__(self, item: T):
        self.item = item
        self.done = False
        self.result: R | Exception | None = None
        self.error: BaseException | None = None
        # Held while its caller sleeps; released when the result is in (done), or
        # when it is this caller's turn to write. A bare lock: the cheapest wake-up.
        self._asleep = threading.Lock()
        self._asleep.acquire()

    def sleep(self) -> None:
        self._asleep.acquire()

    def wake(self) -> None:
        self._asleep.release()


class GroupCommit(Generic[T, R]):
    """Many threads' writes in few transactions. A thread that submits while no
    write is under way writes everything queued by then, its own item included,
    in one batch; the others wait, and when that batch is written the turn to
    write passes to the first of those still waiting. Each caller gets its own
    result, and each is woken once (not all at every batch).

    `write_batch` returns one result per item, in order; an item's result may be
    an exception, raised to that item's caller only. If it raises, every caller
    of the batch gets the error."""

    def __init__(self, write_batch: Callable[[list[T]], Sequence[R | Exception]]):
        self._write_batch = write_batch
        self._lock = threading.Lock()
        self._queue: list[_Entry[T, R]] = []
        self._writing = False

    def submit(self, item: T) -> R:
        entry: _Entry[T, R] = _Entry(item)
        with self._lock:
            self._queue.append(entry)
            writes = not self._writing
            self._writing = True
        if not writes:
            entry.sleep()
        if not entry.done:
            self._write_turn()
        if entry.error is not None:
            raise entry.error
        if isinstance(entry.result, Exception):
            raise entry.result
        return entry.result  # type: ignore[return-value]

    def _write_turn(self) -> None:
        """Write what is queued, then pass the turn on (or end it)."""
        with self._lock:
            batch, self._queue = self._queue, []
        try:
            results = self._write_batch([entry.item for entry in batch])
            for entry, result in zip(batch, results, strict=True):
                entry.result = result
        except BaseException as error:
            for entry in batch:
                entry.error = error
        for entry in batch:
            entry.done = True
        with self._lock:
            if self._queue:
                self._queue[0].wake()  # its turn: the results of its batch are not in yet
            else:
                self._writing = False
        for entry in batch:
            entry.wake()

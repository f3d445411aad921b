"""Group commit: the writes of many threads in few transactions. Under SQLite
each write transaction takes the one write lock; threads that each commit their
own row queue on it, and while the holder waits for the interpreter the others
wait for the holder. Batching writes them all in one turn."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Many threads' writes in few transactions. A thread that submits while no
    write is under way writes everything queued by then, its own item included,
    in one batch; the others wait, and when that batch is written one of those
    still waiting writes the next. Each caller gets its own result.

    `write_batch` returns one result per item, in order; an item's result may be
    an exception, raised to that item's caller only. If it raises, every caller
    of the batch gets the error."""

    def __init__(self, write_batch: Callable[[list[T]], list[R | Exception]]):
        self._write_batch = write_batch
        self._turn = threading.Condition()
        self._queue: list[tuple[T, Future[R | Exception]]] = []
        self._writing = False

    def submit(self, item: T) -> R:
        future: Future[R | Exception] = Future()
        with self._turn:
            self._queue.append((item, future))
            while self._writing and not future.done():
                self._turn.wait()
            if not future.done():
                self._writing = True
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            try:
                self._write(batch)
            finally:
                with self._turn:
                    self._writing = False
                    self._turn.notify_all()
        result = future.result()
        if isinstance(result, Exception):
            raise result
        return result

    def _write(self, batch: list[tuple[T, Future[R | Exception]]]) -> None:
        try:
            results = self._write_batch([item for item, _ in batch])
            for (_, future), result in zip(batch, results, strict=True):
                future.set_result(result)
        except BaseException as error:
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)

"""In-process wake-ups: a writer says "something changed on topic X" after it
commits, and whoever waits on X looks again at once instead of at its next poll.
Polling stays the fallback, so a lost wake-up only costs latency.

Topics: "jobs" (a job was created or changed state), "deliveries" (deliveries
became due), "changes" (the delivery change log grew)."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

from .storage import models


class Hub:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = defaultdict(int)
        self._callbacks: dict[str, list[Callable[[], None]]] = defaultdict(list)

    def publish(self, *topics: str) -> None:
        with self._cond:
            for topic in topics:
                self._versions[topic] += 1
            callbacks = [cb for topic in topics for cb in self._callbacks[topic]]
            self._cond.notify_all()
        for callback in callbacks:
            callback()

    def version(self, topic: str) -> int:
        with self._cond:
            return self._versions[topic]

    def wait(self, topic: str, seen: int, timeout: float) -> int:
        """Wait until `topic` moves past version `seen` or `timeout` passes; returns the version."""
        with self._cond:
            self._cond.wait_for(lambda: self._versions[topic] != seen, timeout)
            return self._versions[topic]

    def subscribe(self, topic: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call `callback` (from the publisher's thread) on each publish; returns an unsubscriber."""
        with self._cond:
            self._callbacks[topic].append(callback)

        def unsubscribe() -> None:
            with self._cond:
                if callback in self._callbacks[topic]:
                    self._callbacks[topic].remove(callback)

        return unsubscribe


hub = Hub()


def after_commit(*topics: str) -> None:
    """Publish once the current transaction commits (at once outside one)."""
    models.db.after_commit(lambda: hub.publish(*topics))

"""Wake-ups: a writer says "something changed on topic X" when it commits, and
whoever waits on X looks again at once instead of at its next poll. Within a
process through the Hub; across processes sharing PostgreSQL through
LISTEN/NOTIFY (Listener); between the API and delivery processes of one
server on the embedded database through `relays` (delivery_process.Link).
Polling stays the fallback, so a lost wake-up only costs latency.

Topics: "jobs" (a job was created or changed state), "deliveries" (deliveries
became due), "changes" (the delivery change log grew), "keys" (an API key was
revoked)."""

from __future__ import annotations

import logging
import select
import threading
from collections import defaultdict
from collections.abc import Callable

from .storage import database

log = logging.getLogger("hookline.notify")
CHANNEL = "hookline"
TOPICS = ("jobs", "deliveries", "changes", "keys")


class Hub:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._versions: dict[str, int] = defaultdict(int)
        self._callbacks: dict[str, list[Callable[[], object]]] = defaultdict(list)

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

    def subscribe(self, topic: str, callback: Callable[[], object]) -> Callable[[], None]:
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
    """Publish once the current transaction commits (at once outside one). On
    PostgreSQL the NOTIFY is part of the transaction, so other processes hear
    of it exactly when it commits; on SQLite the relays hear of it after."""
    if database.is_postgres():
        for topic in topics:
            database.send_notification(CHANNEL, topic)
        database.after_commit(lambda: hub.publish(*topics))
    else:
        database.after_commit(lambda: _publish_and_relay(topics))


# Where else a commit's topics go: the other process of a server on the
# embedded database (delivery_process.Link).
relays: list[Callable[[tuple[str, ...]], None]] = []


def _publish_and_relay(topics: tuple[str, ...]) -> None:
    hub.publish(*topics)
    for relay in relays:
        relay(topics)


class Listener:
    """LISTENs on a dedicated connection (outside the pool) and republishes each
    notification in this process. After a reconnect it publishes every topic
    once, since notifications sent meanwhile are lost."""

    def __init__(self, dsn: str):
        self._dsn = dsn
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pg-listen", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()

    def _run(self) -> None:
        import psycopg2

        delay = 0.5
        while not self._stopping.is_set():
            try:
                connection = psycopg2.connect(self._dsn)
            except psycopg2.Error as error:
                log.warning("cannot LISTEN (%s); polling meanwhile, retrying in %.1f s", error, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 2.0)
                continue
            delay = 0.5
            try:
                connection.autocommit = True
                connection.cursor().execute(f"LISTEN {CHANNEL}")
                hub.publish(*TOPICS)  # catch up on anything missed while not listening
                while not self._stopping.is_set():
                    if select.select([connection], [], [], 0.5)[0]:
                        connection.poll()
                        topics = {n.payload for n in connection.notifies}
                        connection.notifies.clear()
                        if topics:
                            hub.publish(*topics)
            except (psycopg2.Error, OSError) as error:
                log.warning("lost the LISTEN connection (%s); reconnecting", error)
            finally:
                connection.close()

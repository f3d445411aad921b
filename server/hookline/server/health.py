"""gRPC health that follows the database: NOT_SERVING while it cannot be
reached, SERVING again once it answers, so load balancers and `grpc_health_probe`
stop sending calls that could only fail with UNAVAILABLE."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from grpc_health.v1 import health, health_pb2

from .storage.database import database_fault, note_outage, outage_noticed, ping, release_connection

log = logging.getLogger("hookline.health")

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def database_answers() -> bool:
    """Whether a trivial query gets through (a fault other than the database's own is raised)."""
    try:
        ping()
        return True
    except Exception as error:
        if database_fault(error) is None:
            raise
        note_outage()
        return False
    finally:
        release_connection()


class DatabaseHealth:
    """Sets the health of `services` (and of the server as a whole, the empty
    name) by asking the database: at once when any part of the process found it
    unreachable, every `every_s` seconds while it does not answer, and every
    `idle_every_s` otherwise (an idle server makes few queries)."""

    def __init__(
        self,
        servicer: health.HealthServicer,
        services: Iterable[str],
        every_s: float = 1.0,
        idle_every_s: float = 5.0,
    ):
        self._servicer = servicer
        self._names = ("", *services)
        self._every_s = every_s
        self._idle_every_s = idle_every_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self.serving = True

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        outage_noticed.set()
        if self._thread.is_alive():
            self._thread.join()

    def check_once(self) -> bool:
        try:
            answers = database_answers()
        except Exception:
            log.exception("health check failed")
            answers = False
        if answers != self.serving and not self._stopping.is_set():
            self.serving = answers
            for name in self._names:
                self._servicer.set(name, SERVING if answers else NOT_SERVING)
            if answers:
                log.info("the database answers again: serving")
            else:
                log.warning("the database does not answer: not serving until it does")
        return answers

    def _run(self) -> None:
        while not self._stopping.is_set():
            outage_noticed.wait(self._every_s if not self.serving else self._idle_every_s)
            if self._stopping.is_set():
                return
            self.check_once()
            outage_noticed.clear()  # including its own notice, if it failed

"""The background purger: events, deliveries, attempts and the change log older
than settings.retention_s, and ended jobs older than settings.job_retention_s."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .settings import Settings
from .storage import retention
from .storage.database import FaultLog, now_ms

log = logging.getLogger("hookline.retention")

BATCH = 500


class Purger:
    def __init__(self, settings: Settings, clock: Callable[[], int] = now_ms):
        self._settings = settings
        self._clock = clock
        self._stopping = threading.Event()
        self._faults = FaultLog(log)
        self._thread: threading.Thread | None = None

    def purge_once(self) -> dict[str, int]:
        """Purge everything past its age, batch by batch; returns counts per kind."""
        now = self._clock()
        cutoff = now - int(self._settings.retention_s * 1000)
        job_cutoff = now - int(self._settings.job_retention_s * 1000)
        steps: list[tuple[str, Callable[[int, int], int], int]] = [
            ("deliveries", retention.purge_deliveries, cutoff),
            ("events", retention.purge_events, cutoff),
            ("changes", retention.purge_changes, cutoff),
            ("jobs", retention.purge_jobs, job_cutoff),
        ]
        counts = {}
        for name, purge, limit in steps:
            total = 0
            while not self._stopping.is_set():
                purged = purge(limit, BATCH)
                total += purged
                if purged < BATCH:
                    break
            counts[name] = total
        if any(counts.values()):
            log.info("purged %s", ", ".join(f"{n} {k}" for k, n in counts.items() if n))
        return counts

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="retention", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        # Often enough that nothing outlives its age by more than a tenth of it.
        interval = max(0.5, min(60.0, self._settings.retention_s / 10, self._settings.job_retention_s / 10))
        while not self._stopping.wait(interval):
            try:
                self.purge_once()
            except Exception as error:
                self._faults.failure("purging", error)

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

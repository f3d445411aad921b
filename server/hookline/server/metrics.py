"""Prometheus metrics on --metrics-port: deliveries by outcome, attempt latency,
queue depth, the oldest pending delivery's age, jobs by state.

Counters and histograms are updated where the work happens; the gauges are
read from the database when Prometheus scrapes, so they hold for every process
sharing it."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .storage import stats
from .storage.database import now_ms
from .storage.sending import AttemptOutcome

log = logging.getLogger("hookline.metrics")


class _DatabaseGauges(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            depth, oldest = stats.pending_deliveries()
            jobs = stats.jobs_by_state()
        except Exception:
            log.exception("reading metrics from the database failed")
            return
        yield GaugeMetricFamily("hookline_delivery_queue_depth", "Deliveries waiting to be sent (PENDING).", depth)
        age = max(0.0, (now_ms() - oldest) / 1000) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "hookline_oldest_pending_delivery_age_seconds", "Age of the oldest PENDING delivery.", age
        )
        by_state = GaugeMetricFamily("hookline_jobs", "Jobs by state.", labels=["state"])
        for state, count in sorted(jobs.items()):
            by_state.add_metric([state], count)
        yield by_state


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.deliveries = Counter(
            "hookline_delivery_attempts",
            "Delivery attempts by outcome: succeeded, retry (scheduled again) or failed (no retry left).",
            ["outcome"],
            registry=self.registry,
        )
        self.attempt_seconds = Histogram(
            "hookline_attempt_duration_seconds",
            "Time from sending a request to its response or error.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
            registry=self.registry,
        )
        self.jobs_ended = Counter(
            "hookline_jobs_ended", "Jobs ended, by state and code.", ["state", "code"], registry=self.registry
        )
        self.registry.register(_DatabaseGauges())
        self._server: Any = None

    def attempts_recorded(self, outcomes: Sequence[AttemptOutcome]) -> None:
        for o in outcomes:
            outcome = (
                "succeeded" if o.succeeded else ("retry" if o.next_attempt_time and not o.disable_reason else "failed")
            )
            self.deliveries.labels(outcome).inc()
            self.attempt_seconds.observe(o.attempt.duration_ms / 1000)

    def job_ended(self, state: str, code: str) -> None:
        self.jobs_ended.labels(state, code).inc()

    def serve(self, port: int) -> None:
        self._server, _ = start_http_server(port, registry=self.registry)
        log.info("metrics on http://0.0.0.0:%d/metrics", port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

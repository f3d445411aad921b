"""Prometheus metrics on --metrics-port (of --metrics-host): deliveries by outcome, attempt latency,
queue depth, the oldest pending delivery's age, jobs by state, webhook filter outcomes.

Counters and histograms are updated where the work happens; a delivery
process sends its values to the API process that serves them (`snapshot`,
`absorb`), which adds them to its own. The gauges are read from the database
when Prometheus scrapes, so they hold for every process sharing it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from . import filters
from .delivery.outcome import Decision
from .states import JobCode, JobState
from .storage import stats
from .storage.database import FaultLog, now_ms, release_connection
from .storage.sending import AttemptOutcome

log = logging.getLogger("hookline.metrics")
_faults = FaultLog(log)


class _FilterOutcomes(Collector):
    """What webhook filters made of the events they saw (filters.tally, counted
    wherever events fan out in this process)."""

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "hookline_webhook_filter_events",
            "Events a webhook filter was evaluated on, by outcome: passed, filtered, or error (also filtered).",
            labels=["outcome"],
        )
        counts = dict(filters.tally.counts)
        for outcome in filters.Outcome:
            family.add_metric([outcome.value], counts.get(outcome, 0))
        yield family


class _DatabaseGauges(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            depth, oldest = stats.pending_deliveries()
            jobs = stats.jobs_by_state()
        except Exception as error:
            _faults.failure("reading metrics from the database", error)
            return
        finally:
            # Each scrape is served by a new thread: give its connection back to the pool.
            release_connection()
        yield GaugeMetricFamily("hookline_delivery_queue_depth", "Deliveries waiting to be sent (PENDING).", depth)
        age = max(0.0, (now_ms() - oldest) / 1000) if oldest is not None else 0.0
        yield GaugeMetricFamily(
            "hookline_oldest_pending_delivery_age_seconds", "Age of the oldest PENDING delivery.", age
        )
        by_state = GaugeMetricFamily("hookline_jobs", "Jobs by state.", labels=["state"])
        for state, count in sorted(jobs.items()):
            by_state.add_metric([state], count)
        yield by_state


# A sample's name and labels, as a key of its value.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]


def _key(sample: Sample) -> SampleKey:
    return sample.name, tuple(sorted(sample.labels.items()))


class _Summed(Collector):
    """The counters and histograms of this process plus those of others."""

    def __init__(self, own: CollectorRegistry, others: Callable[[], dict[SampleKey, float]]):
        self._own, self._others = own, others

    def collect(self) -> Iterator[Metric]:
        others: dict[SampleKey, float] = self._others()
        for family in self._own.collect():
            summed = Metric(family.name, family.documentation, family.type, family.unit)
            seen = set()
            for sample in family.samples:
                key = _key(sample)
                seen.add(key)
                summed.samples.append(sample._replace(value=sample.value + others.get(key, 0.0)))
            for (name, labels), value in others.items():
                if name.startswith(family.name + "_") and (name, labels) not in seen:
                    summed.samples.append(Sample(name, dict(labels), value))
            yield summed


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._own = CollectorRegistry()
        self._absorbed: dict[int, dict[SampleKey, float]] = {}  # from each live delivery process
        self._carried: dict[SampleKey, float] = {}  # from delivery processes that ended
        self.deliveries = Counter(
            "hookline_delivery_attempts",
            "Delivery attempts by outcome: succeeded, retry (scheduled again) or failed (no retry left).",
            ["outcome"],
            registry=self._own,
        )
        self.attempt_seconds = Histogram(
            "hookline_attempt_duration_seconds",
            "Time from sending a request to its response or error.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30),
            registry=self._own,
        )
        self.jobs_ended = Counter(
            "hookline_jobs_ended", "Jobs ended, by state and code.", ["state", "code"], registry=self._own
        )
        self._own.register(_FilterOutcomes())
        self.registry.register(_Summed(self._own, self._others))
        self._server: Any = None

    def read_database(self) -> None:
        """Add the gauges read from the database, now open (the port is bound before it is)."""
        self.registry.register(_DatabaseGauges())

    def attempts_recorded(self, outcomes: Sequence[AttemptOutcome], decisions: Sequence[Decision]) -> None:
        """Count attempts by what each led to, as recorded (storage.sending.record_outcomes)."""
        for o, decision in zip(outcomes, decisions, strict=True):
            self.deliveries.labels(decision.fate.value).inc()
            self.attempt_seconds.observe(o.attempt.duration_ms / 1000)

    def job_ended(self, state: JobState, code: JobCode) -> None:
        self.jobs_ended.labels(state, code).inc()

    def snapshot(self) -> list[tuple[str, dict[str, str], float]]:
        """This process's counter and histogram values (name, labels, value), to
        send as JSON to the process serving them."""
        return [
            (sample.name, sample.labels, sample.value)
            for family in self._own.collect()
            for sample in family.samples
            if not sample.name.endswith("_created")
        ]

    def absorb(self, process: int, snapshot: list[tuple[str, dict[str, str], float]]) -> None:
        """Take the latest snapshot of delivery process number `process`."""
        self._absorbed[process] = {(name, tuple(sorted(labels.items()))): value for name, labels, value in snapshot}

    def retire(self, process: int) -> None:
        """Delivery process number `process` ended: keep its last values (a new one starts from zero)."""
        for key, value in self._absorbed.pop(process, {}).items():
            self._carried[key] = self._carried.get(key, 0.0) + value

    def _others(self) -> dict[SampleKey, float]:
        summed = dict(self._carried)
        for absorbed in list(self._absorbed.values()):
            for key, value in absorbed.items():
                summed[key] = summed.get(key, 0.0) + value
        return summed

    def serve(self, host: str, port: int) -> None:
        """Serve the metrics on `host`:`port`; raises OSError if it cannot be bound."""
        self._server, _ = start_http_server(port, addr=host, registry=self.registry)
        shown = f"[{host}]" if ":" in host else host
        log.info("metrics on http://%s:%d/metrics", shown, self._server.server_port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

"""Prometheus metrics on --metrics-port move as deliveries and jobs happen."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hookline.client import SendTestEventRequest
from hookline.server.settings import Settings

from .helpers import make_flow, make_webhook, start_job, wait_delivery, wait_job, wait_until


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(metrics_port=_free_port())


def scrape(settings: Settings) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_move_as_deliveries_and_jobs_happen(client, receiver, hookline_app):
    settings = hookline_app.settings
    before = scrape(settings)
    succeeded = ("hookline_delivery_attempts_total", (("outcome", "succeeded"),))
    retried = ("hookline_delivery_attempts_total", (("outcome", "retry"),))
    latency_count = ("hookline_attempt_duration_seconds_count", ())
    completed = ("hookline_jobs", (("state", "COMPLETED"),))

    receiver.respond("/metrics-hook", [500, 200])
    webhook = make_webhook(client, receiver.url("/metrics-hook"), event_types=["WEBHOOK.TEST", "JOB.COMPLETED"])
    sent = client.webhooks.SendTestEvent(SendTestEventRequest(id=webhook.webhook.id))
    wait_delivery(client, sent.delivery.id)
    flow = make_flow(client, [{"transform": "@"}])
    wait_job(client, start_job(client, flow.id, {"x": 1}).id)

    after = wait_until(
        lambda: scrape(settings),
        lambda m: m.get(succeeded, 0) >= before.get(succeeded, 0) + 1,
        what="the succeeded counter to move",
    )
    assert after[retried] >= before.get(retried, 0) + 1
    assert after[latency_count] >= before.get(latency_count, 0) + 2
    assert after[completed] >= before.get(completed, 0) + 1
    assert ("hookline_delivery_queue_depth", ()) in after
    assert after[("hookline_oldest_pending_delivery_age_seconds", ())] >= 0
    assert after[("hookline_jobs_ended_total", (("code", "JOB_SUCCESS"), ("state", "COMPLETED")))] >= 1


def test_metrics_answer_every_scrape(hookline_app):
    # Each scrape runs in a thread of its own; on PostgreSQL each must give its
    # pooled connection back, or the pool runs dry after max_connections scrapes.
    for _ in range(40):
        assert ("hookline_delivery_queue_depth", ()) in scrape(hookline_app.settings)

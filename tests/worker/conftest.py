"""Fixtures of the worker tier: a delivery worker the test steps through
(`run_once`, `settled`) on a real database of the suite's backend, with a clock
the test moves and receivers played by httpx.MockTransport; and the job runner,
stepped the same way (`claim_once`, `reap_once`)."""

from __future__ import annotations

import pytest

from hookline.server import secretbox
from hookline.server.storage import database

from .harness import Bench, Clock, Receivers


@pytest.fixture
def bench(db: None, monkeypatch: pytest.MonkeyPatch) -> Bench:
    # Webhook secrets are sealed in storage: a master key of the test's own.
    monkeypatch.setattr(secretbox, "_current", secretbox.SecretBox.from_text(secretbox.generate_key()))
    # Lapsed leases are looked for only a lease after the database was last away:
    # none of an earlier test's outages counts here.
    monkeypatch.setattr(database, "_last_outage", float("-inf"))
    clock = Clock()
    return Bench(clock, Receivers(clock))

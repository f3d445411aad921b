"""An idle server issues at most one query a second: it is woken by what
happens (in-process, or LISTEN/NOTIFY on PostgreSQL), and polls only as a fallback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest

from hookline.server.settings import Settings

WINDOW_S = 10.0


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(poll_interval_s=Settings.poll_interval_s)  # the production default


def test_an_idle_server_issues_at_most_one_query_a_second(hookline_app, caplog):
    time.sleep(1.0)  # let start-up work finish
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        time.sleep(WINDOW_S)
    queries = [r for r in caplog.records if r.name == "peewee"]
    assert len(queries) <= WINDOW_S, [r.getMessage()[:80] for r in queries]

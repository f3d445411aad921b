"""Fixtures of the property suite, on top of tests/conftest.py.

Each module runs its own server (the shared fixtures are module-scoped). Attempts
give up quickly here, so webhooks the generated requests point at unreachable
hosts settle fast."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from hookline.client import Client
from hookline.server.settings import Settings

from . import tally
from .world import World, make_world


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(
        retry_schedule="0,100ms,200ms",
        poll_interval_s=0.2,
        stream_heartbeat_s=1.0,
        connect_timeout_s=1.0,
        request_timeout_s=2.0,
    )


@pytest.fixture(scope="module")
def observer(grpc_addr: str, grpc_server, hookline_app) -> Iterator[Client]:  # type: ignore[no-untyped-def]
    """A second client of the same space for snapshots, with no limit on the
    size of the responses it accepts (listing jobs with large inputs)."""
    with Client(
        address=grpc_addr, api_key=hookline_app.admin_key, options=[("grpc.max_receive_message_length", -1)]
    ) as observer_client:
        yield observer_client


@pytest.fixture(scope="module")
def world(client: Client, observer: Client, receiver) -> World:  # type: ignore[no-untyped-def]
    """A few of every kind of resource for generated requests to point at."""
    return make_world(client, observer, receiver)


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if tally.total():
        terminalreporter.write_line(tally.summary())

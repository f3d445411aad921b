"""The delivery worker's side of storage, on a real database: leases given back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hookline.server.storage import database, models, sending
from tests.conftest import BACKEND, postgres_database

NOW = 1_800_000_000_000


@pytest.fixture
def db(tmp_path: Path) -> Iterator[None]:
    if BACKEND == "postgresql":
        with postgres_database() as url:
            opened = database.open_database(tmp_path, url)
            yield
            opened.close_all()
        return
    opened = database.open_database(tmp_path)
    yield
    opened.close()


def _delivery(delivery_id: str, **fields: object) -> None:
    values: dict[str, object] = dict(
        id=delivery_id, space_id="spc_1", webhook_id="wh_1", event_id="evt_1", event_type="JOB.COMPLETED",
        state="PENDING", next_attempt_time=NOW, create_time=NOW, update_time=NOW,
    )  # fmt: skip
    values.update(fields)
    models.Delivery.insert(**values).execute()


def _states() -> dict[str, str]:
    return {d.id: d.state for d in models.Delivery.select()}


def test_lapsed_leases_are_released_except_those_the_caller_still_holds(db: None) -> None:
    for name in ("dlv_mine", "dlv_dead", "dlv_live"):
        lease = NOW + 60_000 if name == "dlv_live" else NOW - 1
        _delivery(name, state="SENDING", lease_expire_time=lease)
    # The caller was stopped past its own lease on dlv_mine: it still sends it.
    assert sending.release_expired(NOW, ["dlv_mine"]) == 1
    assert _states() == {"dlv_mine": "SENDING", "dlv_dead": "PENDING", "dlv_live": "SENDING"}
    assert sending.release_expired(NOW) == 1  # by anyone else: dead, released
    assert _states()["dlv_mine"] == "PENDING"

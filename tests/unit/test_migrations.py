"""A newer server upgrades an older database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hookline.server.storage import database, models

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_the_first_schema_is_upgraded_in_place(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "hookline.db") as con:
        con.executescript((FIXTURES / "schema_v1.sqlite.sql").read_text())
        con.execute(
            "INSERT INTO webhook (id, space_id, alias, url, description, enabled, event_types, headers,"
            " rate_limit_per_s, disabled_reason, create_time, update_time)"
            " VALUES ('wh_1', 'sp_1', 'old', 'https://example.com', '', 1, '[\"JOB.COMPLETED\"]', '{}', 0, '', 1, 1)"
        )
    db = database.open_database(tmp_path)
    try:
        assert models.SchemaVersion.get().version == database.SCHEMA_VERSION
        old = models.Webhook.get_by_id("wh_1")
        assert old.alias == "old" and old.failing_since is None
        assert db.table_exists("meta")
        due = [i.name for i in db.get_indexes("delivery") if "next_attempt_time" in i.columns]
        assert due == ["delivery_state_next_attempt_time_webhook_id_id"]
    finally:
        db.close()


def test_change_log_positions_are_kept_and_never_handed_out_again(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "hookline.db") as con:
        con.executescript((FIXTURES / "schema_v1.sqlite.sql").read_text())
        con.executemany(
            "INSERT INTO delivery_change (space_id, delivery_id, webhook_id, flow_id, job_id, kind, delivery, time)"
            " VALUES ('sp_1', ?, 'wh_1', '', '', 'QUEUED', '{}', 1)",
            [("dlv_1",), ("dlv_2",), ("dlv_3",)],
        )
    db = database.open_database(tmp_path)
    try:
        change = models.DeliveryChange
        kept = [(c.seq, c.delivery_id) for c in change.select().order_by(change.seq)]
        assert kept == [(1, "dlv_1"), (2, "dlv_2"), (3, "dlv_3")]  # every cursor means what it meant
        assert [i.columns for i in db.get_indexes("delivery_change")] == [["space_id", "seq"]]
        change.delete().execute()
        fields = dict(space_id="sp_1", delivery_id="dlv_4", webhook_id="wh_1", kind="QUEUED", delivery="{}", time=2)
        assert change.insert(**fields).execute() == 4  # not 1 again on the emptied log
    finally:
        db.close()


def test_a_database_newer_than_the_server_is_refused(tmp_path: Path) -> None:
    db = database.open_database(tmp_path)
    models.SchemaVersion.update(version=database.SCHEMA_VERSION + 1).execute()
    db.close()
    with pytest.raises(database.SchemaTooNew, match="upgrade hookline"):
        database.open_database(tmp_path)

"""A newer server upgrades an older database, on either backend: the first
schema (version 1, before the meta table, webhook health columns and the
covering index of due deliveries) is upgraded in place and its data kept, and
so is a change log whose positions (stream cursors) SQLite reused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from peewee import Database
from playhouse.migrate import SchemaMigrator, migrate

from hookline.server.settings import Settings
from hookline.server.storage import database, deliveries, models, retention, statements
from hookline.server.storage.records import Delivery

CHANGE_LOG = models.DeliveryChange._meta.table_name


def _take_change_log_back(db: Database) -> None:
    """The change log as servers before schema version 4 made it: on SQLite
    without AUTOINCREMENT, on PostgreSQL with 32-bit positions."""
    if database.is_postgres():
        db.execute_sql(f'ALTER TABLE "{CHANGE_LOG}" ALTER COLUMN "seq" TYPE INTEGER')
        db.execute_sql(f"ALTER SEQUENCE {_sequence(db)} AS INTEGER")
        return
    db.drop_tables([models.DeliveryChange])
    db.execute_sql(
        f'CREATE TABLE "{CHANGE_LOG}" ("seq" INTEGER NOT NULL PRIMARY KEY, "space_id" TEXT NOT NULL,'
        ' "delivery_id" TEXT NOT NULL, "webhook_id" TEXT NOT NULL, "flow_id" TEXT NOT NULL, "job_id" TEXT NOT NULL,'
        ' "kind" TEXT NOT NULL, "delivery" TEXT NOT NULL, "attempt_id" TEXT, "time" INTEGER NOT NULL)'
    )
    db.execute_sql(f'CREATE INDEX "{CHANGE_LOG}_space_id_seq" ON "{CHANGE_LOG}" ("space_id", "seq")')


def _take_event_types_back(db: Database) -> None:
    """No event types, published keys or webhook filters, as before schema version 5."""
    db.drop_tables([models.EventType, models.PublishedKey])
    migrate(SchemaMigrator.from_database(db).drop_column("webhook", "filter"))


def _sequence(db: Database) -> str:
    return db.execute_sql("SELECT pg_get_serial_sequence(%s, 'seq')", (f'"{CHANGE_LOG}"',)).fetchone()[0]


def _append(*delivery_ids: str, time: int = 1) -> list[int]:
    """A QUEUED change per delivery, as the server writes them; their positions."""
    changes: list[dict[str, Any]] = []
    for delivery_id in delivery_ids:
        delivery = Delivery(
            id=delivery_id, space_id="sp_1", webhook_id="wh_1", event_id="evt_1", event_type="WEBHOOK.TEST",
            job_id="", flow_id="", state="PENDING", attempt_count=0, next_attempt_time=time, last_status_code=0,
            last_error="", create_time=time, update_time=time,
        )  # fmt: skip
        deliveries.log_change(changes, delivery, "QUEUED", time)
    with models.db.atomic():
        statements.insert_rows(models.DeliveryChange, changes)
    query = models.DeliveryChange.select(models.DeliveryChange.seq).order_by(models.DeliveryChange.seq)
    return [seq for (seq,) in query.tuples()][-len(delivery_ids) :]


def _purge_all() -> None:
    while retention.purge_changes(cutoff=2**62, batch=500):
        pass


def test_a_version_1_database_is_upgraded_in_place(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    db = database.open_database(settings.data_dir, settings.database)
    # Take the fresh schema back to version 1.
    _take_change_log_back(db)
    _take_event_types_back(db)
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.drop_column("webhook", "failing_since"), migrator.drop_column("webhook", "last_success_time"))
    db.drop_tables([models.Meta])
    db.execute_sql('DROP INDEX "delivery_state_next_attempt_time_webhook_id_id"')
    db.execute_sql('CREATE INDEX "delivery_state_next_attempt_time" ON "delivery" ("state", "next_attempt_time")')
    models.SchemaVersion.update(version=1).execute()
    # Written as a version 1 server did: the model's later columns are not there.
    row = {
        "id": "wh_1", "space_id": "sp_1", "alias": "old", "url": "https://example.com", "description": "",
        "enabled": True, "event_types": '["JOB.COMPLETED"]', "headers": "{}", "rate_limit_per_s": 0,
        "disabled_reason": "", "create_time": 1, "update_time": 1,
    }  # fmt: skip
    columns = ", ".join(f'"{c}"' for c in row)
    db.execute_sql(f'INSERT INTO "webhook" ({columns}) VALUES ({", ".join([db.param] * len(row))})', list(row.values()))
    db.close()

    db = database.open_database(settings.data_dir, settings.database)
    try:
        assert models.SchemaVersion.get().version == database.SCHEMA_VERSION
        old = models.Webhook.get_by_id("wh_1")
        assert old.alias == "old" and old.failing_since is None and old.last_success_time is None
        assert old.filter == "" and db.table_exists("event_type") and db.table_exists("published_key")
        assert db.table_exists("meta")
        due = {i.name: i.columns for i in db.get_indexes("delivery") if "next_attempt_time" in i.columns}
        covering = ["state", "next_attempt_time", "webhook_id", "id"]
        assert due == {"delivery_state_next_attempt_time_webhook_id_id": covering}
    finally:
        db.close()


def test_a_change_log_that_started_again_after_a_purge_is_upgraded(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    db = database.open_database(settings.data_dir, settings.database)
    _take_change_log_back(db)
    _take_event_types_back(db)
    models.SchemaVersion.update(version=3).execute()
    before = _append("dlv_a", "dlv_b", "dlv_c")
    _purge_all()  # retention empties the log; SQLite then numbered from 1 again
    after = _append("dlv_d", "dlv_e")
    if not database.is_postgres():
        assert after == [1, 2]
    db.close()

    db = database.open_database(settings.data_dir, settings.database)
    try:
        assert models.SchemaVersion.get().version == database.SCHEMA_VERSION
        # A cursor at the end of the log before the purge resumes with what came after it.
        changes, _ = deliveries.changes_after("sp_1", before[-1])
        assert [c.delivery.id for c in changes] == ["dlv_d", "dlv_e"]
        assert all(c.seq > before[-1] for c in changes)
        resumed_from = changes[-1].seq
        assert deliveries.changes_after("sp_1", changes[0].seq)[0][0].delivery.id == "dlv_e"
        # From now on positions only go forward, past emptied logs and 32 bits alike.
        _purge_all()
        (next_one,) = _append("dlv_f")
        assert next_one > resumed_from
        if database.is_postgres():
            db.execute_sql("SELECT setval(%s, %s)", (_sequence(db), 2**31))
        else:
            db.execute_sql("UPDATE sqlite_sequence SET seq = ? WHERE name = ?", (2**31, CHANGE_LOG))
        assert _append("dlv_g") == [2**31 + 1]
        assert [c.delivery.id for c in deliveries.changes_after("sp_1", next_one)[0]] == ["dlv_g"]
    finally:
        db.close()

"""A newer server upgrades an older database, on either backend: the first
schema (version 1, before the meta table, webhook health columns and the
covering index of due deliveries) is upgraded in place and its data kept."""

from __future__ import annotations

from collections.abc import Callable

from playhouse.migrate import SchemaMigrator, migrate

from hookline.server.settings import Settings
from hookline.server.storage import database, models


def test_a_version_1_database_is_upgraded_in_place(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    db = database.open_database(settings.data_dir, settings.database)
    # Take the fresh schema back to version 1.
    migrator = SchemaMigrator.from_database(db)
    migrate(migrator.drop_column("webhook", "failing_since"), migrator.drop_column("webhook", "last_success_time"))
    db.drop_tables([models.Meta])
    db.execute_sql('DROP INDEX "delivery_state_next_attempt_time_webhook_id_id"')
    db.execute_sql('CREATE INDEX "delivery_state_next_attempt_time" ON "delivery" ("state", "next_attempt_time")')
    models.SchemaVersion.update(version=1).execute()
    models.Webhook.insert(
        id="wh_1", space_id="sp_1", alias="old", url="https://example.com", event_types='["JOB.COMPLETED"]',
        create_time=1, update_time=1,
    ).execute()  # fmt: skip
    db.close()

    db = database.open_database(settings.data_dir, settings.database)
    try:
        assert models.SchemaVersion.get().version == database.SCHEMA_VERSION
        old = models.Webhook.get_by_id("wh_1")
        assert old.alias == "old" and old.failing_since is None and old.last_success_time is None
        assert db.table_exists("meta")
        due = {i.name: i.columns for i in db.get_indexes("delivery") if "next_attempt_time" in i.columns}
        covering = ["state", "next_attempt_time", "webhook_id", "id"]
        assert due == {"delivery_state_next_attempt_time_webhook_id_id": covering}
    finally:
        db.close()

"""Opening the database and keeping its schema current."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from peewee import BigIntegerField, Database, SqliteDatabase
from playhouse.db_url import connect as connect_url
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_migrations

from . import models


def now_ms() -> int:
    return int(time.time() * 1000)


def open_database(data_dir: Path, database_url: str | None = None) -> Database:
    """Open (creating if needed) and migrate the database, and bind the models to it."""
    if database_url:
        database = connect_url(database_url)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        database = SqliteDatabase(
            str(data_dir / "hookline.db"),
            pragmas={
                "journal_mode": "wal",
                # WAL + NORMAL survives a killed process; it skips the fsync per commit.
                "synchronous": "normal",
                "busy_timeout": 10_000,
            },
            # Every write transaction takes the write lock up front: SQLite cannot
            # retry a read transaction that later upgrades and collides.
            lock_type="IMMEDIATE",
            check_same_thread=False,
        )
    models.db.initialize(database)
    migrate(database)
    return database


def _add_meta_and_webhook_health(database: Database) -> None:
    migrator = SchemaMigrator.from_database(database)
    database.create_tables([models.Meta])
    run_migrations(
        migrator.add_column("webhook", "failing_since", BigIntegerField(null=True)),
        migrator.add_column("webhook", "last_success_time", BigIntegerField(null=True)),
    )


# UPGRADES[i] takes a database from schema version i + 1 to i + 2. Append, never
# edit: a newer server upgrades an older database one step at a time.
UPGRADES: list[Callable[[Database], None]] = [_add_meta_and_webhook_health]
SCHEMA_VERSION = 1 + len(UPGRADES)


class SchemaTooNew(RuntimeError):
    pass


def migrate(database: Database) -> int:
    """Create the schema on an empty database, or upgrade an older one; returns
    the schema version."""
    with database.atomic():
        if not database.table_exists(models.SchemaVersion._meta.table_name):
            database.create_tables(models.TABLES)
            models.SchemaVersion.create(version=SCHEMA_VERSION)
            return SCHEMA_VERSION
        row = models.SchemaVersion.select().first()
        current = row.version if row else 1
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the database has schema version {current}, newer than this server's {SCHEMA_VERSION}; "
                "upgrade hookline"
            )
        for version in range(current, SCHEMA_VERSION):
            UPGRADES[version - 1](database)
        if current < SCHEMA_VERSION:
            models.SchemaVersion.update(version=SCHEMA_VERSION).execute()
    return SCHEMA_VERSION

"""Opening the database and keeping its schema current."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from peewee import Database, SqliteDatabase
from playhouse.db_url import connect as connect_url

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


def _initial_schema(database: Database) -> None:
    database.create_tables(models.TABLES)


# Each entry upgrades the schema by one version; append, never edit.
MIGRATIONS: list[Callable[[Database], None]] = [_initial_schema]


def migrate(database: Database) -> int:
    """Bring the schema to the newest version; returns that version."""
    with database.atomic():
        if not database.table_exists(models.SchemaVersion._meta.table_name):
            current = 0
        else:
            row = models.SchemaVersion.select().first()
            current = row.version if row else 0
        for version in range(current + 1, len(MIGRATIONS) + 1):
            MIGRATIONS[version - 1](database)
        if current < len(MIGRATIONS):
            models.SchemaVersion.delete().execute()
            models.SchemaVersion.create(version=len(MIGRATIONS))
    return len(MIGRATIONS)

"""Opening the database and keeping its schema current."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from peewee import BigIntegerField, Database, PostgresqlDatabase, SqliteDatabase
from playhouse.db_url import connect as connect_url
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_migrations

from . import models

_clock_offset_ms = 0
_clock_checked = float("-inf")
CLOCK_CHECK_EVERY_S = 60.0


def now_ms() -> int:
    """Now, in milliseconds since the epoch, by the database's clock.

    Every process sharing a PostgreSQL database must agree on time for leases,
    and every timestamp of a record should come from one clock, so on PostgreSQL
    this is the local clock corrected by the database's offset, measured once a
    minute (best of three round trips) rather than asked for on every call."""
    global _clock_offset_ms, _clock_checked
    if is_postgres() and time.monotonic() - _clock_checked > CLOCK_CHECK_EVERY_S:
        _clock_checked = time.monotonic()
        samples = []
        for _ in range(3):
            before = time.time() * 1000
            cursor = models.db.execute_sql("SELECT EXTRACT(EPOCH FROM clock_timestamp()) * 1000")
            after = time.time() * 1000
            samples.append((after - before, float(cursor.fetchone()[0]) - (before + after) / 2))
        _clock_offset_ms = round(min(samples)[1])
    return int(time.time() * 1000) + _clock_offset_ms


def clock_ms() -> int:
    """The clock leases are measured with (the same as now_ms)."""
    return now_ms()


def is_postgres() -> bool:
    return isinstance(models.db.obj, PostgresqlDatabase)


def release_connection() -> None:
    """Give this thread's connection back to the pool (PostgreSQL), so threads
    that serve calls do not each hold one between calls."""
    if is_postgres() and not models.db.is_closed() and models.db.transaction_depth() == 0:
        models.db.close()


class TurnTakingSqliteDatabase(SqliteDatabase):
    """SQLite lets one transaction write at a time. A writer that finds the write
    lock taken sleeps in SQLite's busy handler (1, 2, 5 ... up to 100 ms between
    tries), which under load costs far more than the writes themselves; so
    writers take turns instead, and the next one runs as soon as a transaction
    ends: the threads of this process on a Python lock, the processes of one
    server (API and delivery) on an flock of `turns_path`. The busy timeout still
    covers any other process (e.g. an operator command)."""

    def __init__(self, *args: Any, turns_path: Path, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._writer = threading.Lock()
        self._holder = threading.local()
        self._turns_path = turns_path
        self._turns_fd: int | None = None

    def begin(self, lock_type: str | None = None) -> None:
        self._writer.acquire()
        self._holder.held = True
        try:
            if self._turns_fd is None:
                self._turns_fd = os.open(self._turns_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(self._turns_fd, fcntl.LOCK_EX)
            super().begin(lock_type)
        except BaseException:
            self._release()
            raise

    def commit(self) -> None:
        super().commit()  # if it fails, the caller rolls back, which releases
        self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def _release(self) -> None:
        if getattr(self._holder, "held", False):
            self._holder.held = False
            if self._turns_fd is not None:
                fcntl.flock(self._turns_fd, fcntl.LOCK_UN)
            self._writer.release()

    def close_turns(self) -> None:
        """Close the turns file (the database object is done with)."""
        with self._writer:
            if self._turns_fd is not None:
                os.close(self._turns_fd)
                self._turns_fd = None


POSTGRES_SCHEMES = ("postgres", "postgresql")


def _pooled(url: str) -> str:
    """postgresql://... with a connection pool (Peewee's +pool schemes)."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}+pool{sep}{rest}" if scheme in POSTGRES_SCHEMES else url


def open_database(data_dir: Path, database_url: str | None = None) -> Database:
    """Open (creating if needed) and migrate the database, and bind the models to it."""
    if database_url:
        pooled = _pooled(database_url)
        # A thread takes a connection for one call and gives it back (release_connection);
        # past the limit it waits for one instead of failing.
        extra = {"max_connections": 32, "stale_timeout": 300, "timeout": 30} if pooled != database_url else {}
        database = connect_url(pooled, **extra)
    else:
        data_dir.mkdir(parents=True, exist_ok=True)
        database = TurnTakingSqliteDatabase(
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
            turns_path=data_dir / "hookline.db.turns",
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


def _cover_due_deliveries(database: Database) -> None:
    # The index claims scan also holds each delivery's webhook and id, so ranking
    # the earliest due ones never reads the table (it did, row by row, before).
    database.execute_sql('DROP INDEX IF EXISTS "delivery_state_next_attempt_time"')
    database.create_tables([models.Delivery])  # creates the model's indexes it lacks


# UPGRADES[i] takes a database from schema version i + 1 to i + 2. Append, never
# edit: a newer server upgrades an older database one step at a time.
UPGRADES: list[Callable[[Database], None]] = [_add_meta_and_webhook_health, _cover_due_deliveries]
SCHEMA_VERSION = 1 + len(UPGRADES)


MIGRATION_LOCK = 0x686F6F6B  # any constant; names the lock among advisory locks


class SchemaTooNew(RuntimeError):
    pass


def migrate(database: Database) -> int:
    """Create the schema on an empty database, or upgrade an older one; returns
    the schema version."""
    with database.atomic():
        if isinstance(database, PostgresqlDatabase):
            # Processes starting together migrate one at a time.
            database.execute_sql("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
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

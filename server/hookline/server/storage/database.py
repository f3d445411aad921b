"""Opening the database and keeping its schema current."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
from peewee import (
    BigIntegerField,
    Database,
    InterfaceError,
    OperationalError,
    PostgresqlDatabase,
    SqliteDatabase,
    TextField,
)
from playhouse.db_url import connect as connect_url
from playhouse.db_url import parse as parse_url
from playhouse.migrate import SchemaMigrator
from playhouse.migrate import migrate as run_migrations
from playhouse.pool import MaxConnectionsExceeded, PooledPostgresqlDatabase

from ..errors import HooklineError, ResourceExhausted, Unavailable
from . import models

log = logging.getLogger("hookline.storage")

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
        try:
            _clock_offset_ms = _measure_clock_offset_ms()
        except (OperationalError, InterfaceError, MaxConnectionsExceeded) as error:
            # Keep the last offset (clocks drift slowly) and measure again soon;
            # the caller's own query will meet the outage if it lasts.
            _clock_checked -= CLOCK_CHECK_EVERY_S - CLOCK_RETRY_S
            log.warning("cannot read the database's clock (%s); keeping the last offset", _first_line(error))
        finally:
            release_connection()
    return int(time.time() * 1000) + _clock_offset_ms


CLOCK_RETRY_S = 1.0


def _measure_clock_offset_ms() -> int:
    samples = []
    for _ in range(3):
        before = time.time() * 1000
        cursor = models.db.execute_sql("SELECT EXTRACT(EPOCH FROM clock_timestamp()) * 1000")
        after = time.time() * 1000
        samples.append((after - before, float(cursor.fetchone()[0]) - (before + after) / 2))
    return round(min(samples)[1])


def clock_ms() -> int:
    """The clock leases are measured with (the same as now_ms)."""
    return now_ms()


def is_postgres() -> bool:
    return isinstance(models.db.obj, PostgresqlDatabase)


# --- faults of the database itself ------------------------------------------------

_last_outage = float("-inf")  # time.monotonic() when a connection was last found dead


outage_noticed = threading.Event()  # set at each note_outage, for whoever reports health


def note_outage() -> None:
    """Remember that the database was just found unreachable (see seconds_since_outage)."""
    global _last_outage
    _last_outage = time.monotonic()
    outage_noticed.set()


def seconds_since_outage() -> float:
    """How long ago this process last found the database unreachable (inf: never).
    While the database is away no process can renew a lease, so lapsed leases
    just after it returns say nothing about whose runner died."""
    return time.monotonic() - _last_outage


# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_FULL = 13
_SQLITE_AWAY = {5: "locked", 6: "locked", 8: "read-only", 10: "disk I/O error", 14: "cannot be opened"}
# PostgreSQL SQLSTATE classes that say the server, not the statement, failed:
# connection exceptions, operator intervention (shutdown, terminated backend),
# insufficient resources, and transaction rollbacks (deadlock, serialization).
_POSTGRES_AWAY = ("08", "57", "53", "40")
_POSTGRES_DISK_FULL = "53100"


def database_fault(error: BaseException) -> HooklineError | None:
    """What a caller is told when the database failed rather than the request:
    UNAVAILABLE while it is unreachable (a restart, a dropped connection, a
    lock timeout), RESOURCE_EXHAUSTED when its disk is full. None for anything
    else (a bug, to be reported as INTERNAL)."""
    if isinstance(error, DatabaseFault):
        return error.fault
    if isinstance(error, MaxConnectionsExceeded):
        return Unavailable("every database connection of this server is in use; try again shortly")
    original = _driver_error(error)
    if isinstance(original, sqlite3.Error):
        code = (getattr(original, "sqlite_errorcode", 0) or 0) & 0xFF
        if code == _SQLITE_FULL or "database or disk is full" in str(original):
            return _disk_full(original)
        if code in _SQLITE_AWAY:
            return Unavailable(f"the database is unavailable ({_first_line(original)}); try again shortly")
        return None
    if isinstance(original, psycopg2.Error):
        sqlstate = original.pgcode or ""
        if sqlstate == _POSTGRES_DISK_FULL or isinstance(original, psycopg2.errors.DiskFull):
            return _disk_full(original)
        # No SQLSTATE at all: the connection failed before the server could answer.
        if isinstance(original, (psycopg2.OperationalError, psycopg2.InterfaceError)) and (
            not sqlstate or sqlstate.startswith(_POSTGRES_AWAY)
        ):
            return Unavailable(f"the database is unavailable ({_first_line(original)}); try again shortly")
    return None


def _driver_error(error: BaseException) -> BaseException:
    """The driver's error that Peewee wrapped, sometimes twice (a failed connect inside BEGIN)."""
    while getattr(error, "orig", None) is not None:
        error = error.orig  # type: ignore[attr-defined]
    return error


class DatabaseFault(Exception):
    """The database failed, not the call: unreachable, locked or busy, out of
    connections, a serialization failure or deadlock, or its disk full. The
    same call may succeed when tried again; `fault` is what an API caller
    would be told (UNAVAILABLE, or RESOURCE_EXHAUSTED for a full disk)."""

    def __init__(self, fault: HooklineError):
        super().__init__(fault.message)
        self.fault = fault


@contextmanager
def raising_database_faults() -> Iterator[None]:
    """Within it, a fault of the database itself is raised as DatabaseFault
    (whatever the driver or Peewee raised: see database_fault); any other
    error passes unchanged."""
    try:
        yield
    except DatabaseFault:
        raise
    except Exception as error:
        fault = database_fault(error)
        if fault is None:
            raise
        raise DatabaseFault(fault) from error


def _disk_full(error: BaseException) -> ResourceExhausted:
    return ResourceExhausted(
        f"the disk holding the database is full ({_first_line(error)}); nothing was written: "
        "free some space and try again"
    )


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class FaultLog:
    """How a background loop reports a round that failed: a database fault as one
    line at most every `every_s` seconds per loop (an outage would otherwise log a
    traceback at every try), anything else with its traceback."""

    def __init__(self, logger: logging.Logger, every_s: float = 5.0):
        self._log = logger
        self._every_s = every_s
        self._last: dict[str, float] = {}

    def failure(self, what: str, error: BaseException) -> None:
        if database_fault(error) is None:
            self._log.error("%s failed; retrying", what, exc_info=error)
        else:
            self.fault(what, error)

    def fault(self, what: str, error: BaseException) -> None:
        now = time.monotonic()
        if now - self._last.get(what, float("-inf")) >= self._every_s:
            self._last[what] = now
            if isinstance(error, DatabaseFault) and error.__cause__ is not None:
                error = _driver_error(error.__cause__)  # what the database said, not what a caller is told
            self._log.warning("%s failed: %s; retrying until the database is back", what, _first_line(error))


def ping() -> None:
    """One trivial query; raises what the database raised if it did not answer."""
    models.db.execute_sql("SELECT 1").fetchone()


def after_commit(callback: Callable[[], object]) -> None:
    """Call `callback` once the current transaction commits (at once outside one)."""
    models.db.after_commit(callback)


def send_notification(channel: str, payload: str) -> None:
    """NOTIFY `channel` (PostgreSQL), as part of the current transaction: heard when it commits."""
    models.db.execute_sql("SELECT pg_notify(%s, %s)", (channel, payload))


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
            # SQLite has already rolled back a transaction that failed for want of
            # disk space or memory; rolling back again would raise and hide why.
            state = self._state  # type: ignore[attr-defined]  # peewee's connection state, absent from its stubs
            if state.conn is not None and state.conn.in_transaction:
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


class ReconnectingPostgresqlDatabase(PooledPostgresqlDatabase):
    """A connection pool whose threads notice a connection the server dropped (a
    restart, a terminated backend) and take a new one. A thread that keeps its
    connection between calls (the runner's and delivery worker's loops) would
    otherwise retry on the dead one for ever. A transaction cut short fails;
    the next one starts on a fresh connection."""

    def is_closed(self) -> bool:
        if not self._state.transactions and self._connection_dead():
            self._discard_connection()
        return bool(self._state.closed)

    def begin(self, isolation_level: int | None = None) -> None:
        try:
            super().begin(isolation_level)
        except (OperationalError, InterfaceError):
            if not self._connection_dead():
                raise
            # Nothing was done on it yet: begin again on a new connection.
            self._discard_connection()
            self.connect()
            super().begin(isolation_level)

    def rollback(self) -> None:
        # A dead connection's transaction died with it; rolling back would only
        # raise again and hide why the transaction failed.
        if self._connection_dead():
            return
        super().rollback()

    def _connection_dead(self) -> bool:
        conn = self._state.conn
        return conn is not None and bool(conn.closed)

    def _connect(self) -> Any:
        try:
            return super()._connect()
        except psycopg2.Error:
            note_outage()
            raise

    def _discard_connection(self) -> None:
        note_outage()
        self._close(self._state.conn, close_conn=True)
        self._state.reset()


POSTGRES_SCHEMES = ("postgres", "postgresql")
DATABASE_FILE = "hookline.db"  # the embedded database, in the data dir
# A data dir holds job inputs and outputs and the keys: only its owner may enter it.
PRIVATE_DIR_MODE = 0o700


class CannotOpen(RuntimeError):
    """The database cannot be opened; the message says why and what to do."""


def open_database(data_dir: Path, database_url: str | None = None) -> Database:
    """Open (creating if needed) and migrate the database, and bind the models to it."""
    try:
        database = _connect(data_dir, database_url)
        models.db.initialize(database)
        migrate(database)
    except (OperationalError, InterfaceError, OSError) as error:
        if isinstance(error, OSError) or database_fault(error):
            where = "the database" if database_url else f"the database in {data_dir.resolve()}"
            raise CannotOpen(f"cannot open {where}: {_first_line(error)}") from None
        raise
    return database


def _connect(data_dir: Path, database_url: str | None) -> Database:
    if database_url:
        if database_url.partition("://")[0] not in POSTGRES_SCHEMES:
            return connect_url(database_url)
        # A thread takes a connection for one call and gives it back (release_connection);
        # past the limit it waits for one instead of failing.
        return ReconnectingPostgresqlDatabase(
            **parse_url(database_url), max_connections=32, stale_timeout=300, timeout=30
        )
    else:
        data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        return TurnTakingSqliteDatabase(
            str(data_dir / DATABASE_FILE),
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


def _never_reuse_change_positions(database: Database) -> None:
    """Change-log positions (the streams' cursors) must never be handed out twice.

    PostgreSQL's sequence never went back, but was 32 bits: it becomes 64. SQLite
    reused positions once retention had emptied the log, and cannot make a column
    AUTOINCREMENT in place, so the table is rebuilt with every position kept (a
    cursor means what it meant) and numbering goes on above both the last one and
    the purged mark. If the log did start again at 1, everything in it lies at or
    below the purged mark, where no cursor reaches: those entries move just past
    the mark, in order, so a cursor from before the purge resumes with them."""
    table = models.DeliveryChange._meta.table_name
    if isinstance(database, PostgresqlDatabase):
        database.execute_sql(f'ALTER TABLE "{table}" ALTER COLUMN "seq" TYPE BIGINT')
        (sequence,) = database.execute_sql("SELECT pg_get_serial_sequence(%s, 'seq')", (f'"{table}"',)).fetchone()
        database.execute_sql(f"ALTER SEQUENCE {sequence} AS BIGINT")
        return
    mark = models.Meta.get_or_none(models.Meta.key == models.CHANGES_PURGED_THROUGH)
    purged = int(mark.value) if mark else 0
    highest = database.execute_sql(f'SELECT MAX("seq") FROM "{table}"').fetchone()[0] or 0
    shift = purged if 0 < highest <= purged else 0
    database.execute_sql(f'ALTER TABLE "{table}" RENAME TO "{table}_old"')
    for index in database.get_indexes(f"{table}_old"):
        database.execute_sql(f'DROP INDEX "{index.name}"')  # its name is the new table's to take
    database.create_tables([models.DeliveryChange])
    columns = ", ".join(f'"{f.column_name}"' for f in models.DeliveryChange._meta.sorted_fields if f.name != "seq")
    database.execute_sql(
        f'INSERT INTO "{table}" ("seq", {columns}) SELECT "seq" + ?, {columns} FROM "{table}_old" ORDER BY "seq"',
        (shift,),
    )
    database.execute_sql(f'DROP TABLE "{table}_old"')
    database.execute_sql("DELETE FROM sqlite_sequence WHERE name = ?", (table,))
    database.execute_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (table, max(highest + shift, purged)))


def _add_event_types_and_webhook_filters(database: Database) -> None:
    database.create_tables([models.EventType, models.PublishedKey])
    run_migrations(SchemaMigrator.from_database(database).add_column("webhook", "filter", TextField(default="")))


# UPGRADES[i] takes a database from schema version i + 1 to i + 2. Append, never
# edit: a newer server upgrades an older database one step at a time.
UPGRADES: list[Callable[[Database], None]] = [
    _add_meta_and_webhook_health,
    _cover_due_deliveries,
    _never_reuse_change_positions,
    _add_event_types_and_webhook_filters,
]
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

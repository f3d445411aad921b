"""Which database errors are the caller's to retry (UNAVAILABLE), which mean a
full disk (RESOURCE_EXHAUSTED), and which are bugs (None: INTERNAL), read from
real errors of SQLite and PostgreSQL's driver, bare and as Peewee wraps them;
and the one exception (DatabaseFault) that the first two reach the job runner
and the delivery worker as."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import grpc
import psycopg2
import psycopg2.errors
import pytest
from conftest import free_port
from peewee import IntegrityError, OperationalError
from playhouse.pool import MaxConnectionsExceeded

from hookline.server.errors import Unavailable
from hookline.server.storage.database import DatabaseFault, FaultLog, database_fault, raising_database_faults


def sqlite_error(tmp_path: Path, kind: str) -> sqlite3.Error:
    path = tmp_path / f"{kind}.db"
    db = sqlite3.connect(path, timeout=0)
    db.execute("CREATE TABLE t (x TEXT UNIQUE)")
    db.commit()
    try:
        if kind == "full":
            page_count = db.execute("PRAGMA page_count").fetchone()[0]
            db.execute(f"PRAGMA max_page_count = {page_count}")
            db.execute("INSERT INTO t VALUES (?)", ("x" * 100_000,))
        elif kind == "locked":
            other = sqlite3.connect(path, timeout=0)
            other.execute("BEGIN IMMEDIATE")
            try:
                db.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
        elif kind == "read-only":
            sqlite3.connect(f"file:{path}?mode=ro", uri=True).execute("INSERT INTO t VALUES ('y')")
        elif kind == "unique":
            db.execute("INSERT INTO t VALUES ('z')")
            db.execute("INSERT INTO t VALUES ('z')")
        elif kind == "syntax":
            db.execute("SELEC 1")
    except sqlite3.Error as error:
        return error
    finally:
        db.close()
    raise AssertionError(f"no {kind} error")


@pytest.mark.parametrize(
    ("kind", "code"),
    [
        ("full", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("locked", grpc.StatusCode.UNAVAILABLE),
        ("read-only", grpc.StatusCode.UNAVAILABLE),
        ("unique", None),
        ("syntax", None),
    ],
)
def test_sqlite_errors(tmp_path: Path, kind: str, code: grpc.StatusCode | None) -> None:
    error = sqlite_error(tmp_path, kind)
    wrapper = IntegrityError if isinstance(error, sqlite3.IntegrityError) else OperationalError
    for raised in (error, wrapper(error, *error.args)):
        fault = database_fault(raised)
        assert (fault.code if fault else None) == code, (kind, raised)


def test_a_full_disk_is_named_in_the_message(tmp_path: Path) -> None:
    fault = database_fault(sqlite_error(tmp_path, "full"))
    assert fault is not None and "disk holding the database is full" in fault.message


def test_a_refused_connection_is_unavailable() -> None:
    with pytest.raises(psycopg2.OperationalError) as caught:
        psycopg2.connect(f"postgresql://postgres@127.0.0.1:{free_port()}/x", connect_timeout=5)
    for raised in (caught.value, OperationalError(caught.value, *caught.value.args)):
        fault = database_fault(raised)
        assert fault is not None and fault.code == grpc.StatusCode.UNAVAILABLE
        assert "Connection refused" in fault.message and "try again" in fault.message


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (psycopg2.errors.lookup("53100")("could not extend file: No space left on device"), "RESOURCE_EXHAUSTED"),
        (psycopg2.errors.lookup("57P01")("terminating connection due to administrator command"), "UNAVAILABLE"),
        (psycopg2.errors.lookup("40P01")("deadlock detected"), "UNAVAILABLE"),
        (psycopg2.InterfaceError("connection already closed"), "UNAVAILABLE"),
        (MaxConnectionsExceeded("Exceeded maximum connections."), "UNAVAILABLE"),
        (psycopg2.errors.lookup("23505")("duplicate key value"), None),
        (psycopg2.errors.lookup("42601")("syntax error"), None),
        (OperationalError("Attempting to close database while transaction is open."), None),
        (ValueError("a bug"), None),
    ],
)
def test_postgresql_and_other_errors(error: Exception, code: str | None) -> None:
    fault = database_fault(error)
    assert (fault.code.name if fault else None) == code


def test_a_peewee_error_wrapped_twice_is_read_to_its_cause() -> None:
    inner = OperationalError(psycopg2.OperationalError("server closed the connection unexpectedly"))
    fault = database_fault(OperationalError(inner, *inner.args))
    assert fault is not None and fault.code == grpc.StatusCode.UNAVAILABLE


def sqlite_table_locked() -> sqlite3.OperationalError:
    """SQLITE_LOCKED: a table another statement of the same connection holds."""
    error = sqlite3.OperationalError("database table is locked")
    error.sqlite_errorcode = 6  # type: ignore[attr-defined]
    return error


# Every kind of "try again" there is, bare and as Peewee wraps it, then errors
# that are the call's own (retrying could not help): (what, the error, the code
# an API caller is told, None for those that are not the database's fault).
RAISED = [
    ("SQLite busy", lambda p: OperationalError(sqlite_error(p, "locked")), "UNAVAILABLE"),
    ("SQLite table locked", lambda p: OperationalError(sqlite_table_locked()), "UNAVAILABLE"),
    ("SQLite read-only", lambda p: sqlite_error(p, "read-only"), "UNAVAILABLE"),
    ("SQLite disk full", lambda p: OperationalError(sqlite_error(p, "full")), "RESOURCE_EXHAUSTED"),
    ("serialization failure", lambda p: psycopg2.errors.lookup("40001")("could not serialize access"), "UNAVAILABLE"),
    ("deadlock", lambda p: OperationalError(psycopg2.errors.lookup("40P01")("deadlock detected")), "UNAVAILABLE"),
    ("server shut down", lambda p: psycopg2.errors.lookup("57P01")("terminating connection"), "UNAVAILABLE"),
    (
        "connection lost",
        lambda p: OperationalError(psycopg2.OperationalError("server closed the connection unexpectedly")),
        "UNAVAILABLE",
    ),
    ("connection closed", lambda p: psycopg2.InterfaceError("connection already closed"), "UNAVAILABLE"),
    ("pool exhausted", lambda p: MaxConnectionsExceeded("Exceeded maximum connections."), "UNAVAILABLE"),
    ("PostgreSQL disk full", lambda p: psycopg2.errors.lookup("53100")("No space left"), "RESOURCE_EXHAUSTED"),
    ("SQLite unique", lambda p: IntegrityError(sqlite_error(p, "unique")), None),
    ("SQLite syntax", lambda p: OperationalError(sqlite_error(p, "syntax")), None),
    ("PostgreSQL unique", lambda p: psycopg2.errors.lookup("23505")("duplicate key value"), None),
    ("misuse", lambda p: OperationalError("Attempting to close database while transaction is open."), None),
    ("a bug", lambda p: ValueError("a bug"), None),
]


@pytest.mark.parametrize(("make", "code"), [(make, code) for _, make, code in RAISED], ids=[r[0] for r in RAISED])
def test_only_faults_of_the_database_come_out_as_a_database_fault(
    tmp_path: Path, make: Callable[[Path], Exception], code: str | None
) -> None:
    error = make(tmp_path)
    with pytest.raises(Exception) as caught, raising_database_faults():
        raise error
    if code is None:
        assert caught.value is error
        return
    assert isinstance(caught.value, DatabaseFault)
    assert caught.value.fault.code.name == code and caught.value.__cause__ is error
    assert database_fault(caught.value) is caught.value.fault  # what the API and the loops' logs read


def test_a_database_fault_raised_again_is_not_wrapped_twice() -> None:
    fault = DatabaseFault(Unavailable("the database is unavailable; try again shortly"))
    with pytest.raises(DatabaseFault) as caught, raising_database_faults():
        raise fault
    assert caught.value is fault


def test_a_background_loop_logs_a_database_fault_in_one_line_and_a_bug_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    faults = FaultLog(logging.getLogger("hookline.test"))
    for _ in range(2):  # once per few seconds
        with pytest.raises(DatabaseFault) as caught, raising_database_faults():
            raise OperationalError(psycopg2.OperationalError("server closed the connection unexpectedly\n..."))
        faults.failure("claiming", caught.value)
    faults.failure("recording", ValueError("a bug"))
    assert [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records] == [
        (
            "WARNING",
            "claiming failed: server closed the connection unexpectedly; retrying until the database is back",
            False,
        ),
        ("ERROR", "recording failed; retrying", True),
    ]

"""The hot-path SQL helpers and SQLite's turn-taking writers, on a real database."""

from __future__ import annotations

import threading

import peewee
import pytest

from hookline.server.storage import models, statements
from tests.conftest import BACKEND


def _attempt(i: int) -> dict[str, object]:
    return dict(
        id=f"att_{i:06d}", delivery_id="dlv_1", number=i, start_time=1_000 + i, duration_ms=3, status_code=200,
        error="", response_headers='{"a":"b"}', response_body=b"\x00ok\xff", response_truncated=i % 2 == 0,
    )  # fmt: skip


def test_insert_rows_stores_every_row_with_its_values_past_the_parameter_limit(db: None) -> None:
    rows = [_attempt(i) for i in range(statements.MAX_PARAMETERS // 10 + 7)]  # more than one statement's worth
    with models.db.atomic():
        statements.insert_rows(models.Attempt, rows)
    stored = {a.id: a for a in models.Attempt.select()}
    assert len(stored) == len(rows)
    last = stored[rows[-1]["id"]]
    assert (last.number, bytes(last.response_body)) == (len(rows) - 1, b"\x00ok\xff")
    assert [stored[f"att_00000{i}"].response_truncated for i in range(2)] == [True, False]


def test_update_rows_changes_only_the_rows_its_keys_pick(db: None) -> None:
    with models.db.atomic():
        statements.insert_rows(models.Attempt, [_attempt(i) for i in range(3)])
        statements.update_rows(models.Attempt, ["status_code", "error"], ["id"], [(500, "boom", "att_000001")])
    got = {a.id: (a.status_code, a.error) for a in models.Attempt.select()}
    assert got == {"att_000000": (200, ""), "att_000001": (500, "boom"), "att_000002": (200, "")}


def test_an_insert_that_fails_leaves_its_transaction_to_roll_back(db: None) -> None:
    with pytest.raises(peewee.IntegrityError):
        with models.db.atomic():
            statements.insert_rows(models.Attempt, [_attempt(1)])
            statements.insert_rows(models.Attempt, [_attempt(1)])  # the same id again
    assert models.Attempt.select().count() == 0


@pytest.mark.skipif(BACKEND != "sqlite", reason="SQLite's single writer")
def test_writers_of_one_process_take_turns_instead_of_failing_when_sqlite_is_locked(db: None) -> None:
    # With no busy timeout at all, any two threads writing at once would get
    # "database is locked"; taking turns, every transaction commits.
    models.db.execute_sql("PRAGMA busy_timeout = 0")
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            models.db.execute_sql("PRAGMA busy_timeout = 0")
            for i in range(50):
                with models.db.atomic():
                    statements.insert_rows(models.Attempt, [_attempt(worker * 1000 + i)])
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            models.db.close()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert models.Attempt.select().count() == 8 * 50

"""Statements with named parameters, the SQL helpers built from models, and
SQLite's turn-taking writers, on a real database."""

from __future__ import annotations

import threading

import peewee
import pytest

from hookline.server.storage import models, statements
from hookline.server.storage.statements import Statement
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


def test_execute_many_changes_only_the_rows_its_keys_pick(db: None) -> None:
    with models.db.atomic():
        statements.insert_rows(models.Attempt, [_attempt(i) for i in range(3)])
        update = Statement('UPDATE "attempt" SET "status_code" = :status, "error" = :error WHERE "id" = :id')
        update.execute_many([dict(error="boom", id="att_000001", status=500)])
    got = {a.id: (a.status_code, a.error) for a in models.Attempt.select()}
    assert got == {"att_000000": (200, ""), "att_000001": (500, "boom"), "att_000002": (200, "")}


# --- named parameters ---------------------------------------------------------------

PICK = Statement('SELECT "id" FROM "attempt" WHERE "number" >= :low AND "id" IN (:ids) AND "number" <= :high')


def test_parameters_bind_by_name_whatever_order_they_are_given_in() -> None:
    sql, params = PICK.bind(dict(high=9, ids=["a", "b", "c"], low=2), postgres=False)
    assert sql == 'SELECT "id" FROM "attempt" WHERE "number" >= ? AND "id" IN (?, ?, ?) AND "number" <= ?'
    assert params == [2, "a", "b", "c", 9]
    sql, params = PICK.bind(dict(low=2, high=9, ids=("a",)), postgres=True)
    assert sql == 'SELECT "id" FROM "attempt" WHERE "number" >= %s AND "id" IN (%s) AND "number" <= %s'
    assert params == [2, "a", 9]


def test_a_missing_or_unknown_name_fails_loudly() -> None:
    with pytest.raises(TypeError, match="missing high"):
        PICK.bind(dict(low=1, ids=["a"]))
    with pytest.raises(TypeError, match="unknown hgih"):
        PICK.bind(dict(low=1, ids=["a"], high=2, hgih=3))
    with pytest.raises(ValueError, match="ids is empty"):
        PICK.bind(dict(low=1, ids=[], high=2))
    with pytest.raises(TypeError, match="no parameter size"):
        PICK.sql(False, size=3)


def test_rows_expand_by_their_keys_and_a_row_with_other_keys_fails() -> None:
    insert = Statement('INSERT INTO "t" ("a", "b") VALUES :rows(a, b)')
    sql, params = insert.bind(dict(rows=[dict(b=2, a=1), dict(a=3, b=4)]), postgres=False)
    assert (sql, params) == ('INSERT INTO "t" ("a", "b") VALUES (?, ?), (?, ?)', [1, 2, 3, 4])
    with pytest.raises(TypeError, match="has keys"):
        insert.bind(dict(rows=[dict(a=1)]))


def test_quoted_text_casts_and_percent_signs_are_left_as_sql() -> None:
    statement = Statement("""SELECT ':not_a_name', "x:y", "n"::bigint FROM "t" WHERE "a" LIKE '5%' AND "b" = :b""")
    assert statement.names == {"b"}
    assert (
        statement.sql(False) == """SELECT ':not_a_name', "x:y", "n"::bigint FROM "t" WHERE "a" LIKE '5%' AND "b" = ?"""
    )
    assert (
        statement.sql(True) == """SELECT ':not_a_name', "x:y", "n"::bigint FROM "t" WHERE "a" LIKE '5%%' AND "b" = %s"""
    )


def test_the_two_backends_texts_must_use_the_same_names() -> None:
    with pytest.raises(ValueError, match="different names"):
        Statement("SELECT :a", postgres="SELECT :b")


def test_a_list_of_rows_past_the_parameter_limit_is_written_in_several_statements(db: None) -> None:
    keys = list(_attempt(0))
    quoted = ", ".join(f'"{key}"' for key in keys)
    insert = Statement(f'INSERT INTO "attempt" ({quoted}) VALUES :rows({", ".join(keys)})')
    rows = [_attempt(i) for i in range(statements.MAX_PARAMETERS // 10 + 7)]
    with models.db.atomic():
        insert.execute(rows=rows)
    assert models.Attempt.select().count() == len(rows)


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

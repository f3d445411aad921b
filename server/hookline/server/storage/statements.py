"""Hot-path statements as plain SQL, built once per shape from the models.

Peewee spends a few hundred microseconds turning each query into SQL, which
dominates the cost of the statements the delivery path, the job runner and the
calls make thousands of times a second. These helpers build the SQL from a
model's own table and column names once, convert values with the model's fields
as Peewee would, and run it within the caller's transaction, if any."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any, TypeVar

from peewee import __exception_wrapper__ as database_errors  # type: ignore[attr-defined]  # not in its stubs

from . import models as m

M = TypeVar("M", bound=m.BaseModel)

# Bound parameters per statement, below SQLite's limit of 32,766.
MAX_PARAMETERS = 30_000


def _param() -> str:
    return m.db.param  # "?" on SQLite, "%s" on PostgreSQL


def _quoted(name: str) -> str:
    return f'"{name}"'


@lru_cache(maxsize=256)
def _insert_sql(model: type[m.BaseModel], columns: tuple[str, ...], rows: int, param: str) -> str:
    fields = [model._meta.fields[c] for c in columns]
    row = "(" + ", ".join([param] * len(columns)) + ")"
    names = ", ".join(_quoted(f.column_name) for f in fields)
    return f"INSERT INTO {_quoted(model._meta.table_name)} ({names}) VALUES " + ", ".join([row] * rows)


def insert_rows(model: type[m.BaseModel], rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT the rows (dicts of field name -> value, all with the same keys),
    as few statements as the parameter limit allows."""
    if not rows:
        return
    columns = tuple(rows[0])
    fields = [model._meta.fields[c] for c in columns]
    per_statement = max(1, MAX_PARAMETERS // len(columns))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        params = [f.db_value(row[c]) for row in chunk for c, f in zip(columns, fields, strict=True)]
        m.db.execute_sql(_insert_sql(model, columns, len(chunk), _param()), params)


@lru_cache(maxsize=256)
def _update_sql(model: type[m.BaseModel], columns: tuple[str, ...], keys: tuple[str, ...], param: str) -> str:
    fields = model._meta.fields
    assignments = ", ".join(f"{_quoted(fields[c].column_name)} = {param}" for c in columns)
    conditions = " AND ".join(f"{_quoted(fields[c].column_name)} = {param}" for c in keys)
    return f"UPDATE {_quoted(model._meta.table_name)} SET {assignments} WHERE {conditions}"


def update_rows(
    model: type[m.BaseModel], columns: Sequence[str], keys: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """UPDATE model SET columns WHERE keys, once per row: each row holds the
    new values of `columns`, then the values of `keys` that pick the rows."""
    columns, keys = tuple(columns), tuple(keys)
    fields = [model._meta.fields[c] for c in columns + keys]
    params = [[f.db_value(v) for f, v in zip(fields, row, strict=True)] for row in rows]
    if not params:
        return
    sql = _update_sql(model, columns, keys, _param())
    with database_errors:
        m.db.cursor().executemany(sql, params)


@lru_cache(maxsize=256)
def _select_sql(model: type[m.BaseModel], keys: tuple[str, ...], param: str) -> str:
    fields = model._meta.fields
    conditions = " AND ".join(f"{_quoted(fields[c].column_name)} = {param}" for c in keys)
    return f"SELECT * FROM {_quoted(model._meta.table_name)} WHERE {conditions}"


def select_where(model: type[M], **equal: Any) -> list[M]:
    """The rows whose fields equal the values given, as model instances."""
    fields = model._meta.fields
    params = [fields[c].db_value(v) for c, v in equal.items()]
    return list(model.raw(_select_sql(model, tuple(equal), _param()), *params))


def first_where(model: type[M], **equal: Any) -> M | None:
    found = select_where(model, **equal)
    return found[0] if found else None


@lru_cache(maxsize=512)
def _select_in_sql(model: type[m.BaseModel], key: str, count: int, param: str) -> str:
    column = _quoted(model._meta.fields[key].column_name)
    return f"SELECT * FROM {_quoted(model._meta.table_name)} WHERE {column} IN ({', '.join([param] * count)})"


def select_in(model: type[M], key: str, values: Iterable[Any]) -> list[M]:
    """The rows whose field `key` is one of `values`, as model instances."""
    field = model._meta.fields[key]
    params = [field.db_value(v) for v in values]
    found: list[M] = []
    for start in range(0, len(params), MAX_PARAMETERS):
        chunk = params[start : start + MAX_PARAMETERS]
        found.extend(model.raw(_select_in_sql(model, key, len(chunk), _param()), *chunk))
    return found


@lru_cache(maxsize=512)
def _update_in_sql(model: type[m.BaseModel], columns: tuple[str, ...], key: str, count: int, param: str) -> str:
    fields = model._meta.fields
    assignments = ", ".join(f"{_quoted(fields[c].column_name)} = {param}" for c in columns)
    column = _quoted(fields[key].column_name)
    return (
        f"UPDATE {_quoted(model._meta.table_name)} SET {assignments} WHERE {column} IN ({', '.join([param] * count)})"
    )


def update_in(model: type[m.BaseModel], values: Mapping[str, Any], key: str, keys: Iterable[Any]) -> None:
    """UPDATE model SET the `values` (field name -> value) WHERE `key` is one of `keys`."""
    fields = model._meta.fields
    assigned = [fields[c].db_value(v) for c, v in values.items()]
    params = [fields[key].db_value(k) for k in keys]
    per_statement = MAX_PARAMETERS - len(assigned)
    for start in range(0, len(params), per_statement):
        chunk = params[start : start + per_statement]
        sql = _update_in_sql(model, tuple(values), key, len(chunk), _param())
        m.db.execute_sql(sql, assigned + chunk)

"""How hot SQL is written and run: `Statement`, a statement written once with
named parameters, and helpers that build plain SQL from a model once per shape.

Peewee spends a few hundred microseconds turning each query into SQL, and as
much again making model instances of the rows it reads, which dominates the
cost of the statements the delivery path, the job runner and the calls make
thousands of times a second. A `Statement` is plain SQL with `:name`
placeholders, compiled once per backend (SQLite's `?`, PostgreSQL's `%s`) and
per shape, bound from keyword arguments by name, so reordering a clause never
shifts a parameter; it hands back tuples or dicts, never model instances. The
statements themselves are in queries.py. Everything runs within the caller's
transaction, if any."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

from peewee import __exception_wrapper__ as database_errors  # type: ignore[attr-defined]  # not in its stubs

from . import models as m
from .database import is_postgres

M = TypeVar("M", bound=m.BaseModel)

# Bound parameters per statement, below SQLite's limit of 32,766.
MAX_PARAMETERS = 30_000

# Compiled texts kept per statement (a shape is how long each list is).
MAX_SHAPES = 256

# A placeholder, outside quotes: `:name`, or `:name(key, ...)` for a list of rows.
# Quoted text and PostgreSQL's `::` casts are matched first so that they are skipped.
_TOKENS = re.compile(r"""'(?:[^']|'')*'|"[^"]*"|::|:([A-Za-z_]\w*)(?:\(([^)]*)\))?""")


@dataclass(frozen=True, slots=True)
class _Placeholder:
    name: str
    keys: tuple[str, ...] | None  # a list of rows, each a mapping of these keys; None: a value or a list


class Statement:
    """One SQL statement with named parameters, e.g.
    `... WHERE "state" = :state AND "id" IN (:ids)`.

    Bound by name (`rows(state=..., ids=[...])`), every name it uses exactly
    once: a missing or unknown name raises TypeError. A name bound to a list or
    tuple expands to one parameter per item (for `IN (:ids)`; an empty one
    raises ValueError, as `IN ()` is no SQL PostgreSQL takes); `:name(a, b)`
    takes a list of rows, each a mapping of exactly those keys, and expands to
    `(?, ?), (?, ?)` (for VALUES). `postgres` is the text for PostgreSQL when it
    differs (e.g. row locks); it must use the same names. Values are handed to
    the driver as they are: a column's Python type (int, str, bytes, bool, None)."""

    def __init__(self, sql: str, *, postgres: str | None = None):
        self.text = {False: sql, True: postgres if postgres is not None else sql}
        parsed = {backend: _placeholders(text) for backend, text in self.text.items()}
        names = {backend: {p.name for p in found} for backend, found in parsed.items()}
        if names[False] != names[True]:
            raise ValueError(f"the SQLite and PostgreSQL texts use different names: {names[False] ^ names[True]}")
        self.names = frozenset(names[False])
        groups = {p.name: p.keys for found in parsed.values() for p in found}
        self._rows = {name: keys for name, keys in groups.items() if keys is not None}
        if len(self._rows) > 1:
            raise ValueError("a statement takes one list of rows at most")
        self._compiled: dict[tuple[Any, ...], tuple[str, tuple[_Placeholder, ...]]] = {}

    # -- compiling

    def sql(self, postgres: bool, **sizes: int | None) -> str:
        """The SQL for a backend, given how many items each list or rows name
        holds (None, the default: a single value). What tests read."""
        if sizes.keys() - self.names:
            raise TypeError(f"no parameter {', '.join(sorted(sizes.keys() - self.names))} in the statement")
        shape = tuple(sizes.get(name) for name in sorted(self.names))
        return self._compile(postgres, shape)[0]

    def _compile(self, postgres: bool, shape: tuple[int | None, ...]) -> tuple[str, tuple[_Placeholder, ...]]:
        key = (postgres, shape)
        found = self._compiled.get(key)
        if found is not None:
            return found
        sizes = dict(zip(sorted(self.names), shape, strict=True))
        param = "%s" if postgres else "?"
        order: list[_Placeholder] = []

        def expand(match: re.Match[str]) -> str:
            name = match.group(1)
            if name is None:  # quoted, or a cast
                return match.group(0)
            keys = self._rows.get(name) if match.group(2) is not None else None
            order.append(_Placeholder(name, keys))
            size = sizes[name]
            if keys is not None:
                return ", ".join(["(" + ", ".join([param] * len(keys)) + ")"] * (size or 0))
            return param if size is None else ", ".join([param] * size)

        # psycopg2 reads every % of a statement with parameters as one of its own.
        text = self.text[postgres].replace("%", "%%") if postgres else self.text[postgres]
        if len(self._compiled) >= MAX_SHAPES:  # callers bound their shapes; this bounds the memory
            self._compiled.clear()
        found = self._compiled[key] = (_TOKENS.sub(expand, text), tuple(order))
        return found

    # -- binding and running

    def bind(self, values: Mapping[str, Any], *, postgres: bool | None = None) -> tuple[str, list[Any]]:
        """The SQL and its parameters for `values` (on the current backend by default)."""
        if values.keys() != self.names:
            missing = sorted(self.names - values.keys())
            unknown = sorted(values.keys() - self.names)
            raise TypeError(
                "statement parameters do not match its names:"
                + (f" missing {', '.join(missing)}" if missing else "")
                + (f" unknown {', '.join(unknown)}" if unknown else "")
                + f"; it takes {', '.join(sorted(self.names))}"
            )
        shape: list[int | None] = []
        for name in sorted(self.names):
            value = values[name]
            if isinstance(value, (list, tuple)):
                if not value:
                    raise ValueError(f"parameter {name} is empty: a statement cannot take an empty list")
                shape.append(len(value))
            elif name in self._rows:
                raise TypeError(f"parameter {name} takes a list of rows")
            else:
                shape.append(None)
        sql, order = self._compile(is_postgres() if postgres is None else postgres, tuple(shape))
        params: list[Any] = []
        for placeholder in order:
            value = values[placeholder.name]
            if placeholder.keys is not None:
                keys = placeholder.keys
                for row in value:
                    if row.keys() != set(keys):
                        raise TypeError(f"a row of {placeholder.name} has keys {sorted(row)}, not {list(keys)}")
                    params.extend([row[k] for k in keys])
            elif isinstance(value, (list, tuple)):
                params.extend(value)
            else:
                params.append(value)
        return sql, params

    def _chunks(self, values: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
        """`values`, its list of rows split so that no statement passes MAX_PARAMETERS."""
        for name, keys in self._rows.items():
            rows = values.get(name)
            if isinstance(rows, (list, tuple)) and len(rows) * len(keys) > MAX_PARAMETERS:
                per_statement = max(1, (MAX_PARAMETERS - (len(self.names) - 1)) // len(keys))
                for start in range(0, len(rows), per_statement):
                    yield {**values, name: rows[start : start + per_statement]}
                return
        yield values

    def execute(self, **values: Any) -> None:
        """Run it (in as many statements as its list of rows needs)."""
        for chunk in self._chunks(values):
            m.db.execute_sql(*self.bind(chunk))

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        """Run it; the rows it gives, as tuples."""
        found: list[tuple[Any, ...]] = []
        for chunk in self._chunks(values):
            found.extend(m.db.execute_sql(*self.bind(chunk)).fetchall())
        return found

    def dicts(self, **values: Any) -> list[dict[str, Any]]:
        """Run it; the rows it gives, as dicts by column name."""
        found: list[dict[str, Any]] = []
        for chunk in self._chunks(values):
            cursor = m.db.execute_sql(*self.bind(chunk))
            names = [column[0] for column in cursor.description]
            found.extend(dict(zip(names, row, strict=True)) for row in cursor.fetchall())
        return found

    def scalar(self, **values: Any) -> Any:
        """Run it; the first column of its first row (None if there is none)."""
        row = m.db.execute_sql(*self.bind(values)).fetchone()
        return None if row is None else row[0]

    def execute_many(self, each: Iterable[Mapping[str, Any]]) -> None:
        """Run it once per mapping of values, all of one shape (single values only)."""
        bound = [self.bind(values) for values in each]
        if not bound:
            return
        sql = bound[0][0]
        if any(other != sql for other, _ in bound):
            raise ValueError("execute_many takes values of one shape")
        with database_errors:
            m.db.cursor().executemany(sql, [params for _, params in bound])


def padded(values: Sequence[str]) -> list[str]:
    """Ids for a list parameter, padded with "" (no row's id) to a power of two,
    so that few shapes of its statement are ever compiled; [""] for none, as a
    statement takes no empty list."""
    size = 1 << max(0, len(values) - 1).bit_length()
    return [*values, *[""] * (size - len(values))]


def _placeholders(text: str) -> list[_Placeholder]:
    found = []
    for match in _TOKENS.finditer(text):
        if match.group(1) is None:
            continue
        keys = None
        if match.group(2) is not None:
            keys = tuple(k.strip() for k in match.group(2).split(","))
            if not all(re.fullmatch(r"[A-Za-z_]\w*", k) for k in keys):
                raise ValueError(f"the rows of :{match.group(1)} name their keys as (key, ...): {match.group(0)}")
        found.append(_Placeholder(match.group(1), keys))
    return found


# --- plain SQL built from a model, once per shape -------------------------------------


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

"""AIP-158 pagination: page_size + opaque page_token, keyset on the id
(ids sort by creation time)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

from peewee import ModelSelect

from ..errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


def _fingerprint(filters: Any) -> str:
    return hashlib.sha256(json.dumps(filters, sort_keys=True).encode()).hexdigest()[:16]


def filtered(
    query: ModelSelect[Any], model: Any, *, after: int | None = None, before: int | None = None, **equal: Any
) -> ModelSelect[Any]:
    """`query` narrowed to rows whose columns equal the given non-empty values and,
    when given, created in [after, before)."""
    for column, value in equal.items():
        if value:
            query = query.where(getattr(model, column) == value)
    if after is not None:
        query = query.where(model.create_time >= after)
    if before is not None:
        query = query.where(model.create_time < before)
    return query


def paginate(
    query: ModelSelect[Any],
    id_field: Any,
    page_size: int,
    page_token: str,
    filters: Any,
    convert: Callable[[Any], T],
    fits: Callable[[T], bool] | None = None,
    descending: bool = False,
) -> tuple[list[T], str]:
    """One page of `query` ordered by id (newest first when `descending`), and the
    token of the next page ('' at the end).

    A token only works with the filters and the order it was issued for. `fits`, when given, is
    asked about each item in turn and ends the page early at the first it refuses
    (the caller's bound on the response's size)."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    fingerprint = _fingerprint([filters, "desc"] if descending else filters)
    if page_token:
        try:
            token = json.loads(base64.urlsafe_b64decode(page_token.encode()))
            after, issued_for = str(token["a"]), token["f"]
        except Exception:
            raise InvalidArgument.field("page_token", "is not a token this service issued") from None
        if issued_for != fingerprint:
            raise InvalidArgument.field(
                "page_token", "was issued for a request with other filters; start again without it"
            )
        query = query.where(id_field < after if descending else id_field > after)
    rows = list(query.order_by(id_field.desc() if descending else id_field).limit(size + 1))
    items: list[T] = []
    for row in rows[:size]:
        item = convert(row)
        if fits is not None and not fits(item):
            break
        items.append(item)
    next_token = ""
    if len(rows) > len(items):
        last = getattr(rows[len(items) - 1], id_field.name)
        next_token = base64.urlsafe_b64encode(json.dumps({"a": last, "f": fingerprint}).encode()).decode()
    return items, next_token

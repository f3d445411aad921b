"""Checks on request fields, shared by the API. Each raises InvalidArgument
naming the field and, for size limits, the limit."""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from . import ids, jsonvalue, subscriptions
from .delivery import targets, urls
from .errors import FieldViolation, InvalidArgument, shown
from .events import EVENT_TYPE_NAMES
from .settings import Limits, Settings

S = TypeVar("S")

# Headers hookline sets itself; a webhook's extra headers may not replace them.
RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "content-type",
        "content-length",
        "user-agent",
        "host",
        "connection",
        "transfer-encoding",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "x-webhook-signature",
        "x-webhook-timestamp",
        "x-webhook-delivery-attempt",
    )
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_MAX_KEY_LENGTH = 255


class Violations:
    """Collects every problem of a request, so the caller learns them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument.fields(self.items)


def alias(v: Violations, field: str, value: str) -> None:
    problem = ids.alias_problem(value)
    if problem:
        v.add(field, problem)


def url(v: Violations, field: str, value: str, settings: Settings) -> None:
    limits = settings.limits
    if not value:
        v.add(field, "is required")
        return
    if len(value) > limits.max_url_length:
        v.add(field, f"is {len(value)} characters; the limit is {limits.max_url_length}")
        return
    problem = urls.problem(value)
    if problem:
        v.add(field, problem)
        return
    address = targets.literal_address(urlsplit(value).hostname or "")
    problem = targets.refusal(address, settings.allowed_networks) if address else None
    if problem:
        v.add(field, problem)


# Far above what one endpoint takes, and within every database's integer column.
MAX_RATE_LIMIT_PER_S = 100_000


def rate_limit(v: Violations, field: str, value: int) -> None:
    if value > MAX_RATE_LIMIT_PER_S:
        v.add(field, f"is {value} requests per second; the limit is {MAX_RATE_LIMIT_PER_S} (0 means no limit)")


def text(v: Violations, field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        v.add(field, f"is {len(value)} characters; the limit is {limit}")


def event_types(
    v: Violations, field: str, values: list[str], limits: Limits, own_types: Collection[str] = ()
) -> list[str]:
    """A webhook's subscriptions: names of the built-in types or of `own_types`
    (the space's), `PREFIX.*` patterns matching at least one of them, or `*`."""
    if not values:
        v.add(field, f"needs at least one event type, from: {', '.join(sorted(EVENT_TYPE_NAMES))}, or a pattern")
        return []
    if len(values) > limits.max_event_types:
        v.add(field, f"has {len(values)} entries; the limit is {limits.max_event_types}")
        return []
    known = EVENT_TYPE_NAMES.union(own_types)
    for i, name in enumerate(values):
        if subscriptions.is_pattern(name):
            problem = subscriptions.pattern_problem(name, known)
            if problem:
                v.add(f"{field}[{i}]", problem)
        elif name not in known:
            v.add(f"{field}[{i}]", f"unknown event type {shown(name)}; ListEventTypes gives the catalog")
    return list(dict.fromkeys(values))


def headers(v: Violations, field: str, values: dict[str, str], limits: Limits) -> None:
    if len(values) > limits.max_headers:
        v.add(field, f"has {len(values)} headers; the limit is {limits.max_headers}")
        return
    for name, value in values.items():
        where = f"{field}[{shown(name)}]"
        if not _TOKEN.fullmatch(name):
            v.add(where, "is not a valid header name")
        elif name.lower() in RESERVED_HEADERS:
            v.add(where, "is set by hookline and cannot be replaced")
        elif len(value) > 4096 or not value.isascii() or any(c in value for c in "\r\n\0"):
            v.add(where, "value must be at most 4096 ASCII characters without line breaks")


def key(v: Violations, field: str, value: str) -> None:
    if len(value) > _MAX_KEY_LENGTH:
        v.add(field, f"is {len(value)} characters; the limit is {_MAX_KEY_LENGTH}")


def json_size(field: str, value: Any, limits: Limits) -> bytes:
    """The value's JSON bytes, or INVALID_ARGUMENT past the size limit."""
    data = jsonvalue.dumps(value)
    if len(data) > limits.max_json_bytes:
        raise InvalidArgument.field(field, f"is {len(data)} bytes as JSON; the limit is {limits.max_json_bytes} bytes")
    return data


def require(field: str, value: str) -> None:
    """A reference field that must be set."""
    if not value:
        raise InvalidArgument.field(field, "is required (an id or an alias)")


def state_filter(field: str, enum: Any, value: int, states: Mapping[int, S]) -> S | None:
    """The state an enum filter asks for, through `states` (the enum's values to
    states; see api/convert.py), or None for unspecified."""
    if value == 0:
        return None
    if value not in states:
        names = ", ".join(enum.Name(v) for v in sorted(states))
        raise InvalidArgument.field(field, f"unknown value {value}; use one of {names}")
    return states[value]


def newest_first(field: str, order_by: str) -> bool:
    """An AIP-132 order of a list by creation time: oldest first unless "create_time desc"."""
    words = order_by.lower().split()
    if words in ([], ["create_time"], ["create_time", "asc"]):
        return False
    if words == ["create_time", "desc"]:
        return True
    raise InvalidArgument.field(field, f"cannot order by {shown(order_by)}; use create_time or create_time desc")


# Timestamps a database can store and compare: years 1 to 9999.
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799


def timestamp_ms(field: str, ts: Any) -> int:
    """A google.protobuf.Timestamp in milliseconds, or INVALID_ARGUMENT when out of range."""
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
        raise InvalidArgument.field(field, "is not a valid time (years 1 to 9999, nanos below 1e9)")
    return ts.ToMilliseconds()


def time_filter(message: Any, name: str) -> int | None:
    """The time filter `name` of a List request in milliseconds, or None when unset."""
    return timestamp_ms(name, getattr(message, name)) if message.HasField(name) else None


def update_paths(mask_paths: Any, message: Any, writable: tuple[str, ...]) -> tuple[str, ...]:
    """The fields an Update replaces: the mask's paths, or, with no mask, the
    writable fields the message sets."""
    if not mask_paths:
        fields = message.DESCRIPTOR.fields_by_name
        return tuple(
            name
            for name in writable
            if (message.HasField(name) if fields[name].has_presence else bool(getattr(message, name)))
        )
    unknown = [p for p in mask_paths if p not in writable]
    if unknown:
        raise InvalidArgument.field(
            "update_mask",
            f"cannot update {', '.join(shown(p) for p in unknown[:5])}; writable fields: {', '.join(writable)}",
        )
    return tuple(dict.fromkeys(mask_paths))

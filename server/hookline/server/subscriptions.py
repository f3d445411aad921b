"""Event type names and the subscriptions a webhook holds: exact names,
`PREFIX.*` patterns and `*` (DESIGN §11).

A name is dot-separated segments, at least two, each 1-64 letters, digits,
`_` or `-` starting with a letter, at most 255 characters in all. Names are
case-sensitive. A pattern `PREFIX.*` takes every type whose name starts with
`PREFIX.` (those created later too); `*` takes every type."""

from __future__ import annotations

import re
from collections.abc import Iterable

from .errors import shown

MAX_NAME_LENGTH = 255
EVERYTHING = "*"
_SEGMENT = r"[A-Za-z][A-Za-z0-9_-]{0,63}"
_NAME = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})+")
_PREFIX = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")


def name_problem(name: str) -> str | None:
    """Why `name` cannot name an event type, or None."""
    if not name:
        return "is required (such as ORDER.PAID)"
    if len(name) > MAX_NAME_LENGTH:
        return f"is {len(name)} characters; the limit is {MAX_NAME_LENGTH}"
    if not _NAME.fullmatch(name):
        return (
            f"{shown(name)} is not an event type name: give two or more segments separated by dots, each "
            "1-64 letters, digits, '_' or '-' starting with a letter (such as ORDER.PAID or billing.invoice.sent)"
        )
    return None


def namespace(name: str) -> str:
    """The first segment, which reserved namespaces are judged by."""
    return name.split(".", 1)[0]


def is_pattern(entry: str) -> bool:
    return entry == EVERYTHING or entry.endswith(".*")


def pattern_problem(pattern: str, known_names: Iterable[str]) -> str | None:
    """Why a webhook may not subscribe with `pattern` (`PREFIX.*`), or None: its
    prefix must be well formed and the namespace of at least one known type."""
    if pattern == EVERYTHING:
        return None
    prefix = pattern[:-2]
    if len(pattern) > MAX_NAME_LENGTH or not _PREFIX.fullmatch(prefix):
        return (
            f"{shown(pattern)} is not a pattern: write PREFIX.* with a prefix of dot-separated segments "
            "(such as ORDER.*), or * for every type"
        )
    if not any(name.startswith(prefix + ".") for name in known_names):
        return f"{shown(pattern)} matches no event type; ListEventTypes gives the catalog"
    return None


def subscribes(entries: Iterable[str], event_type: str) -> bool:
    """Whether a webhook subscribed to `entries` (names and patterns) gets `event_type`."""
    for entry in entries:
        if entry == event_type or entry == EVERYTHING:
            return True
        if entry.endswith(".*") and event_type.startswith(entry[:-1]):
            return True
    return False

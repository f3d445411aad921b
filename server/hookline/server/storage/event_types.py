"""Event types: the built-in catalog (events.CATALOG, read-only) beside each
space's own, which are created, updated and archived (never deleted: their
events and the webhooks subscribed to them stay)."""

from __future__ import annotations

import base64
import json
from typing import Any

from peewee import IntegrityError

from .. import events, subscriptions
from ..errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, shown
from . import models as m
from .database import now_ms
from .paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from .records import EventType

# A space's own types are listed (and patterns checked) from one read of them all.
MAX_EVENT_TYPES_PER_SPACE = 1000

BUILT_IN: dict[str, EventType] = {
    t.name: EventType(
        name=t.name,
        description=t.description,
        data_schema=t.data_schema,
        example=t.example,
        deprecated=False,
        archived=False,
        built_in=True,
        create_time=None,
        update_time=None,
    )
    for t in events.CATALOG
}


def _read_only(name: str) -> FailedPrecondition:
    return FailedPrecondition(f"{shown(name)} is a built-in event type: it is read-only")


def _row(space_id: str, name: str) -> m.EventType:
    row = m.EventType.get_or_none((m.EventType.space_id == space_id) & (m.EventType.name == name))
    if row is None:
        raise NotFound(f"event type {shown(name)} not found; ListEventTypes gives the catalog")
    return row


def get_event_type(space_id: str, name: str) -> EventType:
    if name in BUILT_IN:
        return BUILT_IN[name]
    return EventType.from_row(_row(space_id, name))


def own_names(space_id: str) -> list[str]:
    """The names of the space's own types, archived ones too."""
    rows = m.EventType.select(m.EventType.name).where(m.EventType.space_id == space_id)
    return [row.name for row in rows]


def _as_json(value: dict[str, Any] | None) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def create_event_type(space_id: str, event_type: EventType) -> EventType:
    """Store a new type of the space (its fields already validated)."""
    if subscriptions.namespace(event_type.name).upper() in events.RESERVED_NAMESPACES:
        raise InvalidArgument.field("event_type.name", _reserved(event_type.name))
    now = now_ms()
    try:
        with m.db.atomic():
            count = m.EventType.select().where(m.EventType.space_id == space_id).count()
            if count >= MAX_EVENT_TYPES_PER_SPACE:
                raise ResourceExhausted(
                    f"the space has {count} event types, the most it may hold ({MAX_EVENT_TYPES_PER_SPACE}); "
                    "update an unused one instead"
                )
            m.EventType.insert(
                space_id=space_id,
                name=event_type.name,
                description=event_type.description,
                data_schema=_as_json(event_type.data_schema),
                example=_as_json(event_type.example),
                deprecated=event_type.deprecated,
                archived=False,
                create_time=now,
                update_time=now,
            ).execute()
    except IntegrityError:
        raise AlreadyExists(f"an event type named {shown(event_type.name)} already exists in this space") from None
    return get_event_type(space_id, event_type.name)


def _reserved(name: str) -> str:
    reserved = ", ".join(sorted(events.RESERVED_NAMESPACES))
    return f"{shown(name)} is in a namespace reserved for hookline's own events ({reserved}); choose another"


def update_event_type(space_id: str, name: str, fields: dict[str, Any], check: Any = None) -> EventType:
    """Replace the given fields (description, data_schema, example, deprecated).
    `check(merged)`, when given, validates the type as it would be (an example
    must still match a changed schema) and raises to refuse it."""
    if name in BUILT_IN:
        raise _read_only(name)
    with m.db.atomic():
        current = EventType.from_row(_row(space_id, name))
        if check is not None:
            check({**vars(current), **fields})
        values = {k: _as_json(v) if k in ("data_schema", "example") else v for k, v in fields.items()}
        m.EventType.update(update_time=now_ms(), **values).where(
            (m.EventType.space_id == space_id) & (m.EventType.name == name)
        ).execute()
    return get_event_type(space_id, name)


def archive_event_type(space_id: str, name: str) -> EventType:
    if name in BUILT_IN:
        raise _read_only(name)
    with m.db.atomic():
        _row(space_id, name)
        m.EventType.update(archived=True, update_time=now_ms()).where(
            (m.EventType.space_id == space_id) & (m.EventType.name == name)
        ).execute()
    return get_event_type(space_id, name)


def list_event_types(space_id: str, page_size: int, page_token: str, prefix: str = "") -> tuple[list[EventType], str]:
    """The built-in types and the space's own whose names start with `prefix`,
    by name (code point order); the token resumes after the last name."""
    if page_size < 0:
        raise InvalidArgument.field("page_size", "must not be negative")
    size = min(page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    after = _token_name(page_token, prefix) if page_token else None
    rows = m.EventType.select().where(m.EventType.space_id == space_id)
    every = [*BUILT_IN.values(), *(EventType.from_row(r) for r in rows)]
    chosen = sorted((t for t in every if t.name.startswith(prefix) and (after is None or t.name > after)),
                    key=lambda t: t.name)  # fmt: skip
    page = chosen[:size]
    token = _token(page[-1].name, prefix) if len(chosen) > size else ""
    return page, token


def _token(name: str, prefix: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"a": name, "p": prefix}).encode()).decode()


def _token_name(token: str, prefix: str) -> str:
    try:
        decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
        name, issued_for = str(decoded["a"]), decoded["p"]
    except Exception:
        raise InvalidArgument.field("page_token", "is not a token this service issued") from None
    if issued_for != prefix:
        raise InvalidArgument.field("page_token", "was issued for another prefix; start again without it")
    return name


def publishable(space_id: str, names: list[str]) -> dict[str, m.EventType | NotFound | FailedPrecondition]:
    """For each name, the space's own type to publish it as, or why it cannot be
    published (unknown, built-in, archived), read in one query."""
    rows = {
        r.name: r for r in m.EventType.select().where((m.EventType.space_id == space_id) & m.EventType.name.in_(names))
    }
    found: dict[str, m.EventType | NotFound | FailedPrecondition] = {}
    for name in names:
        row = rows.get(name)
        if name in BUILT_IN:
            found[name] = FailedPrecondition(f"{shown(name)} is a built-in event type: only hookline sends it")
        elif row is None:
            found[name] = NotFound(f"event type {shown(name)} not found; create it first (CreateEventType)")
        elif row.archived:
            found[name] = FailedPrecondition(f"event type {shown(name)} is archived: it can no longer be published")
        else:
            found[name] = row
    return found

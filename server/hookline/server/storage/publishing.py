"""Publishing a space's own events (PublishEvent): each request's event and
its deliveries are written through the same outbox as job ends, many requests
in one transaction (the servicer group-commits them, as StartJob does)."""

from __future__ import annotations

import hashlib
import json
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache, reduce
from typing import Any

from .. import events, subscriptions
from ..errors import AlreadyExists, FieldViolation, HooklineError, InvalidArgument, NotFound, shown
from ..execution import flowdef
from . import models as m
from .database import is_postgres, now_ms
from .deliveries import Outbox, get_event
from .event_types import publishable
from .records import Event


@dataclass(frozen=True)
class PublishRequest:
    space_id: str
    event_type: str
    data: Any  # JSON data, already within the size and depth limits
    data_json: str  # its compact JSON text
    correlation_id: str
    idempotency_key: str
    idempotency_ttl_ms: int
    schema_time: int  # the update_time of the type whose schema the data was checked against


def data_problem(schema: dict[str, Any] | None, data: Any, field: str = "data") -> InvalidArgument | None:
    """The error for `data` that fails its type's schema, or None: a field
    violation whose field is the JSON pointer of the failing value in the
    request (/data/amount)."""
    if schema is None:
        return None
    try:
        errors = flowdef.schema_errors(schema, data)
    except RecursionError:
        return InvalidArgument.field(f"/{field}", "the type's data_schema refers to itself without end")
    if not errors:
        return None
    best = errors[0]
    pointer = "/" + "/".join([field, *(_escape(str(part)) for part in best.absolute_path)])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    description = f"does not match the type's data_schema: {best.message}{more}"
    return InvalidArgument.fields([FieldViolation(pointer, description)])


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def fingerprint(r: PublishRequest) -> str:
    return hashlib.sha256(f"{r.event_type}\0{r.data_json}".encode()).hexdigest()


def publish_events(requests: Sequence[PublishRequest]) -> list[Event | HooklineError]:
    """Publish each request's event, or return the event an earlier request
    with the same idempotency key made (ALREADY_EXISTS when its type or data
    differ), all in one transaction; a request that fails gets its error in
    its place and writes nothing."""
    results: list[Event | HooklineError] = []
    with m.db.atomic():
        now = now_ms()
        keyed = sorted({f"{r.space_id}/{r.idempotency_key}" for r in requests if r.idempotency_key})
        if keyed and is_postgres():
            # Concurrent retries with one key take turns, so only the first publishes;
            # in one order everywhere, so that two batches never wait for each other.
            for (lock,) in m.db.execute_sql(
                "SELECT DISTINCT hashtext(k) FROM unnest(%s) AS k ORDER BY 1", (keyed,)
            ):  # fmt: skip
                m.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock,))
        batch = _Batch(now)
        for r in requests:
            try:
                results.append(batch.publish(r))
            except HooklineError as error:
                results.append(error)
        batch.write()
    return results


def _subscribers(space_id: str, event_type: str) -> list[m.Webhook]:
    """The space's enabled webhooks subscribed to `event_type`, with only what
    fan-out reads of them. A space may have thousands of webhooks: the query
    keeps those whose subscriptions hold the name or a pattern that could take
    it (LIKE may keep a few more: `_` matches any character, and on SQLite
    case is ignored), and subscribes() decides."""
    segments = event_type.split(".")
    could = [event_type, subscriptions.EVERYTHING, *(".".join(segments[:i]) + ".*" for i in range(1, len(segments)))]
    held = reduce(operator.or_, (m.Webhook.event_types.contains(json.dumps(entry)) for entry in could))
    columns = (m.Webhook.id, m.Webhook.event_types, m.Webhook.filter)
    rows = m.Webhook.select(*columns).where((m.Webhook.space_id == space_id) & (m.Webhook.enabled == True) & held)  # noqa: E712
    return [w for w in rows if subscriptions.subscribes(_entries(w.event_types), event_type)]


@lru_cache(maxsize=4096)
def _entries(event_types_json: str) -> tuple[str, ...]:
    """A webhook's subscriptions, parsed once per distinct list."""
    return tuple(json.loads(event_types_json))


class _Batch:
    """The events of one transaction, written together by `write`."""

    def __init__(self, now: int) -> None:
        self.now = now
        self.outbox = Outbox()
        self.types: dict[tuple[str, str], m.EventType | HooklineError] = {}
        self.hooks: dict[tuple[str, str], list[m.Webhook]] = {}  # each type's subscribers, read once
        self.keys: list[dict[str, Any]] = []
        self.stale_keys: list[tuple[str, str]] = []
        self.made: dict[tuple[str, str], tuple[str, Event]] = {}  # by idempotency key: fingerprint, event

    def publish(self, r: PublishRequest) -> Event:
        if (r.space_id, r.event_type) not in self.types:
            self.types.update(
                {(r.space_id, name): found for name, found in publishable(r.space_id, [r.event_type]).items()}
            )
        row = self.types[r.space_id, r.event_type]
        if isinstance(row, HooklineError):
            raise row
        if row.update_time != r.schema_time:  # the type changed since the servicer checked the data
            problem = data_problem(None if row.data_schema is None else json.loads(row.data_schema), r.data)
            if problem is not None:
                raise problem
        print_ = fingerprint(r)
        if r.idempotency_key:
            earlier = self._earlier(r)
            if earlier is not None:
                if earlier[0] != print_:
                    raise AlreadyExists(
                        f"idempotency key {shown(r.idempotency_key)} was already used within the last 24 h "
                        "with a different event type or data"
                    )
                return earlier[1]
        if (r.space_id, r.event_type) not in self.hooks:
            self.hooks[r.space_id, r.event_type] = _subscribers(r.space_id, r.event_type)
        event, _ = self.outbox.add(
            r.space_id,
            r.event_type,
            lambda event_id, time_ms: events.published_event_body(
                r.event_type, r.data, r.correlation_id, r.space_id, event_id, time_ms
            ),
            self.hooks[r.space_id, r.event_type],
            now=self.now,
        )
        if r.idempotency_key:
            self.made[r.space_id, r.idempotency_key] = (print_, event)
            self.keys.append(
                dict(
                    space_id=r.space_id,
                    idempotency_key=r.idempotency_key,
                    event_id=event.id,
                    request_fingerprint=print_,
                    create_time=self.now,
                )
            )
        return event

    def _earlier(self, r: PublishRequest) -> tuple[str, Event] | None:
        """The fingerprint and event of the key's earlier use within its time, if any."""
        made = self.made.get((r.space_id, r.idempotency_key))
        if made is not None:
            return made
        row = m.PublishedKey.get_or_none(
            (m.PublishedKey.space_id == r.space_id) & (m.PublishedKey.idempotency_key == r.idempotency_key)
        )
        if row is None:
            return None
        try:
            if row.create_time > self.now - r.idempotency_ttl_ms:
                return row.request_fingerprint, get_event(r.space_id, row.event_id)
        except NotFound:
            pass  # retention purged its event
        self.stale_keys.append((r.space_id, r.idempotency_key))  # expired: the key is free again
        return None

    def write(self) -> None:
        for space_id, key in self.stale_keys:
            m.PublishedKey.delete().where(
                (m.PublishedKey.space_id == space_id) & (m.PublishedKey.idempotency_key == key)
            ).execute()
        self.outbox.flush()
        if self.keys:
            m.PublishedKey.insert_many(self.keys).execute()

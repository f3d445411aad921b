"""Spaces (tenants) and their API keys."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from peewee import IntegrityError

from .. import ids, notify
from ..errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated, shown
from . import models as m
from . import revocations, statements
from .database import now_ms
from .records import Principal

ROLES = ("management", "solver", "publisher")
DEFAULT_SPACE = "default"


@dataclass(frozen=True)
class IssuedKey:
    key_id: str
    space_id: str
    role: str
    token: str  # hl_<key id>_<secret>: shown once


@dataclass(frozen=True)
class KeyInfo:
    """A key as operators list it: never its secret, which is not stored."""

    id: str
    space_id: str
    role: str
    create_time: int  # ms
    revoke_time: int | None  # ms; None while active


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(space_id: str, role: str) -> IssuedKey:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    m.ApiKey.insert(
        id=key_id, space_id=space_id, role=role, secret_sha256=_hash(secret), create_time=now_ms()
    ).execute()
    return IssuedKey(key_id, space_id, role, f"hl_{key_id}_{secret}")


def create_space(name: str) -> tuple[str, list[IssuedKey]]:
    """A new space with one management and one solver key. Its name follows the
    rule of aliases, so that it prints on one line and reads back as typed."""
    problem = ids.alias_problem(name)
    if problem:
        raise InvalidArgument(f"the space name {shown(name)} {problem}")
    try:
        with m.db.atomic():
            space_id = ids.new_id("sp")
            m.Space.insert(id=space_id, name=name, create_time=now_ms()).execute()
            keys = [create_key(space_id, "management"), create_key(space_id, "solver")]
    except IntegrityError:
        raise AlreadyExists(f"a space named {shown(name)} already exists") from None
    return space_id, keys


def bootstrap() -> IssuedKey | None:
    """On an empty database, create the default space and its management key,
    exactly once even when several processes start together (the space name is
    unique; the loser of the race creates nothing)."""
    try:
        with m.db.atomic():
            if m.Space.select().exists():
                return None
            space_id = ids.new_id("sp")
            m.Space.insert(id=space_id, name=DEFAULT_SPACE, create_time=now_ms()).execute()
            return create_key(space_id, "management")
    except IntegrityError:
        return None  # another process created it first


def space_id_by_name(name: str) -> str:
    row = m.Space.get_or_none(m.Space.name == name)
    if row is None:
        raise NotFound(f"space {shown(name)} not found")
    return row.id


def list_spaces() -> list[tuple[str, str]]:
    return [(r.id, r.name) for r in m.Space.select().order_by(m.Space.create_time)]


def list_keys(space_id: str | None = None) -> list[KeyInfo]:
    q = m.ApiKey.select().order_by(m.ApiKey.create_time)
    if space_id:
        q = q.where(m.ApiKey.space_id == space_id)
    return [KeyInfo(r.id, r.space_id, r.role, r.create_time, r.revoke_time) for r in q]


def revoke_key(key_id: str) -> None:
    updated = (
        m.ApiKey.update(revoke_time=now_ms()).where((m.ApiKey.id == key_id) & m.ApiKey.revoke_time.is_null()).execute()
    )
    if not updated:
        raise NotFound(f"no active key with id {shown(key_id)}")
    # Servers remember authenticated keys: tell every process to forget them.
    notify.after_commit("keys")
    counter = revocations.counter()
    if counter is not None:
        m.db.after_commit(counter.bump)


def inactive_keys(key_ids: Iterable[str]) -> set[str]:
    """Those of `key_ids` that are revoked (or no longer exist), read now: one query."""
    wanted = set(key_ids)
    if not wanted:
        return set()
    rows = statements.select_in(m.ApiKey, "id", sorted(wanted))
    return wanted - {row.id for row in rows if row.revoke_time is None}


def revoked(key_id: str) -> Unauthenticated:
    """The error that ends a stream of a key revoked while it was open."""
    return Unauthenticated(f"API key {key_id} was revoked; this stream is closed")


def require_active(key_id: str) -> None:
    """UNAUTHENTICATED unless the key is still active, as of now (not remembered)."""
    if inactive_keys([key_id]):
        raise revoked(key_id)


# How long a server trusts a key it authenticated without reading it again; a
# revocation makes it forget them all at once (KnownKeys), this only bounds a
# revocation whose wake-up was lost (a PostgreSQL listener reconnecting).
KNOWN_KEY_TTL_S = 5.0


class KnownKeys:
    """Keys that authenticated lately, by key id (the secret's SHA-256 and the
    principal), so that a call needs no database read. Forgotten at every
    revocation: at its commit in this process, by the "keys" wake-up from other
    processes on PostgreSQL, by the revocation counter on the embedded database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, Principal, float]] = {}
        self._forgotten = 0
        self._read_in: tuple[int, int, int] | None = None  # the state() the entries were read in

    def state(self) -> tuple[int, int, int]:
        """What the entries depend on: revocations heard of here and counted
        beside the embedded database, and which database it is."""
        counter = revocations.counter()
        return self._forgotten, counter.value() if counter else 0, id(m.db.obj)

    def get(self, key_id: str, digest: str) -> tuple[Principal | None, tuple[int, int, int]]:
        """The principal of a remembered key with this secret, or None; and the
        state to pass to `remember` after reading the key."""
        state = self.state()
        with self._lock:
            if state != self._read_in:
                self._entries.clear()
                self._read_in = state
                return None, state
            entry = self._entries.get(key_id)
        if entry is None or time.monotonic() - entry[2] > KNOWN_KEY_TTL_S or not hmac.compare_digest(entry[0], digest):
            return None, state
        return entry[1], state

    def remember(self, key_id: str, digest: str, principal: Principal, state: tuple[int, int, int]) -> None:
        """Remember a key read from the database in `state`, unless a revocation came since."""
        with self._lock:
            if state == self._read_in == self.state():
                self._entries[key_id] = (digest, principal, time.monotonic())

    def forget(self) -> None:
        with self._lock:
            self._forgotten += 1
            self._entries.clear()
            self._read_in = None


known_keys = KnownKeys()
notify.hub.subscribe("keys", known_keys.forget)


def authenticate(token: str) -> Principal:
    """The principal of an `hl_<key id>_<secret>` key; UNAUTHENTICATED otherwise."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "hl":
        raise Unauthenticated("malformed API key: expected 'authorization: Bearer hl_<key id>_<secret>'")
    key_id, digest = parts[1], _hash(parts[2])
    principal, state = known_keys.get(key_id, digest)
    if principal is not None:
        return principal
    row = statements.first_where(m.ApiKey, id=key_id)
    if row is None or row.revoke_time is not None or not hmac.compare_digest(row.secret_sha256, digest):
        raise Unauthenticated("unknown or revoked API key")
    principal = Principal(space_id=row.space_id, role=row.role, key_id=row.id)
    known_keys.remember(key_id, digest, principal, state)
    return principal

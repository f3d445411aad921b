"""The master key's check value, kept in the database's meta table: a server
that opens the database with another master key than the one its webhook
secrets are sealed with finds out as it starts, before it seals or opens one."""

from __future__ import annotations

from .. import secretbox
from . import models as m


def stored_check() -> str | None:
    """The check value of the master key this database's secrets are sealed with; None on a new database."""
    row = m.Meta.get_or_none(m.Meta.key == secretbox.KEY_CHECK_NAME)
    return None if row is None else row.value


def store_check(value: str) -> str:
    """Store `value` as the check value unless a process racing this one stored
    one first; the check value stored."""
    m.Meta.insert(key=secretbox.KEY_CHECK_NAME, value=value).on_conflict_ignore().execute()
    return m.Meta.get_by_id(secretbox.KEY_CHECK_NAME).value

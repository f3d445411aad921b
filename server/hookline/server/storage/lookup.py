"""Addressing resources by id or alias, within one space. Another space's
resources are NOT_FOUND like missing ones: their existence is never revealed.

The `*_row` functions hand out Peewee rows, for storage's own modules; the rest
of the server gets ids (`flow_id`) or records (e.g. webhooks.get_webhook)."""

from __future__ import annotations

from .. import ids
from ..errors import NotFound, shown
from . import models as m
from . import statements


def webhook_row(space_id: str, ref: str) -> m.Webhook:
    key = "id" if ids.looks_like_id(ref) else "alias"
    row = statements.first_where(m.Webhook, **{key: ref, "space_id": space_id})
    if row is None:
        raise NotFound(f"webhook {shown(ref)} not found")
    return row


def flow_id(space_id: str, ref: str) -> str:
    """The id of the flow `ref` (an id or an alias) names in the space; NOT_FOUND otherwise."""
    return flow_row(space_id, ref).id


def flow_row(space_id: str, ref: str) -> m.Flow:
    key = "id" if ids.looks_like_id(ref) else "alias"
    row = statements.first_where(m.Flow, **{key: ref, "space_id": space_id})
    if row is None:
        raise NotFound(f"flow {shown(ref)} not found")
    return row

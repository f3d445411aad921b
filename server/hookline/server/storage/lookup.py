"""Addressing resources by id or alias, within one space. Another space's
resources are NOT_FOUND like missing ones: their existence is never revealed."""

from __future__ import annotations

from .. import ids
from ..errors import NotFound, shown
from . import models as m


def webhook_row(space_id: str, ref: str) -> m.Webhook:
    field = m.Webhook.id if ids.looks_like_id(ref) else m.Webhook.alias
    row = m.Webhook.get_or_none((field == ref) & (m.Webhook.space_id == space_id))
    if row is None:
        raise NotFound(f"webhook {shown(ref)} not found")
    return row


def flow_row(space_id: str, ref: str) -> m.Flow:
    field = m.Flow.id if ids.looks_like_id(ref) else m.Flow.alias
    row = m.Flow.get_or_none((field == ref) & (m.Flow.space_id == space_id))
    if row is None:
        raise NotFound(f"flow {shown(ref)} not found")
    return row

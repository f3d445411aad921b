"""Flow queries: versions of the definition, links to webhooks."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from peewee import IntegrityError

from .. import events, ids
from ..errors import AlreadyExists, NotFound
from . import jobs
from . import models as m
from .database import now_ms
from .deliveries import record_event, subscribers
from .lookup import flow_row
from .paging import paginate
from .records import Flow
from .webhooks import space_webhooks


def _record(row: m.Flow, version: int | None = None) -> Flow:
    version = version or row.version
    definition = m.FlowVersion.get_or_none((m.FlowVersion.flow_id == row.id) & (m.FlowVersion.version == version))
    if definition is None:
        raise NotFound(f"flow {row.alias!r} has no version {version} (latest is {row.version})")
    links = [
        wid
        for (wid,) in m.FlowWebhook.select(m.FlowWebhook.webhook_id)
        .where(m.FlowWebhook.flow_id == row.id)
        .order_by(m.FlowWebhook.webhook_id)
        .tuples()
    ]
    return Flow(
        id=row.id,
        space_id=row.space_id,
        alias=row.alias,
        name=row.name,
        description=row.description,
        version=version,
        definition=json.loads(definition.definition),
        webhook_ids=links,
        create_time=row.create_time,
        update_time=row.update_time,
    )


def get_flow(space_id: str, ref: str, version: int = 0) -> Flow:
    return _record(flow_row(space_id, ref), version)


def list_flows(
    space_id: str, page_size: int, page_token: str, fits: Callable[[Flow], bool] | None = None
) -> tuple[list[Flow], str]:
    q = m.Flow.select().where(m.Flow.space_id == space_id)
    return paginate(q, m.Flow.id, page_size, page_token, [], _record, fits)


def _announce(event_type: str, flow: Flow) -> None:
    record_event(
        flow.space_id,
        event_type,
        lambda event_id, time_ms: events.flow_event_body(event_type, flow.__dict__, flow.space_id, event_id, time_ms),
        subscribers(space_webhooks(flow.space_id), event_type),
        flow_id=flow.id,
    )


def _duplicate(alias: str) -> AlreadyExists:
    return AlreadyExists(f"a flow with alias {alias!r} already exists in this space")


def create_flow(
    space_id: str, alias: str, name: str, description: str, definition: dict[str, Any], webhook_ids: list[str]
) -> Flow:
    now = now_ms()
    flow_id = ids.new_id("flow")
    try:
        with m.db.atomic():
            m.Flow.insert(
                id=flow_id,
                space_id=space_id,
                alias=alias,
                name=name,
                description=description,
                version=1,
                create_time=now,
                update_time=now,
            ).execute()
            m.FlowVersion.insert(
                flow_id=flow_id, version=1, definition=json.dumps(definition), create_time=now
            ).execute()
            _link(flow_id, webhook_ids)
            flow = get_flow(space_id, flow_id)
            _announce("FLOW.CREATED", flow)
    except IntegrityError:
        raise _duplicate(alias) from None
    return flow


def _link(flow_id: str, webhook_ids: list[str]) -> None:
    rows = [{"flow_id": flow_id, "webhook_id": w} for w in dict.fromkeys(webhook_ids)]
    if rows:
        m.FlowWebhook.insert_many(rows).on_conflict_ignore().execute()


def update_flow(
    space_id: str,
    ref: str,
    fields: dict[str, Any],
    definition: dict[str, Any] | None,
    webhook_ids: list[str] | None = None,
) -> Flow:
    """Replace fields (and the linked webhooks when given); a changed definition
    becomes a new version."""
    try:
        with m.db.atomic():
            row = flow_row(space_id, ref)
            values = dict(fields)
            now = now_ms()
            if webhook_ids is not None:
                m.FlowWebhook.delete().where(m.FlowWebhook.flow_id == row.id).execute()
                _link(row.id, webhook_ids)
            if definition is not None and definition != _record(row).definition:
                values["version"] = row.version + 1
                m.FlowVersion.insert(
                    flow_id=row.id, version=row.version + 1, definition=json.dumps(definition), create_time=now
                ).execute()
            if values:
                m.Flow.update(update_time=now, **values).where(m.Flow.id == row.id).execute()
                flow = get_flow(space_id, row.id)
                _announce("FLOW.UPDATED", flow)
            else:
                flow = get_flow(space_id, row.id)
    except IntegrityError:
        raise _duplicate(fields.get("alias", "")) from None
    return flow


def delete_flow(space_id: str, ref: str) -> None:
    with m.db.atomic():
        row = flow_row(space_id, ref)
        flow = _record(row)
        jobs.cancel_flow_jobs(row.id)
        _announce("FLOW.DELETED", flow)
        m.FlowWebhook.delete().where(m.FlowWebhook.flow_id == row.id).execute()
        m.FlowVersion.delete().where(m.FlowVersion.flow_id == row.id).execute()
        m.Flow.delete().where(m.Flow.id == row.id).execute()


def set_webhooks(space_id: str, ref: str, webhook_ids: list[str]) -> Flow:
    with m.db.atomic():
        row = flow_row(space_id, ref)
        m.FlowWebhook.delete().where(m.FlowWebhook.flow_id == row.id).execute()
        _link(row.id, webhook_ids)
        m.Flow.update(update_time=now_ms()).where(m.Flow.id == row.id).execute()
    return get_flow(space_id, row.id)


def add_webhook(space_id: str, ref: str, webhook_id: str) -> Flow:
    with m.db.atomic():
        row = flow_row(space_id, ref)
        _link(row.id, [webhook_id])
    return get_flow(space_id, row.id)


def remove_webhook(space_id: str, ref: str, webhook_id: str) -> Flow:
    with m.db.atomic():
        row = flow_row(space_id, ref)
        m.FlowWebhook.delete().where(
            (m.FlowWebhook.flow_id == row.id) & (m.FlowWebhook.webhook_id == webhook_id)
        ).execute()
    return get_flow(space_id, row.id)

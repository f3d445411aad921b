"""Live pages: server-sent events fed by WatchDeliveries, the same change log
and cursor as every other watcher. Each event's id is the stream's cursor, so a
browser that reconnects (EventSource does so by itself, sending Last-Event-ID)
resumes right after the last change it saw, with no gap and no repeat."""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc
from aiohttp import web
from grpc import aio

from hookline.v1 import webhooks_pb2

from . import render
from .pages import DELIVERY_STATES, Pages, session_of
from .rpc import Refused

log = logging.getLogger("hookline.console")

# Ends of a stream the browser should not reconnect after: the page must be reloaded.
_FINAL = (
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.OUT_OF_RANGE,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNAUTHENTICATED,
)


class Live:
    def __init__(self, pages: Pages):
        self.pages = pages
        self.api = pages.api
        self.templates = pages.templates
        self.calls: set[Any] = set()  # open streams, cancelled when the console stops

    def close(self) -> None:
        for call in list(self.calls):
            call.cancel()

    async def deliveries(self, request: web.Request) -> web.StreamResponse:
        """?webhook=ID or ?job=ID, and optionally delivery (one delivery's page),
        state and event_type (the filters of the list), prepend (new rows go first)."""
        query = request.query
        webhook_id, job_id, delivery_id = query.get("webhook", ""), query.get("job", ""), query.get("delivery", "")
        state = query.get("state", "").upper()
        if state and state not in DELIVERY_STATES:
            raise web.HTTPBadRequest(reason="unknown state")
        event_type = query.get("event_type", "")
        cursor = request.headers.get("Last-Event-ID") or query.get("cursor", "")
        watch = webhooks_pb2.WatchDeliveriesRequest(webhook_id=webhook_id, job_id=job_id, cursor=cursor)
        session = session_of(request)
        call = self.api.stream(self.api.webhooks.WatchDeliveries, watch, session.api_key)
        self.calls.add(call)
        try:
            stream = call.__aiter__()
            try:
                first = await stream.__anext__()  # a refusal still gets an error page, not an event stream
            except aio.AioRpcError as error:
                raise Refused(error.code(), error.details() or error.code().name) from None
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
            await response.prepare(request)
            await _send(response, "sync", {}, first.cursor)
            names: dict[str, str] = {}
            try:
                async for message in stream:
                    parts = []
                    if message.kind != webhooks_pb2.DELIVERY_EVENT_KIND_SYNC:
                        parts = await self._parts(
                            request, message.delivery, delivery_id, state, event_type, query, names
                        )
                    await _send(response, "update" if parts else "sync", parts, message.cursor)
            except aio.AioRpcError as error:
                if error.code() in _FINAL:
                    await _send(response, "failed", {"message": error.details() or error.code().name}, None)
                # Otherwise (the server going away, ...) the browser reconnects from its last id.
            except Refused as refusal:
                await _send(response, "failed", {"message": refusal.message}, None)
            except ConnectionResetError:
                pass  # the page was closed
            return response
        finally:
            self.calls.discard(call)
            call.cancel()

    async def _parts(
        self,
        request: web.Request,
        delivery: Any,
        only: str,
        state: str,
        event_type: str,
        query: Any,
        names: dict[str, str],
    ) -> list[dict[str, Any]]:
        if only:
            if delivery.id != only:
                return []
            parts = await self.pages.delivery_parts(request, only)
            return [
                {"id": "delivery-summary", "html": self._render("_delivery_summary.html", **parts)},
                {"id": "attempts", "html": self._render("_attempts.html", **parts)},
            ]
        fits = (not state or render.delivery_state(delivery.state) == state) and (
            not event_type or delivery.event_type == event_type
        )
        show_webhook = bool(query.get("job"))
        if show_webhook and delivery.webhook_id not in names:
            names.update(await self.pages.webhook_names(request, {delivery.webhook_id}))
        row = self._render("_delivery_row.html", delivery=delivery, show_webhook=show_webhook, names=names)
        part: dict[str, Any] = {"id": f"row-{delivery.id}", "html": row}
        if fits and query.get("prepend"):
            part["into"] = "deliveries"
        return [part]

    def _render(self, template: str, **values: Any) -> str:
        return self.templates.get_template(template).render(**values)


async def _send(response: web.StreamResponse, event: str, data: Any, cursor: str | None) -> None:
    lines = [f"event: {event}"]
    if cursor is not None:
        lines.append(f"id: {cursor}")
    lines.append("data: " + json.dumps(data))
    await response.write(("\n".join(lines) + "\n\n").encode())

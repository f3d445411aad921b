"""The console's pages and actions: each handler asks the gRPC API (rpc.py)
with the session's key and renders what it answered. Actions are POSTs that end
in a redirect to the page they act on, with the outcome (or the RPC's refusal)
shown there."""

from __future__ import annotations

import argparse
import asyncio
import secrets
from typing import Any
from urllib.parse import urlencode

import grpc
from aiohttp import web
from google.protobuf import field_mask_pb2

from hookline.cli._values import point_in_time
from hookline.v1 import events_pb2, jobs_pb2, webhooks_pb2

from ..delivery.worker import USER_AGENT
from . import render
from .rpc import Api, Refused
from .sessions import SESSION_COOKIE, SIGNIN_COOKIE, Session, Sessions, same_token

PAGE_SIZE = 50
DELIVERY_STATES = ("PENDING", "SENDING", "SUCCEEDED", "FAILED", "CANCELED")
JOB_STATES = ("WAITING", "RUNNING", "CANCELING", "COMPLETED", "ERROR", "CANCELED")
# How many attempts a delivery page shows at most (newest last).
MAX_ATTEMPT_PAGES = 10


class BadInput(Exception):
    """A parameter the console itself refuses (before any RPC): a 400 page."""


# Where the guard (server.py) puts the session of a request.
SESSION = web.RequestKey("session", Session)


def session_of(request: web.Request) -> Session:
    return request[SESSION]


class Pages:
    def __init__(self, api: Api, sessions: Sessions, templates: Any):
        self.api = api
        self.sessions = sessions
        self.templates = templates

    # --- helpers ---------------------------------------------------------------

    def page(self, request: web.Request, template: str, status: int = 200, **values: Any) -> web.Response:
        session = request.get(SESSION)
        flashes = session.take_flashes() if session else []
        html = self.templates.get_template(template).render(session=session, flashes=flashes, **values)
        return web.Response(text=html, content_type="text/html", status=status)

    async def call(self, request: web.Request, method: Any, message: Any) -> Any:
        return await self.api.call(method, message, session_of(request).api_key)

    def back_to(self, request: web.Request, location: str, outcome: tuple[str, str]) -> web.HTTPSeeOther:
        session_of(request).flash(*outcome)
        return web.HTTPSeeOther(location)

    async def act(self, request: web.Request, location: str, method: Any, message: Any, done: str) -> web.Response:
        """Run an action's RPC; back to `location` saying `done`, or why it was refused."""
        try:
            answer = await self.call(request, method, message)
        except Refused as refusal:
            if refusal.code == grpc.StatusCode.UNAUTHENTICATED:
                raise
            raise self.back_to(request, location, ("error", f"Refused: {refusal.message}")) from None
        raise self.back_to(request, location, ("ok", done.format(answer=answer)))

    async def live_cursor(self, request: web.Request, watch: webhooks_pb2.WatchDeliveriesRequest) -> str:
        """The change log's cursor now: a page lists what it shows after taking it,
        so its live stream, resuming there, misses nothing."""
        call = self.api.stream(self.api.webhooks.WatchDeliveries, watch, session_of(request).api_key)
        try:
            async for message in call:
                return str(message.cursor)
        except grpc.aio.AioRpcError as error:
            raise Refused(error.code(), error.details() or error.code().name) from None
        finally:
            call.cancel()
        raise Refused(grpc.StatusCode.UNAVAILABLE, "the server ended the live stream at once")

    async def webhook_names(self, request: web.Request, ids: set[str]) -> dict[str, str]:
        names = {}
        for webhook_id in ids:
            try:
                webhook = await self.call(
                    request, self.api.webhooks.GetWebhook, webhooks_pb2.GetWebhookRequest(id=webhook_id)
                )
                names[webhook_id] = webhook.alias
            except Refused as refusal:
                if refusal.code != grpc.StatusCode.NOT_FOUND:
                    raise
        return names

    # --- signing in and out ---------------------------------------------------------

    async def signin_form(self, request: web.Request, error: str = "", status: int = 200) -> web.Response:
        if self.sessions.get(request.cookies.get(SESSION_COOKIE)) is not None and not error:
            raise web.HTTPSeeOther("/webhooks")
        # One token per browser, kept while its form is open: other tabs (or the
        # browser's own requests that land here) must not void the form shown.
        given = request.cookies.get(SIGNIN_COOKIE, "")
        csrf = given if len(given) == 43 and given.isascii() else secrets.token_urlsafe(32)
        response = self.page(request, "signin.html", status=status, csrf=csrf, error=error)
        response.set_cookie(SIGNIN_COOKIE, csrf, max_age=600, httponly=True, samesite="Strict", path="/signin")
        return response

    async def signin(self, request: web.Request) -> web.Response:
        form = await request.post()
        if not same_token(str(form.get("csrf", "")), request.cookies.get(SIGNIN_COOKIE, "")):
            return await self.signin_form(request, "The sign-in form expired; sign in again.", 403)
        api_key = str(form.get("api_key", "")).strip()
        if not api_key:
            return await self.signin_form(request, "Enter an API key.", 400)
        if not (api_key.isascii() and api_key.isprintable()) or len(api_key) > 200:
            return await self.signin_form(request, "That is not an API key: they look like hl_<key id>_<secret>.", 401)
        try:
            # A call only management keys may make: the role check is the API's own.
            await self.api.call(self.api.webhooks.ListEventTypes, events_pb2.ListEventTypesRequest(), api_key)
        except Refused as refusal:
            if refusal.code == grpc.StatusCode.UNAUTHENTICATED:
                return await self.signin_form(request, "That API key is unknown or revoked.", 401)
            if refusal.code == grpc.StatusCode.PERMISSION_DENIED:
                return await self.signin_form(
                    request, "The console needs a management key; this one may not manage webhooks.", 403
                )
            return await self.signin_form(request, f"Cannot sign in now: {refusal.message}", 503)
        session = self.sessions.create(api_key)
        response = web.HTTPSeeOther("/webhooks")
        response.set_cookie(
            SESSION_COOKIE,
            session.token,
            max_age=int(self.sessions.ttl_s),
            httponly=True,
            samesite="Strict",
            path="/",
        )
        response.del_cookie(SIGNIN_COOKIE, path="/signin")
        raise response

    async def signout(self, request: web.Request) -> web.Response:
        self.sessions.drop(session_of(request).token)
        response = web.HTTPSeeOther("/signin")
        response.del_cookie(SESSION_COOKIE, path="/")
        raise response

    # --- webhooks --------------------------------------------------------------

    async def webhooks(self, request: web.Request) -> web.Response:
        listing = await self.call(
            request,
            self.api.webhooks.ListWebhooks,
            webhooks_pb2.ListWebhooksRequest(page_size=PAGE_SIZE, page_token=request.query.get("page_token", "")),
        )
        all_stats = await asyncio.gather(
            *(
                self.call(request, self.api.webhooks.GetWebhookStats, webhooks_pb2.GetWebhookStatsRequest(id=w.id))
                for w in listing.webhooks
            )
        )
        counts = {
            stats.webhook_id: {render.delivery_state(c.state): c.count for c in stats.counts} for stats in all_stats
        }
        return self.page(
            request,
            "webhooks.html",
            rows=list(zip(listing.webhooks, all_stats, strict=True)),
            counts=counts,
            states=DELIVERY_STATES,
            next_page_token=listing.next_page_token,
        )

    async def webhook(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        state = _choice(request, "state", DELIVERY_STATES)
        event_type = request.query.get("event_type", "")
        page_token = request.query.get("page_token", "")
        webhook = await self.call(request, self.api.webhooks.GetWebhook, webhooks_pb2.GetWebhookRequest(id=ref))
        cursor = await self.live_cursor(request, webhooks_pb2.WatchDeliveriesRequest(webhook_id=webhook.id))
        listing = await self.call(
            request,
            self.api.webhooks.ListDeliveries,
            webhooks_pb2.ListDeliveriesRequest(
                webhook_id=webhook.id,
                state=_delivery_state(state),
                event_type=event_type,
                order_by="create_time desc",
                page_size=PAGE_SIZE,
                page_token=page_token,
            ),
        )
        catalog = await self.call(request, self.api.webhooks.ListEventTypes, events_pb2.ListEventTypesRequest())
        live = {"webhook": webhook.id, "cursor": cursor, "state": state, "event_type": event_type}
        if not page_token:
            live["prepend"] = "1"  # new deliveries go first on the first page only
        filters = {"state": state, "event_type": event_type}
        return self.page(
            request,
            "webhook.html",
            webhook=webhook,
            deliveries=listing.deliveries,
            states=DELIVERY_STATES,
            state_filter=state,
            event_type_filter=event_type,
            event_types=[t.name for t in catalog.event_types],
            filtered=bool(state or event_type),
            show_webhook=False,
            names={},
            live_url=_url("/live/deliveries", live),
            next_page_token=listing.next_page_token,
            next_url=_url(f"/webhooks/{webhook.id}", {**filters, "page_token": listing.next_page_token}),
        )

    async def set_enabled(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        enabled = (await request.post()).get("enabled") == "on"
        message = webhooks_pb2.UpdateWebhookRequest(
            webhook=webhooks_pb2.Webhook(id=ref, enabled=enabled),
            update_mask=field_mask_pb2.FieldMask(paths=["enabled"]),
        )
        done = "Webhook enabled." if enabled else "Webhook disabled: its pending deliveries are FAILED."
        return await self.act(request, f"/webhooks/{ref}", self.api.webhooks.UpdateWebhook, message, done)

    async def send_test(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        message = webhooks_pb2.SendTestEventRequest(id=ref, message="sent from the console")
        done = "Test event sent: delivery {answer.delivery.id}."
        return await self.act(request, f"/webhooks/{ref}", self.api.webhooks.SendTestEvent, message, done)

    async def recover(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        text = str((await request.post()).get("since", "")).strip()
        try:
            since = point_in_time(text)
        except argparse.ArgumentTypeError as error:
            raise self.back_to(request, f"/webhooks/{ref}", ("error", f"Since: {error}")) from None
        message = webhooks_pb2.RecoverDeliveriesRequest(webhook_id=ref, since=since)
        done = "Re-queued {answer.recovered_count} failed deliveries."
        return await self.act(request, f"/webhooks/{ref}", self.api.webhooks.RecoverDeliveries, message, done)

    # --- deliveries ------------------------------------------------------------

    async def delivery_parts(self, request: web.Request, delivery_id: str) -> dict[str, Any]:
        """What the delivery page shows, and its live updates re-render."""
        delivery = await self.call(
            request, self.api.webhooks.GetDelivery, webhooks_pb2.GetDeliveryRequest(id=delivery_id)
        )
        try:
            webhook = await self.call(
                request, self.api.webhooks.GetWebhook, webhooks_pb2.GetWebhookRequest(id=delivery.webhook_id)
            )
        except Refused as refusal:
            if refusal.code != grpc.StatusCode.NOT_FOUND:
                raise
            webhook = None  # deleted since
        attempts: list[Any] = []
        token = ""
        for _ in range(MAX_ATTEMPT_PAGES):
            page = await self.call(
                request,
                self.api.webhooks.ListAttempts,
                webhooks_pb2.ListAttemptsRequest(delivery_id=delivery.id, page_size=100, page_token=token),
            )
            attempts.extend(page.attempts)
            token = page.next_page_token
            if not token:
                break

        def request_headers(attempt: Any) -> list[tuple[str, str]]:
            return _request_headers(delivery, webhook, attempt)

        return {"delivery": delivery, "webhook": webhook, "attempts": attempts, "request_headers": request_headers}

    async def delivery(self, request: web.Request) -> web.Response:
        delivery_id = request.match_info["id"]
        parts = await self.delivery_parts(request, delivery_id)
        delivery = parts["delivery"]
        cursor = await self.live_cursor(request, webhooks_pb2.WatchDeliveriesRequest(webhook_id=delivery.webhook_id))
        event = await self.call(request, self.api.webhooks.GetEvent, events_pb2.GetEventRequest(id=delivery.event_id))
        live = {"webhook": delivery.webhook_id, "delivery": delivery.id, "cursor": cursor}
        return self.page(request, "delivery.html", body=event.body, live_url=_url("/live/deliveries", live), **parts)

    async def retry(self, request: web.Request) -> web.Response:
        delivery_id = request.match_info["id"]
        message = webhooks_pb2.RetryDeliveryRequest(id=delivery_id)
        done = "Redelivery queued, with the same webhook-id."
        return await self.act(request, f"/deliveries/{delivery_id}", self.api.webhooks.RetryDelivery, message, done)

    # --- jobs and the event catalog ------------------------------------------------

    async def jobs(self, request: web.Request) -> web.Response:
        state = _choice(request, "state", JOB_STATES)
        listing = await self.call(
            request,
            self.api.jobs.ListJobs,
            jobs_pb2.ListJobsRequest(
                state=_job_state(state),
                order_by="create_time desc",
                page_size=PAGE_SIZE,
                page_token=request.query.get("page_token", ""),
            ),
        )
        return self.page(
            request,
            "jobs.html",
            jobs=listing.jobs,
            states=JOB_STATES,
            state_filter=state,
            next_page_token=listing.next_page_token,
            next_url=_url("/jobs", {"state": state, "page_token": listing.next_page_token}),
        )

    async def job(self, request: web.Request) -> web.Response:
        job = await self.call(request, self.api.jobs.GetJob, jobs_pb2.GetJobRequest(id=request.match_info["id"]))
        cursor = await self.live_cursor(request, webhooks_pb2.WatchDeliveriesRequest(job_id=job.id))
        listing = await self.call(
            request,
            self.api.webhooks.ListDeliveries,
            webhooks_pb2.ListDeliveriesRequest(job_id=job.id, order_by="create_time desc", page_size=PAGE_SIZE),
        )
        names = await self.webhook_names(request, {d.webhook_id for d in listing.deliveries})
        return self.page(
            request,
            "job.html",
            job=job,
            deliveries=listing.deliveries,
            show_webhook=True,
            names=names,
            filtered=False,
            live_url=_url("/live/deliveries", {"job": job.id, "cursor": cursor, "prepend": "1"}),
        )

    async def events(self, request: web.Request) -> web.Response:
        catalog = await self.call(request, self.api.webhooks.ListEventTypes, events_pb2.ListEventTypesRequest())
        return self.page(request, "events.html", event_types=catalog.event_types)


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str:
    """A lower-case choice among `allowed` from the query, or ''."""
    value = request.query.get(name, "").lower()
    if value and value.upper() not in allowed:
        raise BadInput(f"{name} must be one of {', '.join(s.lower() for s in allowed)}, not {value[:40]!r}")
    return value


def _delivery_state(state: str) -> webhooks_pb2.DeliveryState.ValueType:
    name = "DELIVERY_STATE_" + (state.upper() or "UNSPECIFIED")
    return webhooks_pb2.DeliveryState.Value(name)


def _job_state(state: str) -> jobs_pb2.JobState.ValueType:
    return jobs_pb2.JobState.Value("JOB_STATE_" + (state.upper() or "UNSPECIFIED"))


def _url(path: str, query: dict[str, str]) -> str:
    given = {k: v for k, v in query.items() if v}
    return f"{path}?{urlencode(given)}" if given else path


def _request_headers(delivery: Any, webhook: Any, attempt: Any) -> list[tuple[str, str]]:
    """The headers an attempt was sent with, as the delivery worker builds them:
    the webhook's own (as they are now; credentials hidden), then hookline's.
    Signatures are made with the webhook's secret at send time and not kept."""
    seconds = str(attempt.start_time.seconds)
    headers = [
        (name, render.shown_header(name, value)) for name, value in sorted((webhook.headers if webhook else {}).items())
    ]
    headers += [
        ("Content-Type", "application/json"),
        ("User-Agent", USER_AGENT),
        ("webhook-id", delivery.event_id),
        ("webhook-timestamp", seconds),
        ("webhook-signature", "v1,… (HMAC-SHA256 with the webhook's secret; not kept)"),
        ("X-Webhook-Signature", "… (HMAC-SHA256 with the webhook's secret; not kept)"),
        ("X-Webhook-Timestamp", seconds),
        ("X-Webhook-Delivery-Attempt", str(attempt.number - 1)),
    ]
    return headers

"""WebhookService: webhooks, events, deliveries, attempts and the live stream."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.protobuf import empty_pb2

from hookline import signing
from hookline.v1 import webhooks_pb2, webhooks_pb2_grpc

from .. import events, filters, streams, validation
from ..errors import InvalidArgument
from ..feeds import ChangeFeed, Wait
from ..settings import Settings
from ..storage import deliveries, event_types, lookup, stats, webhooks
from ..storage.database import now_ms
from ..validation import require
from . import convert, event_service
from .interceptor import principal
from .pages import PageBudget

# What GetWebhookStats counts when the request gives no window.
STATS_WINDOW_S = 24 * 3600.0
WRITABLE = ("alias", "url", "description", "enabled", "event_types", "headers", "rate_limit_per_s", "filter")


def _webhook_fields(
    message: webhooks_pb2.Webhook, paths: tuple[str, ...], settings: Settings, space_id: str
) -> dict[str, Any]:
    """The validated values of `paths` from a Webhook message."""
    v = validation.Violations()
    limits = settings.limits
    fields: dict[str, Any] = {}
    for path in paths:
        field = f"webhook.{path}"
        if path == "alias":
            validation.alias(v, field, message.alias)
        elif path == "url":
            validation.url(v, field, message.url, settings)
        elif path == "description":
            validation.text(v, field, message.description, limits.max_description_length)
        elif path == "rate_limit_per_s":
            validation.rate_limit(v, field, message.rate_limit_per_s)
        elif path == "event_types":
            # Only entries beyond the built-in names need the space's own types.
            beyond = any(n not in events.EVENT_TYPE_NAMES for n in message.event_types)
            own = event_types.own_names(space_id) if beyond else ()
            fields[path] = validation.event_types(v, field, list(message.event_types), limits, own)
            continue
        elif path == "filter":
            try:
                filters.parse(message.filter, field)
            except InvalidArgument as error:
                v.items.extend(error.violations)
        elif path == "headers":
            validation.headers(v, field, dict(message.headers), limits)
            fields[path] = dict(message.headers)
            continue
        elif path == "enabled":
            fields[path] = message.enabled if message.HasField("enabled") else True
            continue
        fields[path] = getattr(message, path)
    v.raise_if_any()
    return fields


class WebhookServicer(webhooks_pb2_grpc.WebhookServiceServicer):
    def __init__(self, settings: Settings, changes: ChangeFeed):
        self._settings = settings
        self._changes = changes

    def CreateWebhook(self, request, context):  # type: ignore[no-untyped-def]
        fields = _webhook_fields(request.webhook, WRITABLE, self._settings, principal().space_id)
        secret = request.secret or signing.generate_secret()
        if request.secret:
            try:
                signing.check_secret(request.secret)
            except ValueError as error:
                raise InvalidArgument.field("secret", str(error)) from None
        created = webhooks.create_webhook(principal().space_id, fields, secret)
        return webhooks_pb2.CreateWebhookResponse(webhook=convert.webhook(created), secret=secret)

    def GetWebhook(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        return convert.webhook(webhooks.get_webhook(principal().space_id, request.id))

    def ListWebhooks(self, request, context):  # type: ignore[no-untyped-def]
        items, token = webhooks.list_webhooks(principal().space_id, request.page_size, request.page_token)
        return webhooks_pb2.ListWebhooksResponse(webhooks=[convert.webhook(w) for w in items], next_page_token=token)

    def UpdateWebhook(self, request, context):  # type: ignore[no-untyped-def]
        require("webhook.id", request.webhook.id)
        fields = _webhook_fields(
            request.webhook,
            validation.update_paths(request.update_mask.paths, request.webhook, WRITABLE),
            self._settings,
            principal().space_id,
        )
        updated = webhooks.update_webhook(principal().space_id, request.webhook.id, fields)
        return convert.webhook(updated)

    def DeleteWebhook(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        webhooks.delete_webhook(principal().space_id, request.id)
        return empty_pb2.Empty()

    def RotateWebhookSecret(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        grace_s = self._settings.rotation_grace_s
        if request.HasField("grace_period"):
            grace_s = request.grace_period.ToMilliseconds() / 1000
            if not 0 <= grace_s <= 30 * 86400:
                raise InvalidArgument.field("grace_period", "must be between 0 and 30 days")
        secret = signing.generate_secret()
        rotated = webhooks.rotate_secret(principal().space_id, request.id, secret, int(grace_s * 1000))
        return webhooks_pb2.RotateWebhookSecretResponse(webhook=convert.webhook(rotated), secret=secret)

    def SendTestEvent(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        v = validation.Violations()
        validation.text(v, "message", request.message, self._settings.limits.max_description_length)
        v.raise_if_any()
        event, delivery = webhooks.send_test_event(
            principal().space_id, request.id, request.message or "This is a test event from hookline."
        )
        return webhooks_pb2.SendTestEventResponse(event=convert.event(event), delivery=convert.delivery(delivery))

    def ListEventTypes(self, request, context):  # type: ignore[no-untyped-def]
        # Deprecated beside EventService.ListEventTypes, which answers the same.
        return event_service.list_event_types(request)

    def GetWebhookStats(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        window_s = STATS_WINDOW_S
        if request.HasField("window"):
            window_s = request.window.ToMilliseconds() / 1000
            if not 0 < window_s <= self._settings.retention_s:
                raise InvalidArgument.field(
                    "window", f"must be positive and at most the retention period ({self._settings.retention_s:g} s)"
                )
        since = now_ms() - int(window_s * 1000)
        return convert.webhook_stats(stats.webhook_stats(principal().space_id, request.id, since))

    def GetDelivery(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        return convert.delivery(deliveries.get_delivery(principal().space_id, request.id))

    def ListDeliveries(self, request, context):  # type: ignore[no-untyped-def]
        space_id = principal().space_id
        webhook_id = webhooks.resolve_ids(space_id, [request.webhook_id])[0] if request.webhook_id else ""
        state = validation.state_filter(
            "state", webhooks_pb2.DeliveryState, request.state, convert.DELIVERY_STATES_FROM_PROTO
        )
        page = PageBudget(convert.delivery)
        _, token = deliveries.list_deliveries(
            space_id,
            request.page_size,
            request.page_token,
            webhook_id=webhook_id,
            job_id=request.job_id,
            event_id=request.event_id,
            event_type=request.event_type,
            state=state,
            after=validation.time_filter(request, "created_after"),
            before=validation.time_filter(request, "created_before"),
            fits=page.fits,
            newest_first=validation.newest_first("order_by", request.order_by),
        )
        return webhooks_pb2.ListDeliveriesResponse(deliveries=page.messages, next_page_token=token)

    def ListAttempts(self, request, context):  # type: ignore[no-untyped-def]
        require("delivery_id", request.delivery_id)
        page = PageBudget(convert.attempt)
        _, token = deliveries.list_attempts(
            principal().space_id, request.delivery_id, request.page_size, request.page_token, page.fits
        )
        return webhooks_pb2.ListAttemptsResponse(attempts=page.messages, next_page_token=token)

    def RetryDelivery(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        return convert.delivery(deliveries.retry_delivery(principal().space_id, request.id))

    def RecoverDeliveries(self, request, context):  # type: ignore[no-untyped-def]
        require("webhook_id", request.webhook_id)
        if not request.HasField("since"):
            raise InvalidArgument.field("since", "is required: deliveries FAILED since this time are re-queued")
        since = validation.timestamp_ms("since", request.since)
        count = deliveries.recover_deliveries(principal().space_id, request.webhook_id, since)
        return webhooks_pb2.RecoverDeliveriesResponse(recovered_count=count)

    def ListEvents(self, request, context):  # type: ignore[no-untyped-def]
        # Deprecated beside EventService.ListEvents, which answers the same.
        return event_service.list_events(request)

    def GetEvent(self, request, context):  # type: ignore[no-untyped-def]
        return event_service.get_event(request)

    # It yields feeds.Wait between messages, for the senders (api/senders.py) to park on.
    def WatchDeliveries(self, request, context) -> Iterator[webhooks_pb2.DeliveryEvent | Wait]:  # type: ignore[no-untyped-def,override]
        space_id = principal().space_id
        set_filters = [f for f in ("webhook_id", "flow_id", "job_id") if getattr(request, f)]
        if len(set_filters) > 1:
            raise InvalidArgument.field(set_filters[1], f"give at most one filter; {set_filters[0]} is already set")
        webhook_id = webhooks.resolve_ids(space_id, [request.webhook_id])[0] if request.webhook_id else ""
        flow_id = request.flow_id
        if flow_id:
            flow_id = lookup.flow_id(space_id, flow_id)
        items = streams.watch_deliveries(
            self._changes,
            principal(),
            webhook_id=webhook_id,
            flow_id=flow_id,
            job_id=request.job_id,
            cursor=request.cursor,
            on_end=context.add_callback,
            heartbeat_s=self._settings.stream_heartbeat_s,
        )
        for item in items:
            if isinstance(item, Wait):  # nothing to send yet (see senders.py)
                yield item
            elif item.change is None:
                yield webhooks_pb2.DeliveryEvent(
                    cursor=item.cursor, kind=webhooks_pb2.DELIVERY_EVENT_KIND_SYNC, time=convert.timestamp(now_ms())
                )
            else:
                yield convert.change(item.change, item.cursor)

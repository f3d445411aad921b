"""`hookline deliveries ...`: list, get, attempts, retry, recover, watch."""

from __future__ import annotations

import argparse
import sys

from hookline.v1 import webhooks_pb2

from . import _values
from ._common import add_paging, print_list
from ._context import Context, Stream
from ._output import clock, enum_name
from ._show import (
    ATTEMPT_HEADERS,
    DELIVERY_HEADERS,
    WebhookNames,
    attempt_row,
    delivery_row,
    show_delivery,
    status_style,
    styled,
)
from ._watch import follow

STATES = ("pending", "sending", "succeeded", "failed", "canceled")


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("deliveries", help="deliveries: an event on its way to a webhook", parents=[common])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[common], help="list deliveries, newest first")
    listing.add_argument("--webhook", default="", help="only this webhook's (id or alias)")
    listing.add_argument("--job", default="", help="only this job's")
    listing.add_argument("--event", default="", help="only this event's (evt_...)")
    listing.add_argument("--state", choices=STATES, type=str.lower, help="only deliveries in this state")
    listing.add_argument(
        "--since", type=_values.point_in_time, metavar="TIME", help="created at or after (RFC 3339, or 2h for 2 h ago)"
    )
    listing.add_argument("--until", type=_values.point_in_time, metavar="TIME", help="created before")
    listing.add_argument("--oldest-first", action="store_true", help="list the oldest first instead")
    add_paging(listing)
    listing.set_defaults(handler=list_deliveries)

    get = actions.add_parser("get", parents=[common], help="show one delivery")
    get.add_argument("id")
    get.set_defaults(handler=get_delivery)

    attempts = actions.add_parser("attempts", parents=[common], help="every attempt of a delivery and its answer")
    attempts.add_argument("id", help="the delivery")
    add_paging(attempts)
    attempts.set_defaults(handler=list_attempts)

    retry = actions.add_parser("retry", parents=[common], help="send a delivery once more, now")
    retry.add_argument("id")
    retry.set_defaults(handler=retry_delivery)

    recover = actions.add_parser("recover", parents=[common], help="re-send a webhook's FAILED deliveries")
    recover.add_argument("webhook", help="webhook id or alias")
    recover.add_argument(
        "--since",
        required=True,
        type=_values.point_in_time,
        metavar="TIME",
        help="deliveries created at or after this (RFC 3339, or a duration ago such as 2h or 7d)",
    )
    recover.set_defaults(handler=recover_deliveries)

    watch = actions.add_parser(
        "watch", parents=[common], help="print each delivery change as it happens (Ctrl-C stops)"
    )
    only = watch.add_mutually_exclusive_group()
    only.add_argument("--webhook", default="", help="only this webhook's (id or alias)")
    only.add_argument("--flow", default="", help="only this flow's jobs' deliveries (id or alias)")
    only.add_argument("--job", default="", help="only this job's")
    watch.add_argument("--cursor", default="", help="resume after this cursor (from a --json line) instead of now")
    watch.set_defaults(handler=watch_deliveries)


def list_deliveries(ctx: Context, args: argparse.Namespace) -> int:
    request = webhooks_pb2.ListDeliveriesRequest(
        webhook_id=args.webhook,
        job_id=args.job,
        event_id=args.event,
        order_by="create_time" if args.oldest_first else "create_time desc",
    )
    if args.state:
        request.state = webhooks_pb2.DeliveryState.Value("DELIVERY_STATE_" + args.state.upper())
    if args.since is not None:
        request.created_after.CopyFrom(args.since)
    if args.until is not None:
        request.created_before.CopyFrom(args.until)
    names = WebhookNames(ctx)
    return print_list(
        ctx,
        args,
        ctx.client.webhooks.ListDeliveries,
        request,
        "deliveries",
        webhooks_pb2.ListDeliveriesResponse,
        DELIVERY_HEADERS,
        lambda delivery: delivery_row(delivery, names),
        noun="deliveries",
    )


def _print_delivery(ctx: Context, delivery: webhooks_pb2.Delivery) -> None:
    if ctx.json:
        ctx.out.message(delivery)
    else:
        show_delivery(ctx, delivery, WebhookNames(ctx))


def get_delivery(ctx: Context, args: argparse.Namespace) -> int:
    _print_delivery(ctx, ctx.call(ctx.client.webhooks.GetDelivery, webhooks_pb2.GetDeliveryRequest(id=args.id)))
    return 0


def list_attempts(ctx: Context, args: argparse.Namespace) -> int:
    return print_list(
        ctx,
        args,
        ctx.client.webhooks.ListAttempts,
        webhooks_pb2.ListAttemptsRequest(delivery_id=args.id),
        "attempts",
        webhooks_pb2.ListAttemptsResponse,
        ATTEMPT_HEADERS,
        attempt_row,
        noun="attempts",
    )


def retry_delivery(ctx: Context, args: argparse.Namespace) -> int:
    _print_delivery(ctx, ctx.call(ctx.client.webhooks.RetryDelivery, webhooks_pb2.RetryDeliveryRequest(id=args.id)))
    return 0


def recover_deliveries(ctx: Context, args: argparse.Namespace) -> int:
    request = webhooks_pb2.RecoverDeliveriesRequest(webhook_id=args.webhook, since=args.since)
    response = ctx.call(ctx.client.webhooks.RecoverDeliveries, request)
    if ctx.json:
        ctx.out.message(response)
    else:
        count = response.recovered_count
        ctx.out.line(f"re-queued {count} failed deliver{'y' if count == 1 else 'ies'} of webhook {args.webhook}")
    return 0


def watch_deliveries(ctx: Context, args: argparse.Namespace) -> int:
    cursor = args.cursor
    names = WebhookNames(ctx)

    def open_stream() -> Stream:
        # After the last message seen: a reopened stream neither repeats nor skips a change.
        request = webhooks_pb2.WatchDeliveriesRequest(
            webhook_id=args.webhook, flow_id=args.flow, job_id=args.job, cursor=cursor
        )
        return ctx.stream(ctx.client.webhooks.WatchDeliveries, request)

    announced = False
    try:
        for change in follow(ctx, open_stream):
            cursor = change.cursor
            if ctx.json:
                ctx.out.message(change, compact=True)
            elif change.kind != webhooks_pb2.DELIVERY_EVENT_KIND_SYNC:
                ctx.out.line(delivery_line(ctx, change, names))
            elif not announced:  # a SYNC also comes at each heartbeat and reconnection
                print(f"watching deliveries of {_watched(args)} (Ctrl-C to stop)", file=sys.stderr, flush=True)
                announced = True
    except KeyboardInterrupt:
        pass
    return 0


def _watched(args: argparse.Namespace) -> str:
    if args.webhook:
        return f"webhook {args.webhook}"
    if args.flow:
        return f"flow {args.flow}"
    if args.job:
        return f"job {args.job}"
    return "the space"


def delivery_line(ctx: Context, change: webhooks_pb2.DeliveryEvent, names: WebhookNames) -> str:
    """One line per change: time, kind, delivery, event type, webhook, and what happened."""
    out = ctx.out
    kind = enum_name(webhooks_pb2.DeliveryEventKind, change.kind, "DELIVERY_EVENT_KIND_")
    delivery = change.delivery
    parts = [
        out.paint(clock(change.time), "dim"),
        styled(out, kind, 15),
        delivery.id,
        delivery.event_type,
        "-> " + names(delivery.webhook_id),
    ]
    if change.kind == webhooks_pb2.DELIVERY_EVENT_KIND_ATTEMPT_STARTED:
        parts.append(f"attempt {delivery.attempt_count + 1}")
    elif change.kind == webhooks_pb2.DELIVERY_EVENT_KIND_ATTEMPT_RESULT:
        attempt = change.attempt
        result = (
            out.paint(str(attempt.status_code), *status_style(attempt.status_code))
            if attempt.status_code
            else out.paint(attempt.error or "no answer", "red")
        )
        parts.append(f"attempt {attempt.number}: {result} in {attempt.duration_ms} ms")
    elif change.kind == webhooks_pb2.DELIVERY_EVENT_KIND_RETRY_SCHEDULED:
        parts.append(f"next attempt at {clock(delivery.next_attempt_time)}")
    elif change.kind in (webhooks_pb2.DELIVERY_EVENT_KIND_SUCCEEDED, webhooks_pb2.DELIVERY_EVENT_KIND_FAILED):
        plural = "s" if delivery.attempt_count != 1 else ""
        parts.append(f"after {delivery.attempt_count} attempt{plural}")
        if change.kind == webhooks_pb2.DELIVERY_EVENT_KIND_FAILED and delivery.last_error:
            parts.append(out.paint(delivery.last_error, "dim"))
    if delivery.job_id:
        parts.append(out.paint(f"job {delivery.job_id}", "dim"))
    return "  ".join(parts)

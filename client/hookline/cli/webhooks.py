"""`hookline webhooks ...`: create, list, get, update, delete, rotate-secret, test."""

from __future__ import annotations

import argparse
import sys
import time

from google.protobuf import field_mask_pb2

from hookline.v1 import webhooks_pb2

from . import _values
from ._common import add_paging, print_list
from ._context import Context
from ._errors import CliError
from ._output import Spinner, timestamp
from ._show import ENDED_DELIVERY, WebhookNames, delivery_progress, enabled_text, show_delivery, show_webhook

JOB_EVENTS = ["JOB.COMPLETED", "JOB.ERROR", "JOB.CANCELED"]
IMPORTED_SECRET = "(the one you gave, not shown)"


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("webhooks", help="webhooks: where events are sent", parents=[common])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[common], help="create a webhook; prints its secret once")
    create.add_argument("alias", help="a name for it, unique in the space (letters, digits, - _ .)")
    create.add_argument("--url", required=True, help="http(s) URL the events are POSTed to")
    _add_webhook_fields(create)
    create.add_argument(
        "--secret", default="", metavar="WHSEC", help="import this whsec_ secret instead of generating one"
    )
    create.add_argument("--disabled", action="store_true", help="create it switched off")
    create.set_defaults(handler=create_webhook)

    listing = actions.add_parser("list", parents=[common], help="list webhooks")
    add_paging(listing)
    listing.set_defaults(handler=list_webhooks)

    get = actions.add_parser("get", parents=[common], help="show one webhook")
    get.add_argument("id", help="id or alias")
    get.set_defaults(handler=get_webhook)

    update = actions.add_parser("update", parents=[common], help="change the given fields of a webhook")
    update.add_argument("id", help="id or alias")
    update.add_argument("--alias", dest="new_alias", help="a new alias")
    update.add_argument("--url")
    _add_webhook_fields(update)
    switch = update.add_mutually_exclusive_group()
    switch.add_argument("--enable", dest="enabled", action="store_true", default=None, help="switch it on")
    switch.add_argument("--disable", dest="enabled", action="store_false", help="switch it off")
    update.set_defaults(handler=update_webhook)

    delete = actions.add_parser("delete", parents=[common], help="delete a webhook (its pending deliveries end)")
    delete.add_argument("id", help="id or alias")
    delete.set_defaults(handler=delete_webhook)

    rotate = actions.add_parser("rotate-secret", parents=[common], help="issue a new secret; prints it once")
    rotate.add_argument("id", help="id or alias")
    rotate.add_argument(
        "--grace",
        type=_values.duration,
        metavar="DURATION",
        help="how long the old secret keeps signing too (default 24h; 0 ends it now)",
    )
    rotate.set_defaults(handler=rotate_secret)

    test = actions.add_parser("test", parents=[common], help="send a WEBHOOK.TEST event to this webhook")
    test.add_argument("id", help="id or alias")
    test.add_argument("--message", default="", help="text carried in the event's data")
    test.add_argument("--wait", action="store_true", help="wait until the delivery ends; exits 1 unless it SUCCEEDED")
    test.set_defaults(handler=send_test)


def _add_webhook_fields(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-e",
        "--event",
        dest="events",
        action="append",
        metavar="TYPE",
        help="event type to receive, or PREFIX.* or *; repeatable (create's default: JOB.COMPLETED, JOB.ERROR, "
        "JOB.CANCELED)",
    )
    parser.add_argument("--description")
    parser.add_argument(
        "-H",
        "--header",
        dest="headers",
        action="append",
        type=_values.header,
        metavar="NAME=VALUE",
        help="extra request header, repeatable",
    )
    parser.add_argument(
        "--rate-limit",
        type=_values.bounded_int(0, 2**32 - 1),
        metavar="N",
        help="requests per second at most (0: no limit)",
    )
    parser.add_argument(
        "--filter",
        metavar="JMESPATH",
        help="send only events whose message this is truthy for, such as \"data.amount > `100`\" ('' for none)",
    )


# --- handlers ---------------------------------------------------------------------------


def create_webhook(ctx: Context, args: argparse.Namespace) -> int:
    webhook = webhooks_pb2.Webhook(
        alias=args.alias,
        url=args.url,
        description=args.description or "",
        event_types=args.events or JOB_EVENTS,
        headers=dict(args.headers or ()),
        rate_limit_per_s=args.rate_limit or 0,
        filter=args.filter or "",
    )
    if args.disabled:
        webhook.enabled = False
    created = ctx.call(
        ctx.client.webhooks.CreateWebhook, webhooks_pb2.CreateWebhookRequest(webhook=webhook, secret=args.secret)
    )
    # A credential is printed only when hookline made it, this once; one the
    # person gave stays off the terminal (and out of logs and scrollback).
    if args.secret:
        created.ClearField("secret")
    if ctx.json:
        ctx.out.message(created)
        return 0
    if args.secret:
        show_webhook(ctx, created.webhook, ("secret", IMPORTED_SECRET))
    else:
        show_webhook(ctx, created.webhook, ("secret", ctx.out.paint(created.secret, "bold")))
        print("the secret is shown only now: store it", file=sys.stderr)
    return 0


def list_webhooks(ctx: Context, args: argparse.Namespace) -> int:
    return print_list(
        ctx,
        args,
        ctx.client.webhooks.ListWebhooks,
        webhooks_pb2.ListWebhooksRequest(),
        "webhooks",
        webhooks_pb2.ListWebhooksResponse,
        ("ALIAS", "ID", "URL", "EVENTS", "ENABLED", "CREATED"),
        lambda w: (w.alias, w.id, w.url, ",".join(w.event_types), enabled_text(w), timestamp(w.create_time)),
        noun="webhooks",
    )


def get_webhook(ctx: Context, args: argparse.Namespace) -> int:
    webhook = ctx.call(ctx.client.webhooks.GetWebhook, webhooks_pb2.GetWebhookRequest(id=args.id))
    if ctx.json:
        ctx.out.message(webhook)
    else:
        show_webhook(ctx, webhook)
    return 0


def update_webhook(ctx: Context, args: argparse.Namespace) -> int:
    webhook = webhooks_pb2.Webhook(id=args.id)
    paths = []
    if args.new_alias is not None:
        webhook.alias = args.new_alias
        paths.append("alias")
    if args.url is not None:
        webhook.url = args.url
        paths.append("url")
    if args.description is not None:
        webhook.description = args.description
        paths.append("description")
    if args.events is not None:
        webhook.event_types.extend(args.events)
        paths.append("event_types")
    if args.headers is not None:
        webhook.headers.update(dict(args.headers))
        paths.append("headers")
    if args.rate_limit is not None:
        webhook.rate_limit_per_s = args.rate_limit
        paths.append("rate_limit_per_s")
    if args.enabled is not None:
        webhook.enabled = args.enabled
        paths.append("enabled")
    if args.filter is not None:
        webhook.filter = args.filter
        paths.append("filter")
    if not paths:
        raise CliError("nothing to update: give at least one of --alias, --url, --event, --enable, ... (see --help)")
    request = webhooks_pb2.UpdateWebhookRequest(webhook=webhook, update_mask=field_mask_pb2.FieldMask(paths=paths))
    updated = ctx.call(ctx.client.webhooks.UpdateWebhook, request)
    if ctx.json:
        ctx.out.message(updated)
    else:
        show_webhook(ctx, updated)
    return 0


def delete_webhook(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.client.webhooks.DeleteWebhook, webhooks_pb2.DeleteWebhookRequest(id=args.id))
    if ctx.json:
        ctx.out.message(response)
    else:
        ctx.out.line(f"deleted webhook {args.id}")
    return 0


def rotate_secret(ctx: Context, args: argparse.Namespace) -> int:
    request = webhooks_pb2.RotateWebhookSecretRequest(id=args.id)
    if args.grace is not None:
        request.grace_period.CopyFrom(args.grace)
    rotated = ctx.call(ctx.client.webhooks.RotateWebhookSecret, request)
    if ctx.json:
        ctx.out.message(rotated)
        return 0
    ctx.out.fields([("webhook", f"{rotated.webhook.alias} ({rotated.webhook.id})"), ("secret", rotated.secret)])
    print("the new secret is shown only now: store it; the old one keeps signing for the grace period", file=sys.stderr)
    return 0


def send_test(ctx: Context, args: argparse.Namespace) -> int:
    sent = ctx.call(
        ctx.client.webhooks.SendTestEvent, webhooks_pb2.SendTestEventRequest(id=args.id, message=args.message)
    )
    delivery = sent.delivery
    if not args.wait:
        if ctx.json:
            ctx.out.message(sent)
        else:
            ctx.out.line(f"sent {sent.event.event_type} event {sent.event.id} as delivery {delivery.id}")
        return 0
    if not ctx.json:
        event = sent.event
        print(f"sent {event.event_type} event {event.id}; waiting for delivery {delivery.id}", file=sys.stderr)
    with Spinner(f"delivery {delivery.id}: {delivery_progress(delivery)}") as spinner:
        while delivery.state not in ENDED_DELIVERY:
            time.sleep(0.25)
            delivery = ctx.call(ctx.client.webhooks.GetDelivery, webhooks_pb2.GetDeliveryRequest(id=delivery.id))
            spinner.update(f"delivery {delivery.id}: {delivery_progress(delivery)}")
    if ctx.json:
        ctx.out.message(delivery)
    else:
        show_delivery(ctx, delivery, WebhookNames(ctx))
    return 0 if delivery.state == webhooks_pb2.DELIVERY_STATE_SUCCEEDED else 1

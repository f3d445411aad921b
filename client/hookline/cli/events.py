"""`hookline events ...`: publish, types, list, get: the events hookline sends
(its own and those the space's services publish), and the exact body each one
carried."""

from __future__ import annotations

import argparse

from hookline.v1 import events_pb2, flows_pb2

from . import _values
from ._common import add_paging, print_list
from ._context import Context
from ._output import timestamp
from ._show import show_event


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("events", help="events: what is sent to webhooks", parents=[common])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    publish = actions.add_parser("publish", parents=[common], help="publish an event of one of the space's types")
    publish.add_argument("event_type", metavar="TYPE", help="an event type of the space (event-types create)")
    publish.add_argument("--data", default="{}", metavar="JSON", help="the event's data, a JSON object (default {})")
    publish.add_argument(
        "--idempotency-key", default="", metavar="KEY", help="the same key within 24 h returns the same event"
    )
    publish.add_argument("--correlation-id", default="", metavar="ID", help="carried in the body's metadata")
    publish.set_defaults(handler=publish_event)

    types = actions.add_parser("types", parents=[common], help="list the event types a webhook can receive")
    types.add_argument("-q", "--quiet", action="store_true", help="print only the names, one per line")
    types.set_defaults(handler=list_event_types)

    listing = actions.add_parser("list", parents=[common], help="list events, oldest first")
    listing.add_argument("--type", dest="event_type", default="", metavar="TYPE", help="only this type (JOB.COMPLETED)")
    listing.add_argument("--job", default="", help="only this job's")
    listing.add_argument("--flow", default="", help="only this flow's (id or alias)")
    listing.add_argument(
        "--since", type=_values.point_in_time, metavar="TIME", help="created at or after (RFC 3339, or 2h for 2 h ago)"
    )
    listing.add_argument("--until", type=_values.point_in_time, metavar="TIME", help="created before")
    add_paging(listing)
    listing.set_defaults(handler=list_events)

    get = actions.add_parser("get", parents=[common], help="show one event and the body it was sent with")
    get.add_argument("id", help="the event (evt_...)")
    get.set_defaults(handler=get_event)


def publish_event(ctx: Context, args: argparse.Namespace) -> int:
    data = _values.to_value(_values.parse_json(args.data, "--data"), "--data")
    request = events_pb2.PublishEventRequest(
        event_type=args.event_type,
        data=data,
        idempotency_key=args.idempotency_key,
        correlation_id=args.correlation_id,
    )
    event = ctx.call(ctx.client.events.PublishEvent, request)
    if ctx.json:
        ctx.out.message(event)
    else:
        show_event(ctx, event)
    return 0


def list_event_types(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.client.events.ListEventTypes, events_pb2.ListEventTypesRequest(page_size=1000))
    if ctx.json:
        ctx.out.message(response)
    elif args.quiet:
        for event_type in response.event_types:
            ctx.out.line(event_type.name)
    else:
        rows = [(t.name, t.description) for t in response.event_types]
        ctx.out.table(("TYPE", "DESCRIPTION"), rows, empty="no event types")
    return 0


def list_events(ctx: Context, args: argparse.Namespace) -> int:
    request = events_pb2.ListEventsRequest(event_type=args.event_type, job_id=args.job)
    if args.flow:
        # The filter takes an id only: an alias would match nothing, silently.
        request.flow_id = ctx.call(ctx.client.flows.GetFlow, flows_pb2.GetFlowRequest(id=args.flow)).id
    if args.since is not None:
        request.created_after.CopyFrom(args.since)
    if args.until is not None:
        request.created_before.CopyFrom(args.until)
    return print_list(
        ctx,
        args,
        ctx.client.events.ListEvents,
        request,
        "events",
        events_pb2.ListEventsResponse,
        ("ID", "TYPE", "JOB", "FLOW", "WEBHOOK", "CREATED"),
        lambda e: (e.id, e.event_type, e.job_id, e.flow_id, e.webhook_id, timestamp(e.create_time)),
        noun="events",
    )


def get_event(ctx: Context, args: argparse.Namespace) -> int:
    event = ctx.call(ctx.client.events.GetEvent, events_pb2.GetEventRequest(id=args.id))
    if ctx.json:
        ctx.out.message(event)
    else:
        show_event(ctx, event)
    return 0

"""`hookline event-types ...`: create, list, get, update, delete: the types of
the events a space publishes itself (and the built-in ones, read-only)."""

from __future__ import annotations

import argparse
import json
import sys

from google.protobuf import field_mask_pb2, json_format

from hookline.v1 import events_pb2

from . import _values
from ._common import add_paging
from ._context import Context
from ._errors import CliError
from ._output import timestamp

SCHEMA_HELP = "JSON Schema of the events' data, from a JSON or YAML file ('-' reads stdin)"
EXAMPLE_HELP = "an example of the data (a JSON object, matching the schema), from a JSON or YAML file"


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("event-types", help="event types: what a space's services publish", parents=[common])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[common], help="create an event type")
    create.add_argument("name", help="dot-separated segments, such as ORDER.PAID (JOB, FLOW, WEBHOOK are reserved)")
    create.add_argument("--description", default="")
    create.add_argument("--schema", metavar="FILE", help=SCHEMA_HELP)
    create.add_argument("--example", metavar="FILE", help=EXAMPLE_HELP)
    create.add_argument("--deprecated", action="store_true", help="mark it deprecated")
    create.set_defaults(handler=create_event_type)

    listing = actions.add_parser("list", parents=[common], help="list the built-in types and the space's own")
    listing.add_argument("--prefix", default="", help="only names starting with this, such as ORDER.")
    add_paging(listing)
    listing.set_defaults(handler=list_event_types)

    get = actions.add_parser("get", parents=[common], help="show one event type, its schema and example")
    get.add_argument("name")
    get.set_defaults(handler=get_event_type)

    update = actions.add_parser("update", parents=[common], help="change the given fields of an event type")
    update.add_argument("name")
    update.add_argument("--description")
    update.add_argument("--schema", metavar="FILE", help=SCHEMA_HELP)
    update.add_argument("--example", metavar="FILE", help=EXAMPLE_HELP)
    state = update.add_mutually_exclusive_group()
    state.add_argument("--deprecated", dest="deprecated", action="store_true", default=None, help="mark it deprecated")
    state.add_argument("--not-deprecated", dest="deprecated", action="store_false", help="no longer deprecated")
    update.set_defaults(handler=update_event_type)

    delete = actions.add_parser(
        "delete", parents=[common], help="archive an event type: no more publishes; webhooks and events stay"
    )
    delete.add_argument("name")
    delete.set_defaults(handler=delete_event_type)


def _document(path: str, what: str):  # type: ignore[no-untyped-def]
    return _values.to_struct(_values.read_document(path, what), f"the {what} in {path}")


def show_event_type(ctx: Context, event_type: events_pb2.EventType) -> None:
    if ctx.json:
        ctx.out.message(event_type)
        return
    state = "archived" if event_type.archived else "deprecated" if event_type.deprecated else "active"
    ctx.out.fields(
        [
            ("name", event_type.name),
            ("description", event_type.description or None),
            ("state", f"{state} (built-in)" if event_type.built_in else state),
            ("created", timestamp(event_type.create_time) if event_type.HasField("create_time") else None),
            ("updated", timestamp(event_type.update_time) if event_type.HasField("update_time") else None),
        ]
    )
    for label, field in (("schema", "data_schema"), ("example", "example")):
        if event_type.HasField(field):  # type: ignore[arg-type]
            ctx.out.line(f"{label}:")
            document = json_format.MessageToDict(getattr(event_type, field))
            ctx.out.line(json.dumps(document, indent=2, ensure_ascii=False))


def create_event_type(ctx: Context, args: argparse.Namespace) -> int:
    event_type = events_pb2.EventType(name=args.name, description=args.description, deprecated=args.deprecated)
    if args.schema:
        event_type.data_schema.CopyFrom(_document(args.schema, "schema"))
    if args.example:
        event_type.example.CopyFrom(_document(args.example, "example"))
    created = ctx.call(ctx.client.events.CreateEventType, events_pb2.CreateEventTypeRequest(event_type=event_type))
    show_event_type(ctx, created)
    return 0


def list_event_types(ctx: Context, args: argparse.Namespace) -> int:
    request = events_pb2.ListEventTypesRequest(prefix=args.prefix, page_size=args.page_size, page_token=args.page_token)
    items, token = ctx.pages(ctx.client.events.ListEventTypes, request, "event_types", follow=args.all)
    if ctx.json:
        ctx.out.message(events_pb2.ListEventTypesResponse(event_types=items, next_page_token=token))
        return 0
    if args.quiet:
        for item in items:
            ctx.out.line(item.name)
        return 0
    rows = [
        (t.name, "built-in" if t.built_in else "archived" if t.archived else "deprecated" if t.deprecated else "",
         t.description)
        for t in items
    ]  # fmt: skip
    ctx.out.table(("TYPE", "STATE", "DESCRIPTION"), rows, empty="no event types")
    if token:
        print(f"more event types: add --page-token {token} (or --all)", file=sys.stderr)
    return 0


def get_event_type(ctx: Context, args: argparse.Namespace) -> int:
    show_event_type(ctx, ctx.call(ctx.client.events.GetEventType, events_pb2.GetEventTypeRequest(name=args.name)))
    return 0


def update_event_type(ctx: Context, args: argparse.Namespace) -> int:
    event_type = events_pb2.EventType(name=args.name)
    paths = []
    if args.description is not None:
        event_type.description = args.description
        paths.append("description")
    if args.schema is not None:
        event_type.data_schema.CopyFrom(_document(args.schema, "schema"))
        paths.append("data_schema")
    if args.example is not None:
        event_type.example.CopyFrom(_document(args.example, "example"))
        paths.append("example")
    if args.deprecated is not None:
        event_type.deprecated = args.deprecated
        paths.append("deprecated")
    if not paths:
        raise CliError("nothing to update: give at least one of --description, --schema, --example, --deprecated")
    request = events_pb2.UpdateEventTypeRequest(
        event_type=event_type, update_mask=field_mask_pb2.FieldMask(paths=paths)
    )
    show_event_type(ctx, ctx.call(ctx.client.events.UpdateEventType, request))
    return 0


def delete_event_type(ctx: Context, args: argparse.Namespace) -> int:
    archived = ctx.call(ctx.client.events.DeleteEventType, events_pb2.DeleteEventTypeRequest(name=args.name))
    if ctx.json:
        ctx.out.message(archived)
    else:
        ctx.out.line(f"archived event type {archived.name}")
    return 0

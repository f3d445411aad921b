"""`hookline flows ...`: create, list, get, update, delete, link, unlink, set-webhooks."""

from __future__ import annotations

import argparse

from google.protobuf import field_mask_pb2

from hookline.v1 import flows_pb2

from . import _values
from ._common import add_paging, print_list
from ._context import Context
from ._errors import CliError
from ._output import timestamp
from ._show import show_flow

DEFINITION_HELP = (
    'JSON or YAML file (- for stdin) with the definition: {"steps": [...], "input_schema": {...}, "timeout_seconds": N}'
)


def add_commands(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("flows", help="integration flows: what jobs run", parents=[common])
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[common], help="create a flow from a definition file")
    create.add_argument("alias", help="a name for it, unique in the space (letters, digits, - _ .)")
    create.add_argument("--definition", required=True, metavar="FILE", help=DEFINITION_HELP)
    create.add_argument("--name", default="")
    create.add_argument("--description", default="")
    create.add_argument(
        "-w", "--webhook", dest="webhooks", action="append", default=[], metavar="ID", help="link a webhook, repeatable"
    )
    create.set_defaults(handler=create_flow)

    listing = actions.add_parser("list", parents=[common], help="list flows")
    add_paging(listing)
    listing.set_defaults(handler=list_flows)

    get = actions.add_parser("get", parents=[common], help="show one flow and its definition")
    get.add_argument("id", help="id or alias")
    get.add_argument("--version", type=_values.INT32, default=0, help="an earlier version (default: the latest)")
    get.set_defaults(handler=get_flow)

    update = actions.add_parser("update", parents=[common], help="change a flow; a new definition is a new version")
    update.add_argument("id", help="id or alias")
    update.add_argument("--definition", metavar="FILE", help=DEFINITION_HELP)
    update.add_argument("--alias", dest="new_alias", help="a new alias")
    update.add_argument("--name")
    update.add_argument("--description")
    update.set_defaults(handler=update_flow)

    delete = actions.add_parser("delete", parents=[common], help="delete a flow (cancels its waiting and running jobs)")
    delete.add_argument("id", help="id or alias")
    delete.set_defaults(handler=delete_flow)

    link = actions.add_parser("link", parents=[common], help="send a flow's job events to these webhooks too")
    link.add_argument("flow", help="flow id or alias")
    link.add_argument("webhooks", nargs="+", metavar="WEBHOOK", help="webhook ids or aliases")
    link.set_defaults(handler=link_webhooks)

    unlink = actions.add_parser("unlink", parents=[common], help="stop sending a flow's job events to these webhooks")
    unlink.add_argument("flow", help="flow id or alias")
    unlink.add_argument("webhooks", nargs="+", metavar="WEBHOOK", help="webhook ids or aliases")
    unlink.set_defaults(handler=unlink_webhooks)

    replace = actions.add_parser(
        "set-webhooks", parents=[common], help="send a flow's job events to exactly these webhooks (none: to none)"
    )
    replace.add_argument("flow", help="flow id or alias")
    replace.add_argument("webhooks", nargs="*", metavar="WEBHOOK", help="webhook ids or aliases")
    replace.set_defaults(handler=set_webhooks)


def _definition(path: str):  # type: ignore[no-untyped-def]
    return _values.to_struct(_values.read_document(path, "definition"), f"the definition in {path}")


def _print_flow(ctx: Context, flow: flows_pb2.Flow) -> None:
    if ctx.json:
        ctx.out.message(flow)
    else:
        show_flow(ctx, flow)


def create_flow(ctx: Context, args: argparse.Namespace) -> int:
    flow = flows_pb2.Flow(
        alias=args.alias,
        name=args.name,
        description=args.description,
        definition=_definition(args.definition),
        webhook_ids=args.webhooks,
    )
    _print_flow(ctx, ctx.call(ctx.client.flows.CreateFlow, flows_pb2.CreateFlowRequest(flow=flow)))
    return 0


def list_flows(ctx: Context, args: argparse.Namespace) -> int:
    return print_list(
        ctx,
        args,
        ctx.client.flows.ListFlows,
        flows_pb2.ListFlowsRequest(),
        "flows",
        flows_pb2.ListFlowsResponse,
        ("ALIAS", "ID", "NAME", "VERSION", "WEBHOOKS", "UPDATED"),
        lambda f: (f.alias, f.id, f.name, f.version, len(f.webhook_ids), timestamp(f.update_time)),
        noun="flows",
    )


def get_flow(ctx: Context, args: argparse.Namespace) -> int:
    flow = ctx.call(ctx.client.flows.GetFlow, flows_pb2.GetFlowRequest(id=args.id, version=args.version))
    _print_flow(ctx, flow)
    return 0


def update_flow(ctx: Context, args: argparse.Namespace) -> int:
    flow = flows_pb2.Flow(id=args.id)
    paths = []
    if args.definition is not None:
        flow.definition.CopyFrom(_definition(args.definition))
        paths.append("definition")
    if args.new_alias is not None:
        flow.alias = args.new_alias
        paths.append("alias")
    if args.name is not None:
        flow.name = args.name
        paths.append("name")
    if args.description is not None:
        flow.description = args.description
        paths.append("description")
    if not paths:
        raise CliError("nothing to update: give --definition, --alias, --name or --description")
    request = flows_pb2.UpdateFlowRequest(flow=flow, update_mask=field_mask_pb2.FieldMask(paths=paths))
    _print_flow(ctx, ctx.call(ctx.client.flows.UpdateFlow, request))
    return 0


def delete_flow(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.client.flows.DeleteFlow, flows_pb2.DeleteFlowRequest(id=args.id))
    if ctx.json:
        ctx.out.message(response)
    else:
        ctx.out.line(f"deleted flow {args.id}")
    return 0


def link_webhooks(ctx: Context, args: argparse.Namespace) -> int:
    flow = None
    for webhook in args.webhooks:
        request = flows_pb2.AddFlowWebhookRequest(flow_id=args.flow, webhook_id=webhook)
        flow = ctx.call(ctx.client.flows.AddFlowWebhook, request)
    return _print_links(ctx, flow)


def unlink_webhooks(ctx: Context, args: argparse.Namespace) -> int:
    flow = None
    for webhook in args.webhooks:
        request = flows_pb2.RemoveFlowWebhookRequest(flow_id=args.flow, webhook_id=webhook)
        flow = ctx.call(ctx.client.flows.RemoveFlowWebhook, request)
    return _print_links(ctx, flow)


def set_webhooks(ctx: Context, args: argparse.Namespace) -> int:
    request = flows_pb2.SetFlowWebhooksRequest(flow_id=args.flow, webhook_ids=args.webhooks)
    return _print_links(ctx, ctx.call(ctx.client.flows.SetFlowWebhooks, request))


def _print_links(ctx: Context, flow: flows_pb2.Flow | None) -> int:
    assert flow is not None  # argparse asks for at least one webhook to link or unlink
    if ctx.json:
        ctx.out.message(flow)
        return 0
    request = flows_pb2.ListFlowWebhooksRequest(flow_id=flow.id)
    webhooks, _ = ctx.pages(ctx.client.flows.ListFlowWebhooks, request, "webhooks", follow=True)
    linked = ", ".join(f"{w.alias} ({w.id})" for w in webhooks) or "no webhook"
    ctx.out.line(f"flow {flow.alias} sends its job events to {linked}")
    return 0

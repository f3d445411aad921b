"""Pieces the resource commands share: list paging options and their output."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from google.protobuf.message import Message

from . import _values
from ._context import Context

Handler = Callable[[Context, argparse.Namespace], int]


def add_paging(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("paging")
    group.add_argument(
        "--page-size", type=_values.INT32, default=0, metavar="N", help="items per page (server default 50)"
    )
    group.add_argument("--page-token", default="", metavar="TOKEN", help="continue from a previous page")
    group.add_argument("--all", action="store_true", help="follow every page")
    group.add_argument("-q", "--quiet", action="store_true", help="print only ids, one per line")


def print_list(
    ctx: Context,
    args: argparse.Namespace,
    method: Callable[..., Any],
    request: Message,
    field: str,
    response_type: type[Message],
    headers: Sequence[str],
    row: Callable[[Any], Sequence[Any]],
    *,
    noun: str,
) -> int:
    request.page_size = args.page_size  # type: ignore[attr-defined]
    request.page_token = args.page_token  # type: ignore[attr-defined]
    items, token = ctx.pages(method, request, field, follow=args.all)
    if ctx.json:
        response = response_type(next_page_token=token)
        getattr(response, field).extend(items)
        ctx.out.message(response)
        return 0
    if args.quiet:
        for item in items:
            ctx.out.line(item.id)
        return 0
    ctx.out.table(headers, [row(item) for item in items], empty=f"no {noun}")
    if token:
        print(f"more {noun}: add --page-token {token} (or --all)", file=sys.stderr)
    return 0

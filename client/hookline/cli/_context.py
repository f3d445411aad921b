"""What every API command shares: the connection (address and key from the
global options or the environment), the printer, and the call deadline."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from hookline.client import Client, find_api_key
from hookline.client._connection import DEFAULT_ADDRESS

from ._errors import CliError
from ._output import Printer
from ._values import positive_seconds

DEFAULT_TIMEOUT_S = 30.0


def add_global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The connection and output options. They go on the top-level parser (with
    defaults) and on every command (without), so they work before or after it."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--address",
        default=default(None),
        metavar="HOST:PORT",
        help=f"the hookline server (default: HOOKLINE_ADDRESS, else {DEFAULT_ADDRESS})",
    )
    group.add_argument(
        "--key",
        default=default(None),
        metavar="API_KEY",
        help="API key (default: HOOKLINE_API_KEY, else the key file)",
    )
    group.add_argument(
        "--key-file",
        default=default(None),
        type=Path,
        metavar="PATH",
        help="file holding the API key (default: $HOOKLINE_DATA_DIR/admin.key, else .hookline/admin.key)",
    )
    group.add_argument(
        "--timeout",
        default=default(DEFAULT_TIMEOUT_S),
        type=positive_seconds,
        metavar="SECONDS",
        help=f"deadline of each call (default {DEFAULT_TIMEOUT_S:g}; watches have none)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON (protobuf's JSON mapping) instead of tables; watches print one object per line",
    )


class Stream(Protocol):
    """A server stream as the commands read it: its messages, and cancel() to end it."""

    def __iter__(self) -> Iterator[Any]: ...

    def cancel(self) -> bool: ...


class Context:
    """One command's connection to hookline, opened on first use."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.address: str = args.address or os.environ.get("HOOKLINE_ADDRESS") or DEFAULT_ADDRESS
        self.timeout: float = args.timeout
        self.out = Printer(as_json=args.json)
        self._client: Client | None = None

    @property
    def json(self) -> bool:
        return self.out.as_json

    @property
    def client(self) -> Client:
        if self._client is None:
            key = self.args.key or self._key_from_sources()
            self._client = Client(self.address, key)
        return self._client

    def _key_from_sources(self) -> str:
        try:
            return find_api_key(self.args.key_file)
        except RuntimeError as error:
            raise CliError(f"{error}, or pass --key") from None
        except OSError as error:
            raise CliError(f"cannot read the key file {self.args.key_file}: {error.strerror or error}") from None

    def call(self, method: Callable[..., Any], request: Any) -> Any:
        """A unary call with the command's deadline."""
        return method(request, timeout=self.timeout)

    def stream(self, method: Callable[..., Any], request: Any) -> Stream:
        """A server stream; it has no deadline (Ctrl-C ends it)."""
        return method(request)

    def pages(self, method: Callable[..., Any], request: Any, field: str, *, follow: bool) -> tuple[list[Any], str]:
        """The items of one page, or of every page when `follow`; and the next page token."""
        items: list[Any] = []
        while True:
            response = self.call(method, request)
            items.extend(getattr(response, field))
            token = response.next_page_token
            if not follow or not token:
                return items, token
            request.page_token = token

    def reconnect(self) -> None:
        """Drop the connection; the next call opens a new one."""
        self.close()
        self._client = None

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

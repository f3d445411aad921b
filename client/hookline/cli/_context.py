"""What every API command shares: the connection (address and key from the
global options or the environment), the printer, and the call deadline."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from hookline.client import Client, find_api_key
from hookline.client._connection import DEFAULT_ADDRESS, check_api_key, read_key_file

from ._errors import CliError
from ._output import Printer
from ._values import call_timeout

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
        type=call_timeout,
        metavar="SECONDS",
        help=f"deadline of each call (default {DEFAULT_TIMEOUT_S:g}; watches have none)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        default=default(False),
        help="print JSON (protobuf's JSON mapping) instead of tables; watches print one object per line",
    )


# gRPC targets that name their scheme (dns:///host:port, unix:/path, ...) pass as they are.
_TARGET_SCHEMES = ("dns:", "unix:", "unix-abstract:", "ipv4:", "ipv6:", "vsock:")


def _address(given: str | None) -> str:
    """--address, else HOOKLINE_ADDRESS, else the default, as HOST:PORT. gRPC
    would take `host` alone as port 443 and wrap a port past 65535 round to
    another one, and calls would go somewhere else without a word."""
    if given is not None:
        address, source = given, "--address"
    elif os.environ.get("HOOKLINE_ADDRESS"):
        address, source = os.environ["HOOKLINE_ADDRESS"], "HOOKLINE_ADDRESS"
    else:
        return DEFAULT_ADDRESS
    address = address.strip()
    scheme, found, rest = address.partition("://")
    if found and scheme.lower() in ("http", "https", "grpc", "grpcs"):
        raise CliError(f"{source} is HOST:PORT, without {scheme}:// (try {rest.partition('/')[0]})")
    if address.startswith(_TARGET_SCHEMES):
        return address
    host, _, port = address.rpartition(":")
    if (
        not host
        or not (port.isascii() and port.isdigit())
        or not 0 < int(port) <= 65535
        or any(c.isspace() for c in address)
    ):
        raise CliError(f"{source} must be HOST:PORT with a port from 1 to 65535, not {address!r}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise CliError(f"{source}: write an IPv6 address in brackets, as in [::1]:50051")
    return address


class Stream(Protocol):
    """A server stream as the commands read it: its messages, and cancel() to end it."""

    def __iter__(self) -> Iterator[Any]: ...

    def cancel(self) -> bool: ...


class Context:
    """One command's connection to hookline, opened on first use."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.address: str = _address(args.address)
        self.timeout: float = args.timeout
        self.out = Printer(as_json=args.json)
        self._client: Client | None = None

    @property
    def json(self) -> bool:
        return self.out.as_json

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.address, self._api_key())
        return self._client

    def _api_key(self) -> str:
        """--key, else --key-file, else HOOKLINE_API_KEY or the server's key file;
        checked here so that a malformed one is named by where it came from."""
        given, path = self.args.key, self.args.key_file
        try:
            if given is not None:
                return check_api_key(given, "given with --key")
            if path is not None:
                return check_api_key(read_key_file(path), f"in --key-file {path}")
            return find_api_key()
        except OSError as error:
            raise CliError(f"cannot read --key-file {path}: {error.strerror or error}") from None
        except ValueError as error:
            raise CliError(str(error)) from None
        except RuntimeError as error:
            raise CliError(f"{error}, or pass --key") from None

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

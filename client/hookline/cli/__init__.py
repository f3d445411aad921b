"""The `hookline` command.

People's commands (`webhooks`, `flows`, `jobs`, `deliveries`, `events`,
`receiver`) talk to a running server over gRPC and need only the client (grpcio
and protobuf). The operator commands (`serve`, `spaces`, `keys`) work on the storage directly and
come from `hookline.server.cli`, with the `server` extra."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc

from . import deliveries, events, flows, jobs, receiver, webhooks
from ._context import Context, add_global_options
from ._errors import CliError, describe

__all__ = ["build_parser", "main"]

SERVER_COMMANDS = ("serve", "spaces", "keys")
_VALUE_OPTIONS = ("--address", "--key", "--key-file", "--timeout")

_EPILOG = """\
The server is found at --address, HOOKLINE_ADDRESS or 127.0.0.1:50051; the API key
is --key, HOOKLINE_API_KEY, or the key file the server wrote (.hookline/admin.key,
or admin.key in HOOKLINE_DATA_DIR). `hookline COMMAND --help` shows each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hookline",
        description="jobs and signed webhooks over gRPC",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, defaults=True)
    common = argparse.ArgumentParser(add_help=False)
    add_global_options(common, defaults=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    webhooks.add_commands(sub, common)
    flows.add_commands(sub, common)
    jobs.add_commands(sub, common)
    deliveries.add_commands(sub, common)
    events.add_commands(sub, common)
    receiver.add_command(sub)
    # Listed for --help; main() hands these to hookline.server.cli before parsing.
    sub.add_parser("serve", help="run the hookline server (needs hookline[server])", add_help=False)
    sub.add_parser("spaces", help="manage spaces, on the server's storage", add_help=False)
    sub.add_parser("keys", help="manage API keys, on the server's storage", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if _command_of(arguments) in SERVER_COMMANDS:
        return _server_main(arguments)
    args = build_parser().parse_args(arguments)
    return _guarded(args)


def _command_of(arguments: list[str]) -> str | None:
    """The first word that is not a global option (or its value)."""
    skip = False
    for word in arguments:
        if skip:
            skip = False
        elif word in _VALUE_OPTIONS:
            skip = True
        elif not word.startswith("-"):
            return word
    return None


def _server_main(arguments: list[str]) -> int:
    try:
        from hookline.server import cli as server_cli
    except ImportError as error:  # the client alone was installed
        print(f"hookline: the server commands need 'pip install hookline[server]' ({error})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="hookline", description="jobs and signed webhooks over gRPC")
    sub = parser.add_subparsers(dest="command", required=True)
    server_cli.add_commands(sub)
    return server_cli.run(parser.parse_args(arguments))


def _guarded(args: argparse.Namespace) -> int:
    """Runs the command; failures become a message and an exit status, never a traceback."""
    ctx: Context | None = None
    try:
        if args.command == "receiver":
            return args.run(args)
        ctx = Context(args)
        return args.handler(ctx, args)
    except CliError as error:
        _fail(error.message.splitlines() or ["failed"])
        return error.code
    except grpc.RpcError as error:
        _fail(describe(error, ctx.address if ctx else "?"))
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as error:
        if os.environ.get("HOOKLINE_DEBUG"):
            raise
        _fail([f"unexpected error: {type(error).__name__}: {error}", "set HOOKLINE_DEBUG=1 to see where it came from"])
        return 1
    finally:
        if ctx is not None:
            ctx.close()


def _fail(lines: list[str]) -> None:
    print(f"hookline: {lines[0]}", file=sys.stderr)
    for line in lines[1:]:
        print(line if line.startswith(" ") else f"  {line}", file=sys.stderr)
    sys.stderr.flush()

"""The `hookline` command.

People's commands (`webhooks`, `flows`, `jobs`, `deliveries`, `events`,
`event-types`, `receiver`) talk to a running server over gRPC and need only the client (grpcio
and protobuf). The operator commands (`serve`, `spaces`, `keys`) work on the storage directly and
come from `hookline.server.operator_commands`, with the `server` extra."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import grpc

from . import deliveries, event_types, events, flows, jobs, receiver, webhooks
from ._context import Context, add_global_options
from ._errors import CliError, describe

__all__ = ["build_parser", "main"]

SERVER_COMMANDS = ("serve", "spaces", "keys")
_VALUE_OPTIONS = ("--address", "--key", "--key-file", "--timeout")

_EPILOG = """\
The server is found at --address, HOOKLINE_ADDRESS or 127.0.0.1:50051; the API key
is --key, the file at --key-file, HOOKLINE_API_KEY, or the key file the server wrote
(.hookline/admin.key, or admin.key in HOOKLINE_DATA_DIR), in that order.
`hookline COMMAND --help` shows each command.
"""


class CommandParser(argparse.ArgumentParser):
    """A parser whose usage errors name the command that failed, in two lines:
    its short usage and the error."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The innermost command parsed sets the last value: main() finds the
        # parser to blame for arguments nobody recognised.
        self.set_defaults(command_parser=self)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"usage: {self.short_usage()}\n{self.prog}: error: {message}\n")

    def short_usage(self) -> str:
        """`PROG [options] POSITIONAL...`; --help lists the options."""
        words = [self.prog, "[options]"]
        for action in self._actions:
            if not action.option_strings and action.help != argparse.SUPPRESS:
                words.append(_positional_usage(action))
        return " ".join(words)

    def unrecognized(self, extras: list[str]) -> NoReturn:
        message = f"unrecognized arguments: {' '.join(extras)}"
        options = [option for option in self._option_string_actions if option.startswith("--")]
        for extra in extras:
            close = difflib.get_close_matches(extra.partition("=")[0], options, n=1) if extra.startswith("--") else []
            if close:
                message += f" (did you mean {close[0]}?)"
                break
        self.error(message)


def _positional_usage(action: argparse.Action) -> str:
    name = str(action.metavar or action.dest)
    if action.nargs == "?":
        return f"[{name}]"
    if action.nargs == "*":
        return f"[{name} ...]"
    if action.nargs == "+":
        return f"{name} [{name} ...]"
    if action.nargs == argparse.PARSER:
        return f"{name} ..."
    return name


def build_parser() -> CommandParser:
    parser = CommandParser(
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
    event_types.add_commands(sub, common)
    receiver.add_command(sub)
    # Listed for --help; main() hands these to hookline.server.operator_commands before parsing.
    sub.add_parser("serve", help="run the hookline server (needs hookline[server])", add_help=False)
    sub.add_parser("spaces", help="manage spaces, on the server's storage", add_help=False)
    sub.add_parser("keys", help="manage API keys, on the server's storage", add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if _command_of(arguments) in SERVER_COMMANDS:
        return _server_main(arguments)
    parser = build_parser()
    _refuse_undecodable(parser, arguments)
    args, extras = parser.parse_known_args(arguments)
    if extras:
        args.command_parser.unrecognized(extras)
    return _guarded(args)


def _refuse_undecodable(parser: CommandParser, arguments: list[str]) -> None:
    """Bytes that are not UTF-8 reach Python as lone surrogates, which no request
    can carry: a usage error naming the option (never echoing a value: it may be a key)."""
    for number, word in enumerate(arguments, 1):
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:
            option = word.partition("=")[0] if word.startswith("--") and "=" in word else None
            if option is None and number > 1 and arguments[number - 2].startswith("-"):
                option = arguments[number - 2]
            what = f"the value of {option}" if option else f"argument {number}"
            parser.error(f"{what} is not UTF-8 text")


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
        from hookline.server import operator_commands
    except ImportError as error:  # the client alone was installed
        print(f"hookline: the server commands need 'pip install hookline[server]' ({error})", file=sys.stderr)
        return 2
    parser = argparse.ArgumentParser(prog="hookline", description="jobs and signed webhooks over gRPC")
    sub = parser.add_subparsers(dest="command", required=True)
    operator_commands.add_commands(sub)
    return operator_commands.run(parser.parse_args(arguments))


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

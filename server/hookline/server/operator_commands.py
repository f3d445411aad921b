"""Operator commands that work on the storage directly: serve, spaces, keys."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import settings as settings_module
from .app import StartupError, configure_logging, serve
from .errors import HooklineError
from .redact import redact
from .storage import spaces
from .storage.database import DATABASE_FILE, CannotOpen, database_fault, open_database


def add_commands(sub: argparse._SubParsersAction) -> None:
    serve_parser = sub.add_parser(
        "serve",
        help="run the hookline server",
        # The options are many: a mistyped one is reported under a short usage line.
        usage="%(prog)s [OPTION ...]",
        description="Run the hookline server. Each option can also be set by the HOOKLINE_* variable "
        "shown after it (the option wins); HOOKLINE_MASTER_KEY holds the master key of webhook secrets.",
    )
    settings_module.add_arguments(serve_parser)
    serve_parser.set_defaults(handler=_serve)

    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument("--data-dir", type=Path, default=None, help="data directory (default ./.hookline)")
    storage.add_argument("--database", default=None, help="database URL (default: SQLite in the data dir)")

    spaces_parser = sub.add_parser("spaces", help="manage spaces (tenants)")
    spaces_sub = spaces_parser.add_subparsers(dest="action", required=True)
    create = spaces_sub.add_parser("create", parents=[storage], help="create a space; prints its keys")
    create.add_argument("name")
    create.set_defaults(handler=_spaces_create)
    spaces_sub.add_parser("list", parents=[storage], help="list spaces").set_defaults(handler=_spaces_list)

    keys_parser = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys_parser.add_subparsers(dest="action", required=True)
    kcreate = keys_sub.add_parser("create", parents=[storage], help="create a key; prints it once")
    kcreate.add_argument("--space", default=spaces.DEFAULT_SPACE, help="space name (default 'default')")
    kcreate.add_argument("--role", choices=spaces.ROLES, default="management")
    kcreate.set_defaults(handler=_keys_create)
    klist = keys_sub.add_parser("list", parents=[storage], help="list keys (never their secrets)")
    klist.add_argument("--space", default=None, help="only this space")
    klist.add_argument("-q", "--quiet", action="store_true", help="print only the key ids, oldest first")
    klist.set_defaults(handler=_keys_list)
    krevoke = keys_sub.add_parser("revoke", parents=[storage], help="revoke a key by its id")
    krevoke.add_argument("key_id")
    krevoke.set_defaults(handler=_keys_revoke)


def _open(args: argparse.Namespace) -> None:
    """Open the storage a server uses: only the storage flags count here (a
    command's own flags, such as `keys create --role`, are not the server's)."""
    try:
        config = settings_module.from_sources(argparse.Namespace(data_dir=args.data_dir, database=args.database))
    except ValueError as error:  # a bad storage flag or HOOKLINE_* variable
        raise CannotOpen(str(error)) from None
    if not config.database and not (config.data_dir / DATABASE_FILE).exists():
        raise CannotOpen(
            f"there is no hookline database in {config.data_dir.resolve()}: run this where `hookline serve` "
            "keeps its data, or pass --data-dir (or --database)"
        )
    open_database(config.data_dir, config.database)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = settings_module.from_sources(args)
        configure_logging(settings.database)
        serve(settings)
    except (StartupError, ValueError) as error:
        _fail(str(error), args)
        return 1
    return 0


def _spaces_create(args: argparse.Namespace) -> int:
    _open(args)
    space_id, keys = spaces.create_space(args.name)
    print(f"space {args.name} ({space_id})")
    for key in keys:
        print(f"{key.role} key: {key.token}")
    print("these keys are shown only now; store them safely")
    return 0


def _spaces_list(args: argparse.Namespace) -> int:
    _open(args)
    for space_id, name in spaces.list_spaces():
        print(f"{space_id}\t{name}")
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    _open(args)
    key = spaces.create_key(spaces.space_id_by_name(args.space), args.role)
    print(key.token)  # alone on stdout, for KEY=$(hookline keys create ...)
    print(
        f"{args.role} key {key.key_id} of space {args.space}; the key is shown only now, store it "
        f"(`hookline keys revoke {key.key_id}` revokes it)",
        file=sys.stderr,
    )
    return 0


def _keys_list(args: argparse.Namespace) -> int:
    _open(args)
    space_id = spaces.space_id_by_name(args.space) if args.space else None
    for key in spaces.list_keys(space_id):
        if args.quiet:
            print(key.id)
            continue
        state = "revoked" if key.revoke_time else "active"
        print(f"{key.id}\t{key.space_id}\t{key.role}\t{state}")
    return 0


def _keys_revoke(args: argparse.Namespace) -> int:
    _open(args)
    spaces.revoke_key(args.key_id)
    print(f"revoked {args.key_id}")
    return 0


def _fail(message: str, args: argparse.Namespace) -> None:
    """Report a command's failure in one line, never showing the database's password."""
    url = getattr(args, "database", None) or os.environ.get(settings_module.variable_of("database"))
    print(f"hookline: {redact(message, url)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    try:
        return args.handler(args)
    except HooklineError as error:
        _fail(error.message, args)
        return 1
    except CannotOpen as error:
        _fail(str(error), args)
        return 1
    except Exception as error:
        fault = database_fault(error)
        if fault is None:
            raise
        _fail(fault.message, args)
        return 1

"""The `hookline` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hookline", description="jobs and signed webhooks over gRPC")
    sub = parser.add_subparsers(dest="command", required=True)
    try:
        from hookline.server import cli as server_cli
    except ImportError as error:  # the client alone was installed
        print(f"hookline: the server commands need 'pip install hookline[server]' ({error})", file=sys.stderr)
        return 2
    server_cli.add_commands(sub)
    args = parser.parse_args(argv)
    return server_cli.run(args)


if __name__ == "__main__":
    raise SystemExit(main())

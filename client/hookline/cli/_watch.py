"""Watches that outlive a server restart: when the connection is lost after a
stream has started, it is reopened on a new connection, with growing pauses,
where it left off (the caller's `open_stream` knows where that is). Every other
failure ends the command, saying why."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ._context import Context, Stream
from ._errors import CliError, describe, first_line, rpc_failure

# Pauses before each reconnection attempt of one outage; the last one repeats.
RECONNECT_PAUSES_S = (0.2, 0.5, 1.0, 2.0, 3.0)

# What a server that went away looks like to a stream: UNAVAILABLE once it is
# gone (or while it is down), CANCELLED when it shuts down with calls in flight.
_CONNECTION_LOST = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)


def reconnect_pause(attempt: int) -> float:
    """Seconds to wait before reconnection attempt `attempt` (0, 1, ...) of an outage."""
    return RECONNECT_PAUSES_S[min(attempt, len(RECONNECT_PAUSES_S) - 1)]


def follow(ctx: Context, open_stream: Callable[[], Stream]) -> Iterator[Any]:
    """The messages of `open_stream()`, called again whenever the connection to
    the server is lost once the stream has started (or the server ends it: it
    does so only when it shuts down). Says on stderr that it lost the connection
    and when it is back."""
    started = False
    lost_since: str | None = None  # why the connection was lost, while it is
    attempt = 0
    while True:
        stream = open_stream()
        try:
            for message in stream:
                if lost_since is not None:
                    _say(f"reconnected to hookline at {ctx.address}; the watch goes on where it stopped")
                    lost_since, attempt = None, 0
                started = True
                yield message
            reason = "the server closed the stream"
        except grpc.RpcError as error:
            if not started or error.code() not in _CONNECTION_LOST:
                if lost_since is None:
                    raise
                lines = describe(error, ctx.address)
                raise CliError("\n".join([f"cannot resume the watch: {lines[0]}", *lines[1:]])) from None
            reason = first_line(rpc_failure(error).message or error.code().name)
        finally:
            stream.cancel()
        if lost_since is None:
            lost_since = reason
            _say(f"lost the connection to hookline at {ctx.address} ({reason}); reconnecting (Ctrl-C stops)")
        time.sleep(reconnect_pause(attempt))
        attempt += 1
        ctx.reconnect()  # a new channel tries at once, not after gRPC's own (growing) backoff


def _say(text: str) -> None:
    print(f"hookline: {text}", file=sys.stderr, flush=True)

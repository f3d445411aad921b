"""The loopback webhook receiver of scripts/bench, run as its own process so it
does not compete with the benchmark or with hookline for a GIL.

A raw asyncio HTTP/1.1 server (keep-alive, Content-Length or chunked bodies)
that answers every POST at once with an empty 200 (or the status it is told to
give), counts arrivals per path and per event id (the `webhook-id` header),
notes when each arrived, and checks the signatures of one request in every
`sample_every` with hookline.signing.verify against the secret configured for
its path. In `keep_arrivals` mode it also keeps, per (path, event id), the
first arrival time and the body's data.endedAt, for latency.

Control endpoints, for the benchmark (JSON in and out):
  POST /_config   {"secrets": {path: secret}, "sample_every": N, "status": 200, "keep_arrivals": bool}
  POST /_reset    clear every counter and kept arrival
  GET  /_stats    counters: requests, unique, duplicates, first/last arrival, verified, failures
  GET  /_arrivals [[path, event_id, arrival_time, endedAt], ...]

Usage: python bench_receiver.py  -> prints "listening on PORT" on stdout, serves until stdin closes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from hookline.signing import VerificationError, verify

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 410: "Gone", 500: "Internal Server Error",
            503: "Service Unavailable"}  # fmt: skip
_ENDED = b'"endedAt":"'


class State:
    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.sample_every = 50
        self.status = 200
        self.reply = _OK
        self.keep_arrivals = False
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.seen: set[tuple[str, str]] = set()
        self.duplicates = 0
        self.first: float | None = None
        self.last: float | None = None
        self.per_path: dict[str, int] = {}
        self.verified = 0
        self.failures: list[str] = []
        self.failed = 0
        self.body_bytes = 0
        self.arrivals: list[tuple[str, str, float, str]] = []

    def configure(self, config: dict[str, Any]) -> None:
        if "secrets" in config:
            self.secrets.update(config["secrets"])
        if "sample_every" in config:
            self.sample_every = max(1, int(config["sample_every"]))
        if "keep_arrivals" in config:
            self.keep_arrivals = bool(config["keep_arrivals"])
        if "status" in config:
            self.status = int(config["status"])
            reason = _REASONS.get(self.status, "Status")
            self.reply = f"HTTP/1.1 {self.status} {reason}\r\nContent-Length: 0\r\n\r\n".encode()

    def stats(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "unique": len(self.seen),
            "duplicates": self.duplicates,
            "first": self.first,
            "last": self.last,
            "per_path": self.per_path,
            "verified": self.verified,
            "failed": self.failed,
            "failures": self.failures[:5],
            "mean_body_bytes": self.body_bytes / self.requests if self.requests else 0,
        }

    def arrived(self, path: str, headers: dict[str, str] | None, head: bytes, body: bytes) -> None:
        now = time.time()
        self.requests += 1
        self.body_bytes += len(body)
        if self.first is None:
            self.first = now
        self.last = now
        self.per_path[path] = self.per_path.get(path, 0) + 1
        event_id = headers.get("webhook-id", "") if headers is not None else _header(head, b"\r\nwebhook-id:")
        key = (path, event_id)
        if key in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(key)
            if self.keep_arrivals:
                at = body.find(_ENDED)
                ended = body[at + len(_ENDED) : body.find(b'"', at + len(_ENDED))].decode() if at >= 0 else ""
                self.arrivals.append((path, event_id, now, ended))
        if self.requests % self.sample_every == 1 or self.sample_every == 1:
            self.check(path, head, body)

    def check(self, path: str, head: bytes, body: bytes) -> None:
        secret = self.secrets.get(path)
        if secret is None:
            return  # not a hookline webhook (e.g. the ceiling's plain client)
        headers = _all_headers(head)
        try:
            verify(body, headers, secret)
            self.verified += 1
        except (VerificationError, ValueError) as error:
            self.failed += 1
            if len(self.failures) < 20:
                self.failures.append(f"{path}: {error}")


def _header(head: bytes, name: bytes) -> str:
    """A header's value by a case-insensitive search of the raw head (name with its CRLF and colon)."""
    at = head.lower().find(name)
    if at < 0:
        return ""
    start = at + len(name)
    end = head.find(b"\r\n", start)
    return head[start : end if end >= 0 else len(head)].strip().decode("latin-1")


def _all_headers(head: bytes) -> dict[str, str]:
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
    return headers


class Http(asyncio.Protocol):
    def __init__(self, state: State):
        self.state = state
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            lowered = head.lower()
            at = lowered.find(b"\r\ncontent-length:")
            if at >= 0:
                stop = lowered.find(b"\r\n", at + 2)
                length = int(head[at + 17 : stop if stop >= 0 else len(head)])
                if len(self.buffer) < end + 4 + length:
                    return
                body = bytes(self.buffer[end + 4 : end + 4 + length])
                del self.buffer[: end + 4 + length]
            elif b"\r\ntransfer-encoding: chunked" in lowered:
                parsed = _chunked(self.buffer, end + 4)
                if parsed is None:
                    return
                body, consumed = parsed
                del self.buffer[:consumed]
            else:
                body = b""
                del self.buffer[: end + 4]
            self.request(head, body)

    def request(self, head: bytes, body: bytes) -> None:
        line_end = head.find(b"\r\n")
        method, path, _ = head[: line_end if line_end >= 0 else len(head)].decode("latin-1").split(" ", 2)
        assert self.transport is not None
        if path.startswith("/_"):
            self.transport.write(_json_reply(self.control(method, path, body)))
            return
        self.state.arrived(path, None, head, body)
        self.transport.write(self.state.reply)

    def control(self, method: str, path: str, body: bytes) -> Any:
        state = self.state
        if path == "/_config":
            state.configure(json.loads(body or b"{}"))
            return {"ok": True}
        if path == "/_reset":
            state.reset()
            return {"ok": True}
        if path == "/_stats":
            return state.stats()
        if path == "/_arrivals":
            return state.arrivals
        return {"error": f"unknown control path {path}"}


def _chunked(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    """A chunked body from `start`: (body, bytes consumed up to its end), or None if incomplete."""
    body = bytearray()
    pos = start
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buffer[pos:line_end]).split(b";")[0], 16)
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", line_end)
            if buffer[line_end : line_end + 4] == b"\r\n\r\n":
                return bytes(body), line_end + 4
            if trailer_end < 0:
                return None
            return bytes(body), trailer_end + 4
        if len(buffer) < line_end + 2 + size + 2:
            return None
        body += buffer[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2


def _json_reply(value: Any) -> bytes:
    data = json.dumps(value).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)


async def main() -> None:
    state = State()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Http(state), "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening on {port}", flush=True)
    # Serve until the parent closes our stdin (or dies).
    closed = loop.create_future()

    def stdin_readable() -> None:
        if not os.read(sys.stdin.fileno(), 4096) and not closed.done():
            closed.set_result(None)

    loop.add_reader(sys.stdin.fileno(), stdin_readable)
    await closed
    server.close()


if __name__ == "__main__":
    asyncio.run(main())

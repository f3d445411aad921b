"""The delivery transport: httpx over aiohttp with the SSRF guard in aiohttp's
resolver. A fake base resolver stands in for DNS; requests go to a real HTTP
server on loopback."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from hookline.server.delivery.targets import IPNetwork, TargetRefused, parse_networks, refused_in
from hookline.server.delivery.transport import GuardedResolver, GuardedTransport

LOOPBACK = parse_networks(["127.0.0.0/8"])


class FakeResolver(AbstractResolver):
    """Answers from a fixed table and records every name it was asked for."""

    def __init__(self, table: dict[str, list[str]]):
        self.table = table
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"no such name: {host}")
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=socket.AF_INET6 if ":" in address else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for address in self.table[host]
        ]

    async def close(self) -> None:
        pass


@dataclass
class Server:
    """What a loopback HTTP server saw: each request's Host header and path."""

    port: int = 0
    hosts: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


@asynccontextmanager
async def loopback_server(handler: Handler = _ok) -> AsyncIterator[Server]:
    seen = Server()

    async def record(request: web.Request) -> web.StreamResponse:
        seen.hosts.append(request.headers.get("Host", ""))
        seen.paths.append(request.path)
        await request.read()
        return await handler(request)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    seen.port = runner.addresses[0][1]
    try:
        yield seen
    finally:
        await runner.cleanup()


@asynccontextmanager
async def guarded_client(
    table: dict[str, list[str]] | None = None,
    allowed: Sequence[IPNetwork] = (),
    total_timeout_s: float = 5.0,
    read_timeout_s: float = 5.0,
) -> AsyncIterator[tuple[httpx.AsyncClient, FakeResolver]]:
    resolver = FakeResolver(table or {})
    transport = GuardedTransport(
        allowed=lambda: allowed, total_timeout_s=total_timeout_s, max_connections=8, base_resolver=resolver
    )
    client = httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(read_timeout_s, connect=1.0),
        follow_redirects=False,
        trust_env=False,
    )
    try:
        yield client, resolver
    finally:
        await client.aclose()


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


# --- the address connected to is the address checked --------------------------------


def test_a_name_is_connected_to_at_the_address_checked_with_its_host_header_kept() -> None:
    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_client({"pinned.test": ["127.0.0.1"]}, LOOPBACK) as (client, resolver):
                response = await client.post(f"http://pinned.test:{server.port}/hook", content=b"{}")
        assert response.status_code == 200
        assert resolver.asked == ["pinned.test"]
        assert server.hosts == [f"pinned.test:{server.port}"]

    run(main())


def test_a_name_resolving_to_a_private_address_is_refused_without_connecting() -> None:
    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_client({"public.test": ["127.0.0.1"]}) as (client, _):
                with pytest.raises(TargetRefused) as caught:
                    await client.post(f"http://public.test:{server.port}/hook", content=b"{}")
        assert str(caught.value) == (
            "public.test resolves to 127.0.0.1, which is not a globally routable address;"
            " an operator can allow it with --allow-target CIDR"
        )
        assert server.paths == []

    run(main())


@pytest.mark.parametrize("addresses", [["93.184.216.34", "127.0.0.1"], ["127.0.0.1", "93.184.216.34"]])
def test_one_private_address_among_global_ones_refuses_the_name(addresses: list[str]) -> None:
    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_client({"mixed.test": addresses}) as (client, _):
                with pytest.raises(TargetRefused, match="mixed.test resolves to 127.0.0.1"):
                    await client.post(f"http://mixed.test:{server.port}/hook", content=b"{}")
        assert server.paths == []

    run(main())


@pytest.mark.parametrize("address", ["::1", "fd00::1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "169.254.169.254"])
def test_the_resolver_refuses_every_non_global_form(address: str) -> None:
    async def main() -> None:
        resolver = GuardedResolver(lambda: [], FakeResolver({"sneaky.test": [address]}))
        with pytest.raises(TargetRefused, match="not a globally routable address"):
            await resolver.resolve("sneaky.test", 80, socket.AF_UNSPEC)

    run(main())


def test_the_resolver_passes_global_addresses_through_unchanged() -> None:
    async def main() -> None:
        base = FakeResolver({"example.test": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"]})
        resolver = GuardedResolver(lambda: [], base)
        results = await resolver.resolve("example.test", 443, socket.AF_UNSPEC)
        assert results == await base.resolve("example.test", 443, socket.AF_UNSPEC)

    run(main())


def test_the_allow_list_is_read_at_each_resolution() -> None:
    async def main() -> None:
        allowed: list[IPNetwork] = list(LOOPBACK)
        resolver = GuardedResolver(lambda: allowed, FakeResolver({"flip.test": ["127.0.0.1"]}))
        await resolver.resolve("flip.test", 80)
        allowed.clear()
        with pytest.raises(TargetRefused):
            await resolver.resolve("flip.test", 80)

    run(main())


# --- literal addresses, which aiohttp never resolves -----------------------------------


@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("127.0.0.1", "127.0.0.1 is not a globally routable address"),
        ("[::1]", "::1 is not a globally routable address"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1 is not a globally routable address"),
        ("2130706433", "2130706433 means 127.0.0.1, which is not a globally routable address"),
        ("0x7f.1", "0x7f.1 means 127.0.0.1"),
    ],
)
def test_literal_private_addresses_are_refused_before_connecting(host: str, message: str) -> None:
    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_client() as (client, resolver):
                with pytest.raises(TargetRefused) as caught:
                    await client.post(f"http://{host}:{server.port}/hook", content=b"{}")
        assert message in str(caught.value)
        assert server.paths == []
        assert resolver.asked == []

    run(main())


def test_an_allowed_integer_spelling_goes_to_the_address_it_means() -> None:
    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_client(allowed=LOOPBACK) as (client, resolver):
                response = await client.post(f"http://2130706433:{server.port}/hook", content=b"{}")
        assert response.status_code == 200
        assert server.hosts == [f"2130706433:{server.port}"]
        assert resolver.asked == []

    run(main())


# --- what the worker is told when a send fails ---------------------------------------


def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        async with guarded_client(allowed=LOOPBACK) as (client, _):
            with pytest.raises(httpx.ConnectError, match="Cannot connect"):
                await client.post(f"http://127.0.0.1:{port}/hook", content=b"{}")

    run(main())


def test_an_unknown_name_is_a_connect_error() -> None:
    async def main() -> None:
        async with guarded_client() as (client, _):
            with pytest.raises(httpx.ConnectError) as caught:
                await client.post("http://nowhere.test/hook", content=b"{}")
        assert refused_in(caught.value) is None

    run(main())


def test_a_slow_answer_is_a_read_timeout() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def main() -> None:
        async with loopback_server(slow) as server:
            async with guarded_client(allowed=LOOPBACK, read_timeout_s=0.3) as (client, _):
                with pytest.raises(httpx.ReadTimeout):
                    await client.post(f"http://127.0.0.1:{server.port}/hook", content=b"{}")

    run(main())


def test_the_total_timeout_covers_a_body_that_keeps_trickling() -> None:
    async def trickle(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(40):
            await response.write(b"x")
            await asyncio.sleep(0.05)  # each read is quick; the whole is not
        await response.write_eof()
        return response

    async def main() -> None:
        async with loopback_server(trickle) as server:
            async with guarded_client(allowed=LOOPBACK, total_timeout_s=0.5) as (client, _):
                started = asyncio.get_running_loop().time()
                with pytest.raises(httpx.TimeoutException, match="no complete response within 0.5 s"):
                    async with client.stream("POST", f"http://127.0.0.1:{server.port}/hook", content=b"{}") as r:
                        assert r.status_code == 200
                        async for _ in r.aiter_bytes():
                            pass
                assert asyncio.get_running_loop().time() - started < 1.5

    run(main())


def test_an_answer_that_arrived_while_the_sender_could_not_run_is_read_not_timed_out() -> None:
    # The sending process is stopped (here: its event loop blocked) for longer than
    # the total timeout while the answer comes in; when it runs again, it reads the
    # answer rather than judging the request late by the wall clock.
    loop_blocked = threading.Event()

    class Answer(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            self.rfile.read(int(self.headers["content-length"]))
            loop.call_soon_threadsafe(lambda: (loop_blocked.set(), time.sleep(1.0)))
            loop_blocked.wait(5)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    async def main() -> None:
        async with guarded_client(allowed=LOOPBACK, total_timeout_s=0.3, read_timeout_s=0.3) as (client, _):
            async with client.stream("POST", f"http://127.0.0.1:{server.server_address[1]}/hook", content=b"{}") as r:
                assert r.status_code == 200
                assert await r.aread() == b"ok"

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        server.shutdown()
        server.server_close()
        thread.join()
    assert loop_blocked.is_set()


def test_redirects_are_returned_not_followed() -> None:
    async def redirect(request: web.Request) -> web.StreamResponse:
        if request.path == "/moved":
            return web.Response(status=302, headers={"Location": "/target"})
        return web.Response(text="followed")

    async def main() -> None:
        async with loopback_server(redirect) as server:
            async with guarded_client(allowed=LOOPBACK) as (client, _):
                response = await client.post(f"http://127.0.0.1:{server.port}/moved", content=b"{}")
        assert response.status_code == 302
        assert server.paths == ["/moved"]

    run(main())


def test_proxies_from_the_environment_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9/")  # nothing listens there
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_client({"direct.test": ["127.0.0.1"]}, LOOPBACK) as (client, _):
                response = await client.post(f"http://direct.test:{server.port}/hook", content=b"{}")
        assert response.status_code == 200
        assert server.hosts == [f"direct.test:{server.port}"]

    run(main())

"""The delivery transport: httpx requests sent by aiohttp, with the SSRF guard in
aiohttp's resolver. A fake base resolver stands in for DNS; requests go to a real
HTTP server on loopback."""

from __future__ import annotations

import asyncio
import base64
import gzip
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from conftest import self_signed_certificate
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from hookline.server.delivery.targets import IPNetwork, TargetRefused, parse_networks, refused_in
from hookline.server.delivery.transport import GuardedResolver, GuardedTransport
from hookline.server.delivery.worker import DeliveryWorker
from hookline.server.settings import Settings
from hookline.server.storage.records import Delivery, SendTask, WebhookHealth
from hookline.server.storage.sending import AttemptOutcome

LOOPBACK = parse_networks(["127.0.0.0/8"])
SECRET = "whsec_" + base64.b64encode(bytes(32)).decode()


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
    """What a loopback HTTP server saw: each request's Host header, path, headers
    and the client port it came from (one per connection)."""

    port: int = 0
    hosts: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    headers: list[Mapping[str, str]] = field(default_factory=list)  # names in any case
    client_ports: list[int] = field(default_factory=list)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _ok(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


@asynccontextmanager
async def loopback_server(handler: Handler = _ok) -> AsyncIterator[Server]:
    seen = Server()

    async def record(request: web.Request) -> web.StreamResponse:
        seen.hosts.append(request.headers.get("Host", ""))
        seen.paths.append(request.path)
        seen.headers.append(request.headers.copy())
        assert request.transport is not None
        seen.client_ports.append(request.transport.get_extra_info("peername")[1])
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


@dataclass
class Sender:
    """Sends through a GuardedTransport the way the worker does: an httpx.Request
    handed to it straight, no httpx client between."""

    transport: GuardedTransport
    resolver: FakeResolver

    async def post(self, url: str, content: bytes = b"{}", headers: dict[str, str] | None = None) -> httpx.Response:
        """The whole response, body read."""
        response = await self.open(url, content, headers)
        try:
            await response.aread()
        finally:
            await response.aclose()
        return response

    async def open(self, url: str, content: bytes = b"{}", headers: dict[str, str] | None = None) -> httpx.Response:
        """The response with its body still to read (and the response to close)."""
        return await self.transport.handle_async_request(httpx.Request("POST", url, content=content, headers=headers))


@asynccontextmanager
async def guarded_sender(
    table: dict[str, list[str]] | None = None,
    allowed: Sequence[IPNetwork] = (),
    total_timeout_s: float = 5.0,
    connect_timeout_s: float = 1.0,
    max_connections: int = 8,
) -> AsyncIterator[Sender]:
    resolver = FakeResolver(table or {})
    transport = GuardedTransport(
        allowed=lambda: allowed,
        connect_timeout_s=connect_timeout_s,
        total_timeout_s=total_timeout_s,
        max_connections=max_connections,
        base_resolver=resolver,
    )
    try:
        yield Sender(transport, resolver)
    finally:
        await transport.aclose()


def run(coroutine: Awaitable[None]) -> None:
    asyncio.run(coroutine)  # type: ignore[arg-type]


# --- the address connected to is the address checked --------------------------------


def test_a_name_is_connected_to_at_the_address_checked_with_its_host_header_kept() -> None:
    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_sender({"pinned.test": ["127.0.0.1"]}, LOOPBACK) as sender:
                response = await sender.post(f"http://pinned.test:{server.port}/hook")
        assert response.status_code == 200
        assert sender.resolver.asked == ["pinned.test"]
        assert server.hosts == [f"pinned.test:{server.port}"]

    run(main())


def test_a_name_resolving_to_a_private_address_is_refused_without_connecting() -> None:
    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_sender({"public.test": ["127.0.0.1"]}) as sender:
                with pytest.raises(TargetRefused) as caught:
                    await sender.post(f"http://public.test:{server.port}/hook")
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
            async with guarded_sender({"mixed.test": addresses}) as sender:
                with pytest.raises(TargetRefused, match="mixed.test resolves to 127.0.0.1"):
                    await sender.post(f"http://mixed.test:{server.port}/hook")
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
            async with guarded_sender() as sender:
                with pytest.raises(TargetRefused) as caught:
                    await sender.post(f"http://{host}:{server.port}/hook")
        assert message in str(caught.value)
        assert server.paths == []
        assert sender.resolver.asked == []

    run(main())


def test_an_allowed_integer_spelling_goes_to_the_address_it_means() -> None:
    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_sender(allowed=LOOPBACK) as sender:
                response = await sender.post(f"http://2130706433:{server.port}/hook")
        assert response.status_code == 200
        assert server.hosts == [f"2130706433:{server.port}"]
        assert sender.resolver.asked == []

    run(main())


# --- what the worker is told when a send fails ---------------------------------------


def test_a_refused_connection_is_a_connect_error_not_a_timeout() -> None:
    async def main() -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        async with guarded_sender(allowed=LOOPBACK) as sender:
            with pytest.raises(httpx.ConnectError, match="Cannot connect"):
                await sender.post(f"http://127.0.0.1:{port}/hook")

    run(main())


def test_an_unknown_name_is_a_connect_error() -> None:
    async def main() -> None:
        async with guarded_sender() as sender:
            with pytest.raises(httpx.ConnectError) as caught:
                await sender.post("http://nowhere.test/hook")
        assert refused_in(caught.value) is None

    run(main())


def test_a_slow_answer_is_a_read_timeout() -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def main() -> None:
        async with loopback_server(slow) as server:
            async with guarded_sender(allowed=LOOPBACK, total_timeout_s=0.3) as sender:
                with pytest.raises(httpx.ReadTimeout, match="no complete response within 0.3 s"):
                    await sender.post(f"http://127.0.0.1:{server.port}/hook")

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
            async with guarded_sender(allowed=LOOPBACK, total_timeout_s=0.5) as sender:
                started = asyncio.get_running_loop().time()
                with pytest.raises(httpx.TimeoutException, match="no complete response within 0.5 s"):
                    response = await sender.open(f"http://127.0.0.1:{server.port}/hook")
                    try:
                        assert response.status_code == 200
                        async for _ in response.aiter_bytes():
                            pass
                    finally:
                        await response.aclose()
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
        async with guarded_sender(allowed=LOOPBACK, total_timeout_s=0.3) as sender:
            response = await sender.post(f"http://127.0.0.1:{server.server_address[1]}/hook")
        assert (response.status_code, response.content) == (200, b"ok")

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
            async with guarded_sender(allowed=LOOPBACK) as sender:
                response = await sender.post(f"http://127.0.0.1:{server.port}/moved")
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
            async with guarded_sender({"direct.test": ["127.0.0.1"]}, LOOPBACK) as sender:
                response = await sender.post(f"http://direct.test:{server.port}/hook")
        assert response.status_code == 200
        assert server.hosts == [f"direct.test:{server.port}"]

    run(main())


async def _set_cookie(request: web.Request) -> web.StreamResponse:
    response = web.Response(text="ok")
    response.set_cookie("session", "for-space-a-only")
    return response


def test_no_cookie_a_receiver_sets_goes_out_with_a_later_request() -> None:
    # One transport sends for every webhook of every space: a cookie one receiver
    # sets must not reach the next webhook on the same host.
    async def main() -> None:
        async with loopback_server(_set_cookie) as server:
            async with guarded_sender({"shared.test": ["127.0.0.1"]}, LOOPBACK) as sender:
                first = await sender.post(f"http://shared.test:{server.port}/space-a")
                await sender.post(f"http://shared.test:{server.port}/space-b")
        assert "for-space-a-only" in first.headers["set-cookie"]  # captured with the response, not kept
        assert [headers.get("Cookie") for headers in server.headers] == [None, None]

    run(main())


def test_connections_to_a_host_are_kept_alive_and_reused() -> None:
    async def main() -> None:
        async with loopback_server() as server:
            async with guarded_sender({"pooled.test": ["127.0.0.1"]}, LOOPBACK) as sender:
                for _ in range(3):
                    await sender.post(f"http://pooled.test:{server.port}/hook")
        assert len(server.client_ports) == 3 and len(set(server.client_ports)) == 1
        assert sender.resolver.asked == ["pooled.test"]  # resolved (and checked) per new connection

    run(main())


def test_a_body_cut_at_the_capture_cap_does_not_leave_its_connection_in_the_pool() -> None:
    # The rest of an unread body would be read as the next response's head.
    async def large(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 200_000)

    async def main() -> None:
        async with loopback_server(large) as server:
            async with guarded_sender(allowed=LOOPBACK) as sender:
                response = await sender.open(f"http://127.0.0.1:{server.port}/hook")
                async for _ in response.aiter_bytes():
                    break  # the worker stops reading at its capture cap
                await response.aclose()
                after = await sender.post(f"http://127.0.0.1:{server.port}/hook")
        assert (after.status_code, len(after.content)) == (200, 200_000)
        assert len(set(server.client_ports)) == 2

    run(main())


def test_the_default_request_headers_are_httpx_clients_and_a_compressed_body_is_read_decoded() -> None:
    async def gzipped(request: web.Request) -> web.StreamResponse:
        return web.Response(body=gzip.compress(b"compressed answer"), headers={"Content-Encoding": "gzip"})

    async def main() -> None:
        async with loopback_server(gzipped) as server:
            async with guarded_sender(allowed=LOOPBACK) as sender:
                response = await sender.post(f"http://127.0.0.1:{server.port}/hook", headers={"X-Extra": "1"})
        assert response.content == b"compressed answer"
        assert response.headers["content-encoding"] == "gzip"  # the headers as the receiver sent them
        sent = server.headers[0]
        assert (sent["Accept"], sent["Accept-Encoding"], sent["X-Extra"]) == ("*/*", "gzip, deflate", "1")
        assert sent["Host"] == f"127.0.0.1:{server.port}"

    run(main())


def test_a_connection_not_accepted_in_time_is_a_connect_timeout_well_before_the_total() -> None:
    # A listening socket whose backlog is full drops further SYNs: the connection
    # attempt hangs, as it does to a host that drops packets.
    with socket.socket() as listener, socket.socket() as filler:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        filler.connect(("127.0.0.1", port))  # fills the accept queue, never accepted
        extra: list[socket.socket] = []
        try:
            for _ in range(4):  # the kernel admits one more than the backlog says
                extra.append(socket.create_connection(("127.0.0.1", port), timeout=0.2))
        except OSError:
            pass

        async def main() -> None:
            async with guarded_sender(allowed=LOOPBACK, connect_timeout_s=0.3, total_timeout_s=5) as sender:
                started = time.monotonic()
                with pytest.raises(httpx.ConnectTimeout):
                    await sender.post(f"http://127.0.0.1:{port}/hook")
                assert time.monotonic() - started < 2

        try:
            run(main())
        finally:
            for connection in extra:
                connection.close()


def _self_signed(host: str) -> tuple[bytes, bytes]:
    """A certificate for `host` signed by itself (so no CA bundle trusts it), and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = self_signed_certificate(key, [x509.DNSName(host)])
    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return certificate, pem_key


def test_tls_goes_to_the_checked_address_under_the_urls_name_and_an_untrusted_certificate_is_a_connect_error(
    tmp_path: Path,
) -> None:
    certificate, key = _self_signed("tls.test")
    (tmp_path / "cert.pem").write_bytes(certificate)
    (tmp_path / "key.pem").write_bytes(key)
    server_names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    context.sni_callback = lambda connection, name, _: server_names.append(name)  # type: ignore[assignment,func-returns-value]

    async def main() -> None:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
        port = server.sockets[0].getsockname()[1]
        try:
            async with guarded_sender({"tls.test": ["127.0.0.1"]}, LOOPBACK) as sender:
                with pytest.raises(httpx.ConnectError, match="certificate verify failed") as caught:
                    await sender.post(f"https://tls.test:{port}/hook")
        finally:
            server.close()
            await server.wait_closed()
        assert refused_in(caught.value) is None
        assert sender.resolver.asked == ["tls.test"]
        assert server_names == ["tls.test"]

    run(main())


# --- what the worker hands its transport ---------------------------------------------


def _task(url: str, delivery_id: str, webhook_id: str) -> SendTask:
    delivery = Delivery(
        id=delivery_id, space_id="spc_1", webhook_id=webhook_id, event_id="evt_1", event_type="WEBHOOK.TEST",
        job_id="", flow_id="", state="SENDING", attempt_count=0, next_attempt_time=0,
        last_status_code=0, last_error="", create_time=0, update_time=0,
    )  # fmt: skip
    return SendTask(
        delivery=delivery,
        url=url,
        headers={"X-Team": "a"},
        secrets=[SECRET],
        body=b'{"n":1}',
        attempt_number=1,
        lease=0,
    )


async def _attempts(worker: DeliveryWorker, *tasks: SendTask) -> list[AttemptOutcome]:
    await worker.open()
    try:
        return [await worker.attempt(task) for task in tasks]
    finally:
        await worker.close()


def test_the_worker_sends_through_an_injected_transport_and_records_what_it_answered() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(503, headers={"Retry-After": "7", "X-Answer": "busy"}, content=b"x" * 40)

    worker = DeliveryWorker(
        Settings(allow_targets=["127.0.0.0/8"], response_capture_bytes=10, retry_schedule="0,1s"),
        transport=httpx.MockTransport(answer),
        clock=lambda: 1_800_000_000_000,
    )
    [outcome] = asyncio.run(_attempts(worker, _task("http://127.0.0.1:9/hook?x=1", "dlv_1", "wh_1")))
    [request] = seen
    assert (request.method, str(request.url), request.content) == ("POST", "http://127.0.0.1:9/hook?x=1", b'{"n":1}')
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("hookline/")
    assert request.headers["x-team"] == "a"
    assert request.headers["webhook-id"] == "evt_1"
    assert request.headers["webhook-signature"].startswith("v1,")
    attempt = outcome.attempt
    assert (attempt.status_code, attempt.response_body, attempt.response_truncated) == (503, b"x" * 10, True)
    assert attempt.response_headers["x-answer"] == "busy"
    decision = worker.decide(outcome.seen, WebhookHealth(enabled=True, failing_since=None))
    assert decision.next_attempt_time == 1_800_000_000_000 + 7000  # Retry-After read from the answer


def test_a_cookie_one_webhooks_receiver_sets_never_reaches_another_webhook_on_that_host() -> None:
    async def main() -> list[AttemptOutcome]:
        async with loopback_server(_set_cookie) as server:
            worker = DeliveryWorker(Settings(allow_targets=["127.0.0.0/8", "::1/128"]))
            outcomes = await _attempts(
                worker,
                _task(f"http://localhost:{server.port}/space-a", "dlv_1", "wh_a"),
                _task(f"http://localhost:{server.port}/space-b", "dlv_2", "wh_b"),
            )
        assert [headers.get("Cookie") for headers in server.headers] == [None, None]
        return outcomes

    outcomes = asyncio.run(main())
    assert [o.attempt.status_code for o in outcomes] == [200, 200]
    assert "for-space-a-only" in outcomes[0].attempt.response_headers["set-cookie"]

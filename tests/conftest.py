"""Shared fixtures: a real hookline (its job runner and delivery worker) served by
pytest-grpc's real gRPC server on a free port, a client holding the default
space's management key, and a real HTTP receiver on loopback.

The database is SQLite in a temporary data dir, or, with
HOOKLINE_TEST_DATABASE=postgresql, a PostgreSQL database made for the test
module and dropped after it (server: HOOKLINE_TEST_POSTGRES_URL, default
postgresql://postgres@127.0.0.1:5432/test).

A test module can override `hookline_settings`, building it with
`make_settings(**overrides)`, to change the server's settings."""

from __future__ import annotations

import base64
import datetime
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hookline.client import Client
from hookline.server.app import Hookline
from hookline.server.settings import Settings
from hookline.server.storage import database

# --- processes and ports ----------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def self_signed_certificate(key: Any, names: list[Any], *, ca: bool = False) -> bytes:
    """A PEM certificate of `key` for `names` (x509 general names; the first
    names its subject too), signed by itself; `ca` makes it its own root."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(names[0].value))])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def wait_serving(address: str, timeout: float = 30.0) -> None:
    """Wait until a hookline server answers its health check with SERVING."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                response = stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if response.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"hookline did not start serving on {address}")
            time.sleep(0.1)


# --- streams ---------------------------------------------------------------------------


class Watching:
    """Reads a server stream on a thread of its own: the messages so far, and the
    error it ended with."""

    def __init__(self, stream: Any) -> None:  # a server-streaming call
        self.stream = stream
        self.messages: list[Any] = []
        self.error: grpc.RpcError | None = None
        self._ended = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for message in self.stream:
                with self._cond:
                    self.messages.append(message)
                    self._cond.notify_all()
        except grpc.RpcError as error:
            with self._cond:
                self.error = error
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def wait_for(self, done: Callable[[list[Any]], bool], timeout: float = 10.0, what: str = "") -> list[Any]:
        """The messages once `done(messages)` holds; fails if the stream ends or `timeout` passes first."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not done(self.messages):
                remaining = deadline - time.monotonic()
                if self._ended or remaining <= 0:
                    how = f"ended ({self.error.code().name if self.error else 'OK'})" if self._ended else "timed out"
                    raise AssertionError(f"{what or 'messages'} not seen: the stream {how} after {self.messages}")
                self._cond.wait(remaining)
            return list(self.messages)

    def ended(self, timeout: float = 10.0) -> grpc.RpcError | None:
        """Wait for the stream to end; the error it ended with (None if it ended
        cleanly). Fails if it is still open after `timeout`."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop()
            raise AssertionError(f"the stream was still open after {timeout} s")
        return self.error

    def stop(self) -> None:
        self.stream.cancel()
        self._thread.join()


# --- hookline over pytest-grpc ---------------------------------------------------


@pytest.fixture(scope="module")
def grpc_addr() -> str:
    # pytest-grpc's own grpc_addr leaves its probe socket open.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"127.0.0.1:{port}"


BACKEND = os.environ.get("HOOKLINE_TEST_DATABASE", "sqlite")
POSTGRES_URL = os.environ.get("HOOKLINE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
if BACKEND not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"HOOKLINE_TEST_DATABASE must be sqlite or postgresql, not {BACKEND!r}")


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test module; dropped afterwards."""
    import psycopg2

    name = f"hookline_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(POSTGRES_URL)
    admin.autocommit = True
    try:
        admin.cursor().execute(f"CREATE DATABASE {name}")
        yield POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        admin.close()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[None]:
    """The models bound to a new, empty database of the suite's backend, for one test
    of storage alone (no server)."""
    if BACKEND == "postgresql":
        with postgres_database() as url:
            opened = database.open_database(tmp_path, url)
            yield
            opened.close_all()
        return
    opened = database.open_database(tmp_path)
    yield
    opened.close()


@pytest.fixture(scope="module")
def test_database() -> Iterator[str | None]:
    """The module's database URL on PostgreSQL; None on SQLite (the data dir holds it)."""
    if BACKEND == "sqlite":
        yield None
        return
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def make_settings(tmp_path_factory: pytest.TempPathFactory, test_database: str | None) -> Callable[..., Settings]:
    """Settings for a test server: fast retries and polls, the loopback receiver
    allowed, the module's database; keyword arguments override any of them."""
    master_key = base64.urlsafe_b64encode(os.urandom(32)).decode()

    def make(**overrides: object) -> Settings:
        fields: dict[str, object] = dict(
            data_dir=tmp_path_factory.mktemp("hookline"),
            retry_schedule="0,100ms,200ms",
            poll_interval_s=0.2,
            stream_heartbeat_s=1.0,
            allow_targets=["127.0.0.0/8"],  # the loopback receiver
        )
        if test_database:
            fields.update(database=test_database, master_key=master_key)
        fields.update(overrides)
        return Settings(**fields)  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="module")
def hookline_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings()


@pytest.fixture(scope="module")
def hookline_app(hookline_settings: Settings) -> Iterator[Hookline]:
    app = Hookline(hookline_settings)
    app.start_background()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def grpc_interceptors(hookline_app: Hookline) -> list:
    return hookline_app.interceptors()


@pytest.fixture(scope="module")
def grpc_servicer(hookline_app: Hookline) -> Hookline:
    return hookline_app


@pytest.fixture(scope="module")
def grpc_add_to_server() -> Callable:
    return lambda app, server: app.add_to_server(server)


@pytest.fixture(scope="module")
def grpc_stub_cls(hookline_app: Hookline) -> Callable:
    return lambda channel: Client(channel=channel, api_key=hookline_app.admin_key)


@pytest.fixture(scope="module")
def client(grpc_stub: Client) -> Client:
    """A client of the default space with its management key."""
    return grpc_stub


@pytest.fixture(scope="module")
def connect(grpc_channel) -> Callable[[str], Client]:  # type: ignore[no-untyped-def]
    """A client on the same server with another API key."""
    return lambda api_key: Client(channel=grpc_channel, api_key=api_key)


# --- a real HTTP receiver on loopback -------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    time: float  # time.time() at arrival


@dataclass
class Reply:
    """A scripted answer: status, extra headers, body (a JSON note by default),
    a delay before answering, a pause before each byte of the body (a body that
    trickles) and something to do when the request arrives, before answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    delay_s: float = 0.0
    trickle_s: float = 0.0
    on_arrival: Callable[[], None] | None = None


@dataclass
class Receiver:
    """Records every POST; answers per path with a scripted list of replies
    (statuses or Reply objects; the last one repeats), 200 by default."""

    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    scripts: dict[str, list[int | Reply]] = field(default_factory=dict)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def url(self, path: str) -> str:
        return self.base_url + path

    def respond(self, path: str, replies: list[int | Reply]) -> None:
        self.scripts[path] = list(replies)

    def _next_reply(self, path: str) -> Reply:
        script = self.scripts.get(path)
        if not script:
            return Reply()
        reply = script.pop(0) if len(script) > 1 else script[0]
        return reply if isinstance(reply, Reply) else Reply(reply)

    def at(self, path: str) -> list[Received]:
        with self._cond:
            return [r for r in self.requests if r.path == path]

    def wait_for(self, path: str, count: int, timeout: float = 10.0) -> list[Received]:
        """The requests to `path` once there are at least `count` (fails after `timeout`)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([r for r in self.requests if r.path == path]) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = len([r for r in self.requests if r.path == path])
                    raise AssertionError(f"{path}: expected {count} requests within {timeout} s, got {got}")
                self._cond.wait(remaining)
            return [r for r in self.requests if r.path == path]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            arrived = time.time()
            with state._cond:
                reply = state._next_reply(self.path)
                state.requests.append(
                    Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body, arrived)
                )
                state._cond.notify_all()
            if reply.on_arrival is not None:
                reply.on_arrival()
            if reply.delay_s:
                time.sleep(reply.delay_s)
            content = reply.body
            if content is None:
                content = b'{"ok":true}' if reply.status < 300 else b'{"error":"scripted failure"}'
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if reply.trickle_s:
                    for n in range(len(content)):
                        self.wfile.flush()
                        time.sleep(reply.trickle_s)
                        self.wfile.write(content[n : n + 1])
                else:
                    self.wfile.write(content)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up (its timeout) before the scripted delay ended

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join()


# --- a loopback listener that never answers -------------------------------------------


class Listener:
    """A TCP listener on loopback that records each connection and never answers
    (a fetch that reaches it would hang)."""

    def __init__(self) -> None:
        self.connections: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._server.close()
        self._thread.join()
        for connection in self.connections:
            connection.close()  # lets a fetch that reached it end


@pytest.fixture
def listener() -> Iterator[Listener]:
    listening = Listener()
    yield listening
    listening.close()

"""Running `hookline` as real processes, on the backend the suite runs on."""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import grpc
import psycopg2
import pytest
from conftest import BACKEND, free_port, postgres_database, self_signed_certificate, wait_serving
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf import struct_pb2

from hookline.client import Client, CreateFlowRequest, CreateWebhookRequest, Flow, Webhook

HOOKLINE = [sys.executable, "-m", "hookline.cli"]
LOCALHOST_NAMES = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]


@dataclass
class Storage:
    """Where the processes of one test keep their data, as flags and environment."""

    data_dir: Path
    database: str | None
    env: dict[str, str]

    @property
    def args(self) -> list[str]:
        return ["--data-dir", str(self.data_dir)] + (["--database", self.database] if self.database else [])

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Rows of a query run directly against the database (e.g. after a kill)."""
        if self.database:
            with contextlib.closing(psycopg2.connect(self.database)) as db, db.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()
        with contextlib.closing(sqlite3.connect(self.data_dir / "hookline.db")) as db:
            return db.execute(sql).fetchall()


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storage]:
    data_dir = tmp_path_factory.mktemp("process") / "data"
    if BACKEND == "sqlite":
        yield Storage(data_dir, None, dict(os.environ))
        return
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    with postgres_database() as url:
        yield Storage(data_dir, url, {**os.environ, "HOOKLINE_MASTER_KEY": key})


class RestartableServer:
    """`hookline serve` on one address and one storage, to kill and start again
    (its log appended to across starts); `extra` flags follow the storage's."""

    def __init__(self, storage: Storage, log: Path, extra: tuple[str, ...] = (), address: str | None = None):
        self.storage, self.log, self.extra = storage, log, extra
        self.address = address or f"127.0.0.1:{free_port()}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                [*HOOKLINE, "serve", "--listen", self.address, *self.storage.args, *self.extra],
                env=self.storage.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_serving(self.address)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def _pem_key(key: ec.EllipticCurvePrivateKey, encryption: serialization.KeySerializationEncryption) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """cert.pem and its key.pem; other-key.pem, of no certificate here; locked-key.pem,
    key.pem under a passphrase; notes.txt, no PEM at all."""
    folder = tmp_path_factory.mktemp("tls")
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    contents = {
        "cert.pem": self_signed_certificate(key, LOCALHOST_NAMES, ca=True),
        "key.pem": _pem_key(key, serialization.NoEncryption()),
        "other-key.pem": _pem_key(other, serialization.NoEncryption()),
        "locked-key.pem": _pem_key(key, serialization.BestAvailableEncryption(b"passphrase")),
        "notes.txt": b"not a certificate\n",
    }
    for name, content in contents.items():
        (folder / name).write_bytes(content)
    return {name: folder / name for name in contents}


def with_password(url: str, password: str) -> str:
    """`url` (of a PostgreSQL that trusts its clients, so any password will do) with a password in it."""
    parts = urlsplit(url)
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0] or 'postgres'}:{password}@{host}"))


class ThrowawayPostgres:
    """A PostgreSQL cluster of a test's own, on a port of its own, that the test
    may restart, stop and cut off without disturbing the shared server."""

    def __init__(self) -> None:
        bins = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
        assert bins, "PostgreSQL's server programs are not installed (apt-get install postgresql)"
        self._bin = bins[-1]
        self.port = free_port()
        # Somewhere the postgres user can reach (pytest's temporary folders are root's own).
        self.dir = Path(tempfile.mkdtemp(prefix="hookline-pg-"))
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._pg(["initdb", "-D", str(self.dir / "data"), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        self.start()

    def _pg(self, command: list[str], check: bool = True) -> None:
        subprocess.run(
            [*self._as_postgres, str(self._bin / command[0]), *command[1:]],
            check=check,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._pg(["pg_ctl", "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o", options, "start"])

    def stop(self) -> None:
        self._pg(["pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"])

    def restart(self) -> None:
        self.stop()
        self.start()

    def terminate_connections(self, database: str) -> int:
        """Ends every session on `database` as an operator would; returns how many."""
        with contextlib.closing(psycopg2.connect(self.url())) as admin, admin.cursor() as cursor:
            admin.autocommit = True
            cursor.execute(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s", (database,)
            )
            return cursor.fetchone()[0]

    def create_database(self, name: str) -> str:
        with contextlib.closing(psycopg2.connect(self.url())) as admin, admin.cursor() as cursor:
            admin.autocommit = True
            cursor.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def destroy(self) -> None:
        self._pg(["pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop"], check=False)
        shutil.rmtree(self.dir)


@pytest.fixture(scope="module")
def throwaway_postgres() -> Iterator[ThrowawayPostgres]:
    cluster = ThrowawayPostgres()
    yield cluster
    cluster.destroy()


def eventually(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> None:
    """Wait until `condition()` holds; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout} s")
        time.sleep(every)


class StreamReader:
    """Reads a server stream into `seen` on a thread of its own until `stop()`."""

    def __init__(self, stream: Any) -> None:  # a server-streaming call
        self.stream = stream
        self.seen: list = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            self.seen.extend(self.stream)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.CANCELLED  # we hung up

    def stop(self) -> None:
        self.stream.cancel()
        self._thread.join()


class Process:
    """A `hookline serve` process on a shared database, with short leases and
    retries for tests; `extra` flags are added (later flags win)."""

    def __init__(self, storage: Storage, name: str, role: str, log_dir: Path, extra: tuple[str, ...] = ()):
        self.address = f"127.0.0.1:{free_port()}"
        self.data_dir = log_dir / name
        self.log_path = log_dir / f"{name}.log"
        args = ["--database", str(storage.database), "--data-dir", str(self.data_dir), "--role", role]
        args += ["--allow-target", "127.0.0.0/8", "--retry-schedule", "0,200ms,500ms,1s,2s,5s"]
        args += ["--job-lease", "1s", "--request-timeout", "2", "--delivery-lease", "3s", *extra]
        with self.log_path.open("a") as log:
            self.process = subprocess.Popen(
                [*HOOKLINE, "serve", "--listen", self.address, *args],
                env=storage.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_serving(self.address)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def client_of(first: Process, address: str | None = None) -> Client:
    """A client of `address` (default: `first`'s) with the key `first` created."""
    return Client(address or first.address, (first.data_dir / "admin.key").read_text().strip())


def all_pages(method, request, field: str) -> list:  # type: ignore[no-untyped-def]
    items, request.page_size = [], 1000
    while True:
        page = method(request)
        items.extend(getattr(page, field))
        if not page.next_page_token:
            return items
        request.page_token = page.next_page_token


def job_flow(client: Client, receiver, path: str, sleep_ms: int = 0) -> str:  # type: ignore[no-untyped-def]
    """A webhook at `path` of `receiver` for job ends, linked to a new flow
    `<path>-flow` that sleeps `sleep_ms` and returns its input; returns the webhook's id."""
    hook = client.webhooks.CreateWebhook(
        CreateWebhookRequest(
            webhook=Webhook(alias=path.strip("/"), url=receiver.url(path), event_types=["JOB.COMPLETED", "JOB.ERROR"])
        )
    ).webhook
    definition = struct_pb2.Struct()
    definition.update({"steps": ([{"sleep_ms": sleep_ms}] if sleep_ms else []) + [{"transform": "@"}]})
    client.flows.CreateFlow(
        CreateFlowRequest(flow=Flow(alias=path.strip("/") + "-flow", definition=definition, webhook_ids=[hook.id]))
    )
    return hook.id

"""`hookline serve` and the operator commands as a user runs them: real processes."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import stat
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from conftest import free_port, postgres_database, wait_serving
from grpc_health.v1 import health_pb2, health_pb2_grpc

from hookline.client import Client, ListWebhooksRequest, StartJobRequest

from .conftest import BACKEND, HOOKLINE, Storage, eventually, with_password


@pytest.fixture(scope="module")
def data_dir(storage: Storage) -> Path:
    return storage.data_dir


@pytest.fixture(scope="module")
def server(storage: Storage) -> Iterator[tuple[subprocess.Popen, str]]:
    address = f"127.0.0.1:{free_port()}"
    process = subprocess.Popen(
        [*HOOKLINE, "serve", "--listen", address, *storage.args],
        env=storage.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_serving(address)
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stdout.close()


def test_first_start_writes_a_private_management_key(server, data_dir: Path) -> None:
    _, address = server
    key_file = data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # The folder holds job inputs and outputs too (the embedded database): its owner's alone.
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    with Client(address, key_file.read_text().strip()) as client:
        assert client.webhooks.ListWebhooks(ListWebhooksRequest()).webhooks is not None


@pytest.mark.skipif(BACKEND != "sqlite", reason="the data-dir lock guards the embedded database only")
def test_a_second_server_on_the_same_data_dir_is_refused(server, data_dir: Path) -> None:
    result = subprocess.run(
        [*HOOKLINE, "serve", "--listen", f"127.0.0.1:{free_port()}", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode != 0
    assert "already using" in result.stderr and str(data_dir.resolve()) in result.stderr


def test_spaces_and_keys_commands(server, storage: Storage) -> None:
    _, address = server
    created = subprocess.run(
        [*HOOKLINE, "spaces", "create", "acme", *storage.args],
        env=storage.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    keys = dict(line.split(" key: ") for line in created.splitlines() if " key: " in line)
    assert set(keys) == {"management", "solver"}

    with Client(address, keys["management"]) as acme:
        assert list(acme.webhooks.ListWebhooks(ListWebhooksRequest()).webhooks) == []
    with Client(address, keys["solver"]) as solver, pytest.raises(grpc.RpcError) as denied:
        solver.webhooks.ListWebhooks(ListWebhooksRequest())
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with Client(address, keys["solver"]) as solver, pytest.raises(grpc.RpcError) as missing:
        solver.jobs.StartJob(StartJobRequest(flow="no-such-flow"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # the solver key reaches JobService

    listed = subprocess.run(
        [*HOOKLINE, "keys", "list", "--space", "acme", *storage.args],
        env=storage.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert keys["management"] not in listed  # never the secret
    management_id = keys["management"].split("_")[1]
    assert management_id in listed

    subprocess.run(
        [*HOOKLINE, "keys", "revoke", management_id, *storage.args],
        env=storage.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    with Client(address, keys["management"]) as revoked, pytest.raises(grpc.RpcError) as rejected:
        revoked.webhooks.ListWebhooks(ListWebhooksRequest())
    assert rejected.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_sigterm_stops_the_server_cleanly(server) -> None:
    process, _ = server
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    output = process.stdout.read()
    assert "shutting down" in output


@contextlib.contextmanager
def running(
    tmp_path: Path,
    storage: Storage,
    flags: list[str],
    database: str | None = None,
    ready: Callable[[str], None] = wait_serving,
) -> Iterator[Callable[[], str]]:
    """A server with a data dir of its own on the suite's storage (or on
    `database`) until it has answered `ready(address)`; yields what gives its
    output once it has stopped."""
    address = f"127.0.0.1:{free_port()}"
    database = database or storage.database
    log_path = tmp_path / "serve.log"
    command = [*HOOKLINE, "serve", "--listen", address, "--data-dir", str(tmp_path / "data"), *flags]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command + (["--database", database] if database else []), env=storage.env, stdout=log, stderr=log
        )
    stopped = False

    def output() -> str:
        assert stopped, "the output is complete once the server has stopped"
        return log_path.read_text()

    try:
        ready(address)
        yield output
    finally:
        process.terminate()
        process.wait(timeout=30)
        stopped = True


NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.mark.parametrize(
    ("flags", "reachable", "unreachable"),
    [([], "127.0.0.1", "127.0.0.2"), (["--metrics-host", "127.0.0.2"], "127.0.0.2", "127.0.0.1")],
    ids=["default", "metrics-host"],
)
def test_metrics_listen_on_loopback_unless_told_another_host(
    tmp_path: Path, storage: Storage, flags: list[str], reachable: str, unreachable: str
) -> None:
    # Every 127.x address reaches a socket bound to all interfaces, only 127.0.0.1 one bound to it.
    port = free_port()
    with running(tmp_path, storage, ["--metrics-port", str(port), *flags]):
        with NO_PROXY.open(f"http://{reachable}:{port}/metrics", timeout=10) as response:
            assert b"hookline_jobs" in response.read()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((unreachable, port), timeout=10).close()


@pytest.mark.skipif(BACKEND != "postgresql", reason="a database URL with a password")
def test_the_database_password_is_never_logged(tmp_path: Path, storage: Storage) -> None:
    assert storage.database
    password = "s3cret-" + os.urandom(4).hex()

    def delivery_process_running(address: str) -> None:
        # Its log lines are checked too: wait until it has written one.
        wait_serving(address)
        eventually(lambda: "delivery process" in (tmp_path / "serve.log").read_text(), 30, "the delivery process")

    database = with_password(storage.database, password)
    with running(tmp_path, storage, [], database=database, ready=delivery_process_running) as output:
        pass
    logged = output()
    assert "hookline listening on" in logged and "delivery process" in logged
    assert with_password(storage.database, "***") in logged
    assert password not in logged


def test_serves_over_tls_with_the_given_certificate(
    tmp_path: Path, storage: Storage, tls_files: dict[str, Path]
) -> None:
    certificate = tls_files["cert.pem"].read_bytes()

    def serving_over_tls(address: str) -> None:
        credentials = grpc.ssl_channel_credentials(root_certificates=certificate)
        with grpc.secure_channel(address, credentials) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert response.status == health_pb2.HealthCheckResponse.SERVING

    tls = ["--tls-cert", str(tls_files["cert.pem"]), "--tls-key", str(tls_files["key.pem"])]
    with running(tmp_path, storage, tls, ready=serving_over_tls):
        pass


def test_serve_help_names_the_variable_of_each_flag(storage: Storage) -> None:
    shown = subprocess.run(
        [*HOOKLINE, "serve", "--help"],
        env={**storage.env, "HOOKLINE_DATABASE": "postgresql://hookline:s3cret@db/hookline"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for flag, variable in [
        ("--listen", "HOOKLINE_LISTEN"),
        ("--metrics-host", "HOOKLINE_METRICS_HOST"),
        ("--job-lease", "HOOKLINE_JOB_LEASE"),
        ("--shutdown-grace", "HOOKLINE_SHUTDOWN_GRACE"),
        ("--max-json-bytes", "HOOKLINE_MAX_JSON_BYTES"),
    ]:
        assert flag in shown and f"[{variable}]" in shown
    assert "HOOKLINE_MASTER_KEY" in shown and "s3cret" not in shown


@pytest.mark.skipif(BACKEND != "postgresql", reason="only a shared database lives apart from the data dir")
def test_a_new_database_keeps_the_key_file_another_database_left(tmp_path: Path, storage: Storage) -> None:
    # The folder of a server on one database, then a first start on a new one with it as data dir.
    key_file = tmp_path / "data" / "admin.key"
    key_file.parent.mkdir()
    key_file.write_text("hl_the_only_copy_of_the_other_database_key\n")
    with postgres_database() as new_database, running(tmp_path, storage, [], database=new_database) as output:
        pass
    assert key_file.read_text() == "hl_the_only_copy_of_the_other_database_key\n"
    assert "kept the management key already in" in output() and "hookline keys create" in output()

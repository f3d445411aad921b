"""`hookline serve` and the operator commands as a user runs them: real processes."""

from __future__ import annotations

import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from conftest import free_port, wait_serving

from hookline.client import Client, ListWebhooksRequest, StartJobRequest

from .conftest import BACKEND, HOOKLINE, Storage


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

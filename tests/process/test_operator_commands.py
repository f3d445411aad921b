"""The operator commands (`spaces create|list`, `keys create|list|revoke`) as an
operator types them: each works on a server's storage, says what went wrong in
one line (never a traceback), and none makes a database where there was none."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_serving

from .conftest import HOOKLINE, Storage

COMMANDS = [
    ["spaces", "create", "acme"],
    ["spaces", "list"],
    ["keys", "create", "--role", "solver"],
    ["keys", "list"],
    ["keys", "revoke", "abc"],
]


def hookline(args: list[str], storage: Storage | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*HOOKLINE, *args, *(storage.args if storage else [])],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env=storage.env if storage else None,
    )


def assert_refused(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    for needle in needles:
        assert needle in line, line


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_in_a_folder_without_a_data_dir_a_command_refuses_and_creates_nothing(command, tmp_path: Path) -> None:
    result = hookline(command, cwd=tmp_path)
    assert_refused(result, "no hookline database", str(tmp_path / ".hookline"), "--data-dir")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def served(storage: Storage) -> Iterator[Storage]:
    """The storage after a server has started on it once (its schema and default space exist)."""
    address = f"127.0.0.1:{free_port()}"
    server = subprocess.Popen([*HOOKLINE, "serve", "--listen", address, *storage.args], env=storage.env)
    try:
        wait_serving(address)
    finally:
        server.terminate()
        server.wait(30)
    yield storage


def test_keys_create_list_and_revoke(served: Storage) -> None:
    created = hookline(["keys", "create", "--role", "solver"], served)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert token.startswith("hl_")
    key_id = token.split("_")[1]
    listed = hookline(["keys", "list"], served)
    assert listed.returncode == 0, listed.stderr
    [row] = [line.split("\t") for line in listed.stdout.splitlines() if line.startswith(key_id)]
    assert row[2:] == ["solver", "active"]
    assert token.split("_", 2)[2] not in listed.stdout  # the secret is shown once only
    revoked = hookline(["keys", "revoke", key_id], served)
    assert revoked.returncode == 0 and key_id in revoked.stdout
    [row] = [line.split("\t") for line in hookline(["keys", "list"], served).stdout.splitlines() if key_id in line]
    assert row[3] == "revoked"


def test_a_new_key_can_be_revoked_by_the_id_keys_list_quiet_prints(served: Storage) -> None:
    """As the README's "Operating it" does: `hookline keys revoke $(hookline keys
    list --space S --quiet | tail -1)` revokes the key just created."""
    assert hookline(["spaces", "create", "quiet-ops"], served).returncode == 0
    created = hookline(["keys", "create", "--space", "quiet-ops", "--role", "solver"], served)
    token = created.stdout.strip()
    key_id = token.split("_")[1]
    assert created.stdout == token + "\n"  # the key alone on stdout, for $(...)
    assert f"solver key {key_id} of space quiet-ops" in created.stderr and "shown only now" in created.stderr
    assert f"hookline keys revoke {key_id}" in created.stderr and token not in created.stderr

    ids = hookline(["keys", "list", "--space", "quiet-ops", "--quiet"], served).stdout.splitlines()
    assert len(ids) == 3 and ids[-1] == key_id and all(re.fullmatch(r"[0-9a-f]+", i) for i in ids)
    assert hookline(["keys", "revoke", ids[-1]], served).returncode == 0
    rows = [line.split("\t") for line in hookline(["keys", "list", "--space", "quiet-ops"], served).stdout.splitlines()]
    assert [row[3] for row in rows] == ["active", "active", "revoked"]


def test_key_commands_refuse_what_does_not_exist(served: Storage) -> None:
    assert_refused(hookline(["keys", "create", "--space", "no-such-space"], served), "no-such-space")
    assert_refused(hookline(["keys", "revoke", "no-such-key"], served), "no-such-key")
    assert_refused(hookline(["keys", "list", "--space", "no-such-space"], served), "no-such-space")
    bad_role = hookline(["keys", "create", "--role", "owner"], served)
    assert bad_role.returncode == 2 and "invalid choice" in bad_role.stderr  # argparse's own usage error


def test_spaces_create_and_list(served: Storage) -> None:
    created = hookline(["spaces", "create", "acme-ops"], served)
    assert created.returncode == 0, created.stderr
    assert "management key: hl_" in created.stdout and "solver key: hl_" in created.stdout
    assert "acme-ops" in hookline(["spaces", "list"], served).stdout
    assert_refused(hookline(["spaces", "create", "acme-ops"], served), "acme-ops")


@pytest.mark.parametrize("name", ["", "two\nlines", "with space", "9lives", "x" * 65], ids=repr)
def test_spaces_create_refuses_a_name_that_would_not_read_back(served: Storage, name: str) -> None:
    before = hookline(["spaces", "list"], served).stdout
    assert_refused(hookline(["spaces", "create", name], served), "space name")
    assert hookline(["spaces", "list"], served).stdout == before

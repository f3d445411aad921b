"""`hookline serve` refuses to start on storage it cannot use with one line that
says why, not a traceback: a read-only data dir (empty, or holding a database),
a PostgreSQL server that does not answer."""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_serving

from .conftest import BACKEND, HOOKLINE


def serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HOOKLINE, "serve", "--listen", f"127.0.0.1:{free_port()}", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def read_only_disk(tmp_path: Path) -> Iterator[Path]:
    """A small filesystem that can be made read-only (takes root; CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a filesystem takes root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(mount)], check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def remount_read_only(mount: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)


@pytest.mark.skipif(BACKEND != "sqlite", reason="the embedded database's data dir")
def test_an_empty_read_only_data_dir_is_refused_in_one_line(read_only_disk: Path) -> None:
    remount_read_only(read_only_disk)
    result = serve(["--data-dir", str(read_only_disk / "data")])
    assert_one_line(result, "cannot write to the data dir", str(read_only_disk / "data"), "--data-dir")


@pytest.mark.skipif(BACKEND != "sqlite", reason="the embedded database's data dir")
def test_a_data_dir_made_read_only_after_use_is_refused_in_one_line(read_only_disk: Path) -> None:
    data_dir = read_only_disk / "data"
    address = f"127.0.0.1:{free_port()}"
    first = subprocess.Popen([*HOOKLINE, "serve", "--listen", address, "--data-dir", str(data_dir)])
    try:
        wait_serving(address)  # started once: the database, its keys and its lock file exist
    finally:
        first.terminate()
        first.wait(30)
    assert (data_dir / "hookline.db").exists()
    remount_read_only(read_only_disk)
    result = serve(["--data-dir", str(data_dir)])
    assert_one_line(result, str(data_dir))


@pytest.mark.skipif(BACKEND != "postgresql", reason="a PostgreSQL server that does not answer")
def test_a_database_that_does_not_answer_is_refused_in_one_line(tmp_path: Path) -> None:
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    result = serve(["--data-dir", str(tmp_path), "--database", url], env={**os.environ, "HOOKLINE_MASTER_KEY": key})
    assert_one_line(result, "cannot open the database", "Connection refused")

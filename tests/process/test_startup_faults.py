"""`hookline serve` refuses to start on storage it cannot use with one line that
says why, not a traceback: a read-only data dir (empty, or holding a database),
a PostgreSQL server that does not answer; and so it does for an address in use,
TLS files it cannot use and every flag or variable with a bad value, creating
nothing. No line shows the database's password."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from conftest import free_port, postgres_database, wait_serving

from .conftest import BACKEND, HOOKLINE, with_password

MASTER_KEY_ENV = {"HOOKLINE_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode()}


def serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`hookline serve` on a free port (a later --listen wins), run until it ends."""
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


@contextlib.contextmanager
def fresh_storage(tmp_path: Path) -> Iterator[tuple[Path, list[str], dict[str, str]]]:
    """A data dir not yet made and, on PostgreSQL, an empty database: (data dir, flags, environment)."""
    data_dir = tmp_path / "data"
    if BACKEND == "sqlite":
        yield data_dir, ["--data-dir", str(data_dir)], dict(os.environ)
        return
    with postgres_database() as url:
        yield data_dir, ["--data-dir", str(data_dir), "--database", url], {**os.environ, **MASTER_KEY_ENV}


def assert_nothing_created(data_dir: Path, args: list[str]) -> None:
    assert not data_dir.exists(), sorted(path.name for path in data_dir.iterdir())
    if "--database" in args:
        url = args[args.index("--database") + 1]
        with contextlib.closing(psycopg2.connect(url)) as db, db.cursor() as cursor:
            cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
            assert cursor.fetchall() == []


@contextlib.contextmanager
def port_in_use() -> Iterator[int]:
    """A loopback port that something else listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize("taken", ["--listen", "--metrics-port"])
def test_a_port_in_use_is_refused_in_one_line_and_creates_nothing(tmp_path: Path, taken: str) -> None:
    with fresh_storage(tmp_path) as (data_dir, args, env), port_in_use() as port:
        if taken == "--listen":
            flags, named = ["--listen", f"127.0.0.1:{port}"], f"cannot listen on 127.0.0.1:{port}"
        else:
            flags, named = ["--metrics-port", str(port)], f"cannot serve metrics on 127.0.0.1:{port}"
        result = serve([*args, *flags], env=env)
        # One line, ours: not gRPC core's own "Failed to add port" line before it.
        assert_one_line(result, named, "Address already in use", taken)
        assert_nothing_created(data_dir, args)


@pytest.mark.parametrize(
    ("cert", "key", "named"),
    [
        ("missing.pem", "key.pem", "cannot read --tls-cert {folder}/missing.pem: No such file or directory"),
        ("cert.pem", "missing.pem", "cannot read --tls-key {folder}/missing.pem: No such file or directory"),
        (".", "key.pem", "cannot read --tls-cert {folder}: Is a directory"),
        ("notes.txt", "key.pem", "--tls-cert {folder}/notes.txt holds no PEM certificate"),
        ("cert.pem", "notes.txt", "--tls-key {folder}/notes.txt is not an unencrypted PEM private key"),
        ("cert.pem", "locked-key.pem", "--tls-key {folder}/locked-key.pem is not an unencrypted PEM private key"),
        ("cert.pem", "other-key.pem", "--tls-key {folder}/other-key.pem is not the key of the certificate"),
    ],
)
def test_tls_files_that_cannot_be_used_are_refused_in_one_line(
    tmp_path: Path, tls_files: dict[str, Path], cert: str, key: str, named: str
) -> None:
    folder = tls_files["cert.pem"].parent
    with fresh_storage(tmp_path) as (data_dir, args, env):
        result = serve([*args, "--tls-cert", str(folder / cert), "--tls-key", str(folder / key)], env=env)
        assert_one_line(result, named.format(folder=folder))
        assert_nothing_created(data_dir, args)


@pytest.mark.parametrize(
    ("flags", "variables", "named"),
    [
        (["--listen", "localhost"], {}, "--listen (HOOKLINE_LISTEN) must be HOST:PORT"),
        ([], {"HOOKLINE_METRICS_PORT": "70000"}, "a port from 0 to 65535, not 70000"),
        (["--metrics-port", "99999"], {}, "--metrics-port (HOOKLINE_METRICS_PORT) must be a port from 0 to 65535"),
        (["--job-workers", "0"], {}, "--job-workers (HOOKLINE_JOB_WORKERS) must be at least 1"),
        (["--max-streams", "-1"], {}, "--max-streams (HOOKLINE_MAX_STREAMS) must be at least 1"),
        ([], {"HOOKLINE_JOB_WORKERS": "abc"}, "HOOKLINE_JOB_WORKERS (or --job-workers): 'abc' is not a whole number"),
        ([], {"HOOKLINE_RETRY_SCHEDULE": "x"}, "--retry-schedule (HOOKLINE_RETRY_SCHEDULE): retry schedule entry 1"),
        ([], {"HOOKLINE_MAX_JSON_BYTES": "1MB"}, "HOOKLINE_MAX_JSON_BYTES (or --max-json-bytes): '1MB' is not"),
        (["--database", "mysql://hookline@db/hookline"], {}, "--database (HOOKLINE_DATABASE) must be a postgresql://"),
        (["--database", "postgresql://db:five/x"], {}, "--database (HOOKLINE_DATABASE) has a bad port"),
        (["--metrics-port", "0", "--metrics-host", "nosuchhost.invalid"], {}, "cannot serve metrics on nosuchhost"),
        (["--listen", "nosuchhost.invalid:50051"], {}, "cannot listen on nosuchhost.invalid:50051: cannot resolve"),
    ],
)
def test_a_bad_value_of_any_flag_or_variable_is_refused_in_one_line_and_creates_nothing(
    tmp_path: Path, flags: list[str], variables: dict[str, str], named: str
) -> None:
    with fresh_storage(tmp_path) as (data_dir, args, env):
        result = serve([*args, *flags], env={**env, **variables})
        assert_one_line(result, named)
        assert_nothing_created(data_dir, args)


@pytest.mark.parametrize(
    ("command", "url", "named"),
    [
        # A database that refuses the connection.
        (["serve"], "postgresql://hookline:{pw}@127.0.0.1:{port}/hookline", "cannot open the database"),
        (["keys", "list"], "postgresql://hookline:{pw}@127.0.0.1:{port}/hookline", "cannot open the database"),
        # libpq quotes a malformed password back in its error.
        (["serve"], "postgresql://hookline:{pw}%zz@127.0.0.1:{port}/hookline", 'percent-encoded token: "***"'),
        (["spaces", "list"], "postgresql://hookline:{pw}%zz@127.0.0.1:{port}/x", 'percent-encoded token: "***"'),
        (["serve"], "mysql://hookline:{pw}@127.0.0.1:{port}/hookline", "mysql://hookline:***@127.0.0.1"),
    ],
)
def test_errors_never_show_the_database_password(tmp_path: Path, command: list[str], url: str, named: str) -> None:
    password = "s3cret-" + os.urandom(4).hex()
    database = url.format(pw=password, port=free_port())
    listen = ["--listen", f"127.0.0.1:{free_port()}"] if command == ["serve"] else []
    result = subprocess.run(
        [*HOOKLINE, *command, *listen, "--data-dir", str(tmp_path), "--database", database],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **MASTER_KEY_ENV},
    )
    assert_one_line(result, named)
    assert password not in result.stderr + result.stdout


@pytest.mark.skipif(BACKEND != "postgresql", reason="a PostgreSQL server that would take the malformed URL")
def test_a_malformed_url_with_a_password_is_refused_before_it_is_used(tmp_path: Path) -> None:
    # The connection pool reads the URL its own way and connects; libpq, for LISTEN,
    # refuses it and quotes the password back: refused at start, masked.
    password = "s3cret-" + os.urandom(4).hex()
    with postgres_database() as url:
        result = serve(
            ["--data-dir", str(tmp_path), "--database", with_password(url, password + "%zz")],
            env={**os.environ, **MASTER_KEY_ENV},
        )
    assert_one_line(result, "--database (HOOKLINE_DATABASE) is not a valid PostgreSQL URL", '"***"')
    assert password not in result.stderr + result.stdout

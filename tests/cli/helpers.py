"""Running the `hookline` command in tests: in-process for quick calls, and as
real processes (the server, the receiver, watches) read line by line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from hookline.cli import main

HOOKLINE = [sys.executable, "-m", "hookline.cli"]
BIN_DIR = str(Path(sys.executable).parent)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> Result:
    """`hookline ARGV` in this process; argparse's own exits become a Result too."""
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for CLI processes: this venv's `hookline` first on PATH, no
    colour, and no key or address inherited from whoever runs the tests."""
    inherited = ("HOOKLINE_API_KEY", "HOOKLINE_ADDRESS", "HOOKLINE_DATA_DIR")
    env = {k: v for k, v in os.environ.items() if k not in inherited}
    env["PATH"] = BIN_DIR + os.pathsep + env.get("PATH", "")
    env["NO_COLOR"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Process:
    """A long-running command whose stdout and stderr are read as they come."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str], cwd: Path | str | None = None):
        self.argv = list(argv)
        self.popen = subprocess.Popen(
            self.argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: dict[str, list[str]] = {"out": [], "err": []}
        self._cond = threading.Condition()
        self._readers = [
            threading.Thread(target=self._read, args=(self.popen.stdout, "out"), daemon=True),
            threading.Thread(target=self._read, args=(self.popen.stderr, "err"), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, name: str) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            with self._cond:
                self.lines[name].append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def out(self) -> str:
        with self._cond:
            return "\n".join(self.lines["out"])

    @property
    def err(self) -> str:
        with self._cond:
            return "\n".join(self.lines["err"])

    def wait_for(self, pattern: str, stream: str = "out", timeout: float = 30.0, count: int = 1) -> list[re.Match]:
        """The first `count` matches of `pattern` in the lines of `stream`, waiting for them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = [m for m in (regex.search(line) for line in self.lines[stream]) if m]
                if len(found) >= count:
                    return found[:count]
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.popen.poll() is not None and not any(r.is_alive() for r in self._readers)):
                    raise AssertionError(
                        f"{' '.join(self.argv)}: no {count} x {pattern!r} on std{stream} "
                        f"(exit {self.popen.poll()})\n--- stdout\n{self.out_unlocked()}\n--- stderr\n"
                        + "\n".join(self.lines["err"])
                    )
                self._cond.wait(min(remaining, 0.2))

    def out_unlocked(self) -> str:
        return "\n".join(self.lines["out"])

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        """Send `sig` (Ctrl-C by default) and wait for the exit status."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        for reader in self._readers:
            reader.join(5)
        self.popen.stdout.close()  # type: ignore[union-attr]
        self.popen.stderr.close()  # type: ignore[union-attr]
        return code


def run_on_terminal(argv: Sequence[str], *, env: dict[str, str], timeout: float = 60.0) -> tuple[int, str]:
    """Run with stdout and stderr on a pseudo-terminal; the exit status and all it wrote."""
    import pty
    import select

    leader, follower = pty.openpty()
    process = subprocess.Popen(list(argv), env=env, stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)
    os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")

"""Running `hookline` as real processes, on the backend the suite runs on."""

from __future__ import annotations

import base64
import contextlib
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg2
import pytest
from conftest import BACKEND, postgres_database

HOOKLINE = [sys.executable, "-m", "hookline.cli"]


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

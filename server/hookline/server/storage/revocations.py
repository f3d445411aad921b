"""How many API key revocations an embedded database has seen, readable by every
process that opens it without a query: 8 bytes in a file beside the database,
mapped into memory. The servers that remember authenticated keys forget them
when it moves, so a key revoked by another process (the CLI) stops working at
once. On PostgreSQL revocations travel as the "keys" notification instead."""

from __future__ import annotations

import fcntl
import mmap
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from peewee import SqliteDatabase

from . import models as m

SIZE = 8


class RevocationCounter:
    def __init__(self, path: Path):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            with _locked(fd):
                if os.fstat(fd).st_size < SIZE:
                    os.ftruncate(fd, SIZE)
            self._map = mmap.mmap(fd, SIZE)
        finally:
            os.close(fd)
        self.path = path

    def value(self) -> int:
        return int.from_bytes(self._map[:SIZE], "little")

    def bump(self) -> None:
        """Count one more revocation (after it committed)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            with _locked(fd):  # two processes revoking at once both count
                self._map[:SIZE] = (self.value() + 1).to_bytes(SIZE, "little")
        finally:
            os.close(fd)


@contextmanager
def _locked(fd: int) -> Iterator[None]:
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def counter() -> RevocationCounter | None:
    """The counter of the open embedded database; None on PostgreSQL or in memory."""
    database = m.db.obj
    if not isinstance(database, SqliteDatabase) or database.database in ("", ":memory:"):
        return None
    return _counter_at(str(database.database) + ".revocations")


@lru_cache(maxsize=16)
def _counter_at(path: str) -> RevocationCounter:
    return RevocationCounter(Path(path))

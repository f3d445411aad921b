"""Group commit: many threads' writes in few batches, each caller gets its own result."""

from __future__ import annotations

import threading
import time

import pytest

from hookline.server.storage.groupcommit import GroupCommit


def test_each_caller_gets_its_own_result_and_concurrent_writes_share_batches() -> None:
    batches: list[list[int]] = []

    def write(items: list[int]) -> list[int]:
        batches.append(list(items))
        time.sleep(0.01)  # a transaction takes a while: others queue up meanwhile
        return [i * 10 for i in items]

    commit: GroupCommit[int, int] = GroupCommit(write)
    results: dict[int, int] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, commit.submit(i))) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: i * 10 for i in range(40)}
    assert sorted(i for batch in batches for i in batch) == list(range(40))  # each written exactly once
    assert len(batches) < 40  # some were written together


def test_a_failed_batch_fails_its_callers_and_the_next_batch_still_runs() -> None:
    calls = 0

    def write(items: list[str]) -> list[str]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("database is locked")
        return [item.upper() for item in items]

    commit: GroupCommit[str, str] = GroupCommit(write)
    with pytest.raises(RuntimeError, match="locked"):
        commit.submit("a")
    assert commit.submit("b") == "B"


def test_a_batch_that_returns_too_few_results_fails_its_callers_instead_of_hanging() -> None:
    commit: GroupCommit[int, int] = GroupCommit(lambda items: [])
    with pytest.raises(ValueError):
        commit.submit(1)


def test_an_item_s_own_error_reaches_only_its_caller() -> None:
    def write(items: list[int]) -> list[int | Exception]:
        return [ValueError(f"{i} is odd") if i % 2 else i for i in items]

    commit: GroupCommit[int, int] = GroupCommit(write)
    assert commit.submit(2) == 2
    with pytest.raises(ValueError, match="3 is odd"):
        commit.submit(3)


def test_a_writer_writes_one_batch_and_hands_over() -> None:
    # Under a steady stream of submissions no caller keeps writing others'
    # batches after its own: each batch holds an item of the thread writing it.
    batches: list[tuple[int, list[int]]] = []
    mine: dict[int, set[int]] = {}

    def write(items: list[int]) -> list[int]:
        time.sleep(0.002)
        batches.append((threading.get_ident(), list(items)))
        return items

    commit: GroupCommit[int, int] = GroupCommit(write)

    def submit_many(base: int) -> None:
        mine[threading.get_ident()] = set(range(base, base + 50))
        for i in range(50):
            commit.submit(base + i)

    threads = [threading.Thread(target=submit_many, args=(k * 1000,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(i for _, items in batches for i in items) == sorted(i for s in mine.values() for i in s)
    assert all(mine[writer] & set(items) for writer, items in batches)


def test_none_is_a_result_like_any_other() -> None:
    # (e.g. "this job was not ended"): its caller must not mistake it for its turn to write.
    writing = 0
    most = 0
    lock = threading.Lock()

    def write(items: list[int]) -> list[None]:
        nonlocal writing, most
        with lock:
            writing += 1
            most = max(most, writing)
        time.sleep(0.001)
        with lock:
            writing -= 1
        return [None for _ in items]

    commit: GroupCommit[int, None] = GroupCommit(write)
    threads = [threading.Thread(target=lambda: [commit.submit(i) for i in range(30)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert most == 1  # one batch written at a time

"""The job worker processes: steps that compute run there, within a memory limit,
and are killed at the deadline or a cancel; a new worker takes a killed one's place."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hookline.server.execution import flowdef
from hookline.server.execution.workers import WorkerPool

MEMORY_LIMIT_MIB = 64


def doubling(times: int) -> str:
    """A transform that doubles a string `times` times (16 bytes -> 16 * 2**times)."""
    return "|".join(["join('', [@, @])"] * times)


def comparing(levels: int) -> str:
    """A transform that compares two values sharing their parts, 2**levels pairs
    of leaves deep: CPU only (and in C, so it never lets other threads run)."""
    shared = "|".join(["[@, @]"] * levels)
    return f"{{p: {shared}, q: {shared}}} | p == q"


@pytest.fixture(scope="module")
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(2, MEMORY_LIMIT_MIB, max_output_bytes=1 << 20, max_output_depth=32)
    workers.start()
    yield workers
    workers.stop()


@pytest.fixture
def cancel() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()


def run(pool: WorkerPool, raw: dict[str, Any], document: Any, cancel: threading.Event, within: float = 30) -> str:
    definition = flowdef.parse_definition(raw)
    return pool.run(
        definition, json.dumps(raw, sort_keys=True), document, cancel=cancel, deadline=time.monotonic() + within
    )


def worker_pids(pool: WorkerPool) -> set[int]:
    return {worker.process.pid for worker in pool._all}  # type: ignore[misc]


def test_the_output_comes_back_as_json_text(pool: WorkerPool, cancel: threading.Event) -> None:
    raw = {"input_schema": {"type": "object"}, "steps": [{"transform": "{n: n, twice: [n, n]}"}]}
    assert json.loads(run(pool, raw, {"n": 2.0}, cancel)) == {"n": 2, "twice": [2, 2]}


def test_workers_are_kept_for_the_next_jobs(pool: WorkerPool, cancel: threading.Event) -> None:
    before = worker_pids(pool)
    for i in range(20):
        assert run(pool, {"steps": [{"transform": "n"}]}, {"n": i}, cancel) == str(i)
    assert worker_pids(pool) == before


def test_failures_come_back_with_their_code(pool: WorkerPool, cancel: threading.Event) -> None:
    with pytest.raises(flowdef.JobFailure) as caught:
        run(pool, {"steps": [{"fail_if": "n > `1`", "message": "too big"}]}, {"n": 2}, cancel)
    assert (caught.value.code, caught.value.message) == ("JOB_EXECUTION_ERROR", "too big")
    with pytest.raises(flowdef.JobFailure) as caught:
        run(pool, {"input_schema": {"required": ["id"]}}, {}, cancel)
    assert caught.value.code == "JOB_VALIDATION_ERROR"


def test_the_document_stays_in_the_worker_across_a_sleep(pool: WorkerPool, cancel: threading.Event) -> None:
    raw = {"steps": [{"transform": "{a: a}"}, {"sleep_ms": 50}, {"transform": "[a, a]"}]}
    assert json.loads(run(pool, raw, {"a": "x"}, cancel)) == ["x", "x"]


def test_a_step_over_the_memory_limit_fails_naming_the_step(pool: WorkerPool, cancel: threading.Event) -> None:
    before = worker_pids(pool)
    raw = {"steps": [{"transform": "@"}, {"transform": doubling(30)}]}
    with pytest.raises(flowdef.JobFailure) as caught:
        run(pool, raw, "x" * 16, cancel)
    assert caught.value.code == "JOB_EXECUTION_ERROR"
    assert caught.value.message == f"step 1 used more than {MEMORY_LIMIT_MIB} MiB of memory"
    # That worker was replaced; a job within the limit still runs.
    assert len(worker_pids(pool)) == 2 and worker_pids(pool) != before
    assert run(pool, {"steps": [{"transform": f"{doubling(21)} | length(@)"}]}, "x" * 16, cancel) == str(16 << 21)


def test_an_output_whose_text_would_be_huge_is_refused_early(pool: WorkerPool, cancel: threading.Event) -> None:
    started = time.monotonic()
    with pytest.raises(flowdef.JobFailure) as caught:
        run(pool, {"steps": [{"transform": "|".join(["[@, @]"] * 40)}]}, {}, cancel)
    assert "the limit is 1048576 bytes" in caught.value.message
    assert time.monotonic() - started < 2  # 2**40 leaves are never written out


def test_a_step_computing_past_the_deadline_is_killed_at_it(pool: WorkerPool, cancel: threading.Event) -> None:
    before = worker_pids(pool)
    started = time.monotonic()
    with pytest.raises(flowdef.JobFailure) as caught:
        run(pool, {"timeout_seconds": 0.5, "steps": [{"transform": comparing(40)}]}, {}, cancel, within=0.5)
    assert caught.value.code == "JOB_TIMEOUT"
    assert caught.value.message == "timed out after 0.5 s (timeout_seconds)"
    assert 0.5 <= time.monotonic() - started < 0.5 + 0.3
    killed = before - worker_pids(pool)
    assert len(killed) == 1 and not _alive(killed)  # and another took its place
    assert run(pool, {"steps": [{"transform": "a"}]}, {"a": 1}, cancel) == "1"


def test_cancel_kills_a_computing_step_at_once(pool: WorkerPool, cancel: threading.Event) -> None:
    timer = threading.Timer(0.2, cancel.set)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(flowdef.Canceled):
            run(pool, {"steps": [{"transform": comparing(40)}]}, {}, cancel)
        assert time.monotonic() - started < 0.2 + 0.2
    finally:
        timer.cancel()


def test_cancel_interrupts_a_sleep_at_once(pool: WorkerPool, cancel: threading.Event) -> None:
    timer = threading.Timer(0.2, cancel.set)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(flowdef.Canceled):
            run(pool, {"steps": [{"transform": "@"}, {"sleep_ms": 60_000}, {"transform": "never"}]}, {}, cancel)
        assert time.monotonic() - started < 0.2 + 0.1
    finally:
        timer.cancel()


def test_the_deadline_cuts_a_sleep_short(pool: WorkerPool, cancel: threading.Event) -> None:
    raw = {"timeout_seconds": 0.2, "steps": [{"transform": "@"}, {"sleep_ms": 60_000}]}
    started = time.monotonic()
    with pytest.raises(flowdef.JobFailure) as caught:
        run(pool, raw, {}, cancel, within=0.2)
    assert caught.value.code == "JOB_TIMEOUT"
    assert 0.19 <= time.monotonic() - started < 0.5


def test_a_worker_that_died_while_idle_is_replaced(pool: WorkerPool, cancel: threading.Event) -> None:
    pids = worker_pids(pool)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    _wait_until(lambda: not _alive(pids), "the workers did not die")
    assert run(pool, {"steps": [{"transform": "a"}]}, {"a": 3}, cancel) == "3"


def test_a_worker_that_dies_while_running_a_job_fails_it(pool: WorkerPool, cancel: threading.Event) -> None:
    killer = threading.Timer(0.3, lambda: [os.kill(pid, signal.SIGKILL) for pid in worker_pids(pool)])
    killer.start()
    with pytest.raises(flowdef.JobFailure) as caught:
        run(pool, {"steps": [{"transform": comparing(40)}]}, {}, cancel, within=10)
    killer.join()
    assert caught.value.code == "JOB_EXECUTION_ERROR"
    assert "ended unexpectedly (killed by SIGKILL)" in caught.value.message


def test_stop_ends_every_worker() -> None:
    workers = WorkerPool(2, MEMORY_LIMIT_MIB, max_output_bytes=1 << 20, max_output_depth=32)
    workers.start()
    pids = worker_pids(workers)
    assert len(pids) == 2 and _alive(pids)
    workers.stop()
    assert not _alive(pids)
    with pytest.raises(flowdef.Canceled):  # a job that comes now goes back to the queue
        run(workers, {"steps": [{"transform": "a"}]}, {}, threading.Event())


def _wait_until(condition: Callable[[], bool], what: str, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _alive(pids: set[int]) -> bool:
    """Whether any of `pids` still runs (not a zombie)."""
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as stat:
                if stat.read().rsplit(")", 1)[1].split()[0] != "Z":
                    return True
        except OSError:
            pass
    return False

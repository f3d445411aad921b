"""Worker processes that run jobs' steps where they can be stopped.

A flow's steps compute as long, and take as much memory, as their definition
makes them: JMESPath has no bounds (`[@, @]` repeated doubles a value each
time), and a schema can make validation exponential. In a thread of the API
process such a step could not be interrupted (a C-level comparison does not
even let other threads run), so it outlived the job's timeout, stalled the
API, and could take all the memory of the machine. So every job that
validates its input or has a transform or fail_if step runs in one of a small
pool of worker processes:

* each has an address-space limit (RLIMIT_AS, --job-memory-limit above what an
  idle worker takes): a step that needs more gets a MemoryError, and the job
  ends ERROR/JOB_EXECUTION_ERROR naming the step;
* the runner thread waits for its answer until the job's deadline or a
  cancel, and then kills it (the job ends ERROR/JOB_TIMEOUT, or CANCELED); a
  new worker takes the place of a killed one;
* a sleep step is waited out by the runner thread while the worker holds the
  document, so a sleep costs no CPU and a cancel interrupts it at once;
* the output is checked (size first, then depth) and turned into JSON in the
  worker, so only text within the size limit comes back.

Workers are forked by multiprocessing's fork server, which has this module
imported: a new worker is ready in milliseconds, and nothing is forked from the
multi-threaded API process. A worker dies with the fork server, which ends when
the API process does."""

from __future__ import annotations

import ctypes
import json
import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from typing import Any

from ..states import JobCode
from . import flowdef

log = logging.getLogger("hookline.jobs")

# How often a runner thread waiting on a worker looks at the job's cancel flag.
CANCEL_CHECK_S = 0.05
STOP_TIMEOUT_S = 2.0
PR_SET_PDEATHSIG = 1

# What a worker answers: (SLEEP, ms) then waits for the runner to say go on;
# (OUTPUT, json_text); (FAILURE, code, message); (OUT_OF_MEMORY, message).
SLEEP, OUTPUT, FAILURE, OUT_OF_MEMORY = "sleep", "output", "failure", "out of memory"


class WorkerPool:
    """`size` worker processes, each running one job at a time (the runner has
    as many threads); see the module docstring."""

    def __init__(self, size: int, memory_limit_mib: int, *, max_output_bytes: int, max_output_depth: int):
        self._size = size
        self._limits = WorkerLimits(memory_limit_mib << 20, max_output_bytes, max_output_depth)
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([__name__])
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._stopped = False

    def start(self) -> None:
        """Start the workers now, so that the first jobs need not wait for them."""
        for _ in range(self._size):
            worker = self._spawn()
            with self._lock:
                self._idle.append(worker)

    def run(
        self,
        definition: flowdef.FlowDefinition,
        definition_json: str,
        document: Any,
        *,
        cancel: threading.Event,
        deadline: float,
    ) -> str:
        """Run a job in a worker; its output as JSON text. Raises Canceled or JobFailure
        as flowdef.run does; `deadline` is on time.monotonic's scale."""
        worker = self._take()
        try:
            answer = self._converse(worker, definition, (definition_json, document, deadline), cancel, deadline)
        except BaseException:
            self._retire(worker)
            raise
        kind, *detail = answer
        if kind == OUT_OF_MEMORY:
            self._retire(worker)  # give its memory back to the system
            raise flowdef.JobFailure(JobCode.JOB_EXECUTION_ERROR, detail[0])
        self._give_back(worker)
        if kind == FAILURE:
            raise flowdef.JobFailure(*detail)
        return detail[0]

    def _converse(
        self,
        worker: _Worker,
        definition: flowdef.FlowDefinition,
        request: tuple[str, Any, float],
        cancel: threading.Event,
        deadline: float,
    ) -> tuple[Any, ...]:
        """Send the job, wait out the sleeps it asks for, and return its last answer."""
        self._send(worker, request)
        while True:
            answer = self._answer(worker, definition, cancel, deadline)
            if answer[0] != SLEEP:
                return answer
            flowdef.wait_out(flowdef.Sleep(answer[1]), definition, cancel=cancel, deadline=deadline)
            self._send(worker, True)  # go on

    def _send(self, worker: _Worker, message: Any) -> None:
        try:
            worker.send(message)
        except OSError:
            raise flowdef.JobFailure(JobCode.JOB_EXECUTION_ERROR, self._died(worker)) from None

    def _answer(
        self, worker: _Worker, definition: flowdef.FlowDefinition, cancel: threading.Event, deadline: float
    ) -> tuple[Any, ...]:
        while True:
            if cancel.is_set():
                raise flowdef.Canceled()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise flowdef.JobFailure(JobCode.JOB_TIMEOUT, flowdef.timeout_message(definition.timeout_seconds))
            try:
                answer = worker.answer(min(remaining, CANCEL_CHECK_S))
            except (EOFError, OSError):
                raise flowdef.JobFailure(JobCode.JOB_EXECUTION_ERROR, self._died(worker)) from None
            if answer is not None:
                return answer

    def _died(self, worker: _Worker) -> str:
        worker.process.join(STOP_TIMEOUT_S)
        code = worker.process.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        return (
            f"the process running the job's steps ended unexpectedly ({how}); a step may have needed more "
            f"than {self._limits.memory_mib} MiB of memory"
        )

    def _spawn(self) -> _Worker:
        worker = _Worker(self._context, self._limits)
        with self._lock:
            self._all.add(worker)
        return worker

    def _take(self) -> _Worker:
        with self._lock:
            if self._stopped:
                raise flowdef.Canceled()  # shutting down: the job goes back to WAITING
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    return worker
                self._all.discard(worker)
                worker.kill()
        return self._spawn()

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._stopped:
                self._idle.append(worker)
                return
        self._retire(worker)

    def _retire(self, worker: _Worker) -> None:
        """Kill a worker (it may be computing) and start another in its place."""
        worker.kill()
        with self._lock:
            self._all.discard(worker)
            if self._stopped:
                return
        try:
            self._give_back(self._spawn())
        except Exception:  # the next job tries again
            log.exception("could not start a job worker process")

    def stop(self) -> None:
        """End every worker: idle ones read the end of their pipe and exit; any
        still busy are killed."""
        with self._lock:
            self._stopped = True
            workers, self._all, self._idle = list(self._all), set(), []
        for worker in workers:
            worker.connection.close()
        for worker in workers:
            worker.process.join(STOP_TIMEOUT_S)
            worker.kill()


class _Worker:
    """One worker process and the runner's end of its pipe."""

    def __init__(self, context: Any, limits: WorkerLimits):
        self.connection, theirs = context.Pipe()
        self.process = context.Process(target=_serve, args=(theirs, limits), name="hookline-job-worker", daemon=True)
        self.process.start()
        theirs.close()
        self._ended = False

    def send(self, message: Any) -> None:
        self.connection.send(message)

    def answer(self, timeout: float) -> tuple[Any, ...] | None:
        """The worker's next answer, or None if it has none within `timeout`.
        Raises EOFError if it died."""
        return self.connection.recv() if self.connection.poll(timeout) else None

    def kill(self) -> None:
        """End the process whatever it is doing, and wait for it; safe to repeat."""
        if self._ended:
            return
        self._ended = True
        self.connection.close()
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.process.close()


# --------------------------------------------------------------------------- in the worker


@dataclass(frozen=True)
class WorkerLimits:
    memory_bytes: int  # above what the worker takes when it starts
    max_output_bytes: int
    max_output_depth: int

    @property
    def memory_mib(self) -> int:
        return self.memory_bytes >> 20


def _serve(connection: Connection, limits: WorkerLimits) -> None:
    """A worker's life: run the jobs it is sent, one at a time, until its pipe closes."""
    _become_worker(limits.memory_bytes)
    while True:
        try:
            definition_json, document, deadline = connection.recv()
        except (EOFError, OSError):
            return  # the runner closed the pipe, or is gone
        answer = _run_job(connection, definition_json, document, deadline, limits)
        if answer is None:
            return
        try:
            connection.send(answer)
        except OSError:
            return
        if answer[0] == OUT_OF_MEMORY:
            return  # the runner retires this worker


def _become_worker(memory_bytes: int) -> None:
    # Ctrl-C reaches the whole process group; the runner decides when a worker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_fork_server()
    _limit_address_space(memory_bytes)


def _die_with_fork_server() -> None:
    """Be killed when the fork server ends, and let it end when the API process does.

    The fork server ends once every holder of its "alive" pipe is gone, and each
    process it forks inherits one: a worker still computing when the API process
    died would keep the fork server, and so itself, alive. Closing it leaves the
    API process the only holder."""
    server: Any = forkserver._forkserver  # type: ignore[attr-defined]  # private, as is its alive fd
    if server._forkserver_alive_fd is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the fork server ended before the line above
            os._exit(1)


def _limit_address_space(memory_bytes: int) -> None:
    # Counted from what the worker takes already, so that the limit is what a job may use.
    limit = _address_space() + memory_bytes
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _address_space() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[0]) * resource.getpagesize()


@lru_cache(maxsize=256)
def _definition(definition_json: str) -> flowdef.FlowDefinition:
    return flowdef.parse_definition(json.loads(definition_json))


def _run_job(
    connection: Connection, definition_json: str, document: Any, deadline: float, limits: WorkerLimits
) -> tuple[Any, ...] | None:
    """Run one job to its last answer, sending a SLEEP answer at each sleep step
    and going on when the runner says so; None if the runner went away."""
    try:
        definition = _definition(definition_json)
        evaluation = flowdef.evaluate(definition, document, deadline=deadline)
        try:
            step = next(evaluation)
            while True:
                connection.send((SLEEP, step.ms))
                connection.recv()
                step = next(evaluation)
        except StopIteration as finished:
            output = finished.value
        text = flowdef.output_json(
            output,
            source=flowdef.output_source(definition),
            max_bytes=limits.max_output_bytes,
            max_depth=limits.max_output_depth,
        )
        return (OUTPUT, text)
    except flowdef.JobFailure as failure:
        return (FAILURE, failure.code, failure.message)
    except flowdef.OutOfMemory as exhausted:
        return (OUT_OF_MEMORY, f"{exhausted.part} used more than {limits.memory_mib} MiB of memory")
    except MemoryError:
        return (OUT_OF_MEMORY, f"the job used more than {limits.memory_mib} MiB of memory")
    except (EOFError, OSError):
        return None
    except Exception as error:  # a bug in a step must still end the job
        log.exception("a job's steps failed unexpectedly")
        return (FAILURE, JobCode.JOB_EXECUTION_ERROR, f"internal error: {type(error).__name__}")

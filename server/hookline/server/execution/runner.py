"""The job runner: a bounded pool that claims WAITING jobs under a lease, runs
their flow's steps, and ends each job (with its event) in one transaction.

A job that computes (validates its input, or has a transform or fail_if step)
runs in a worker process (workers.py), killed at the job's deadline or cancel;
one that only sleeps runs in its runner thread. A heartbeat renews the leases
of running jobs and interrupts those that were canceled; a job whose runner
died is found by its expired lease (by any process's heartbeat) and ends
ERROR/ZOMBIE_PROCESS.

Everything it asks of storage goes through a storage.queues.JobQueue (the
database's by default), so a test can hand it one of its own."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

from ..errors import InvalidArgument
from ..metrics import Metrics
from ..notify import hub
from ..settings import Settings
from ..states import JobCode, JobState
from ..storage.database import DatabaseFault, FaultLog, clock_ms, seconds_since_outage
from ..storage.groupcommit import GroupCommit
from ..storage.jobs import USER_CANCELED
from ..storage.queues import DatabaseJobs, JobQueue
from ..storage.records import ClaimedJob, Job, JobEnd
from . import flowdef
from .workers import WorkerPool

log = logging.getLogger("hookline.jobs")


@lru_cache(maxsize=256)
def _parsed(definition_json: str) -> flowdef.FlowDefinition:
    return flowdef.parse_definition(json.loads(definition_json))


def _definition(definition_json: str) -> flowdef.FlowDefinition:
    """A claimed job's flow definition, parsed; JobFailure when it is no longer
    valid (stored before a check that now refuses it, e.g. a $ref outside its
    input_schema)."""
    try:
        return _parsed(definition_json)
    except InvalidArgument as error:
        raise flowdef.JobFailure(
            JobCode.JOB_VALIDATION_ERROR, f"the flow definition is not valid: {error.message}"
        ) from None


# How a run ended: (state, code, message, output JSON or None).
RunOutcome = tuple[JobState, JobCode, str, str | None]


class JobRunner:
    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], int] = clock_ms,
        metrics: Metrics | None = None,
        jobs: JobQueue | None = None,
    ):
        self._settings = settings
        self._jobs = jobs or DatabaseJobs()
        self._clock = clock
        self._metrics = metrics
        self._pool = ThreadPoolExecutor(settings.job_workers, thread_name_prefix="job")
        # One worker process per runner thread: a thread runs one job at a time.
        self._workers = WorkerPool(
            settings.job_workers,
            settings.job_memory_limit_mib,
            max_output_bytes=settings.limits.max_json_bytes,
            max_output_depth=settings.limits.max_json_depth,
        )
        self._running: dict[str, threading.Event] = {}  # claimed: RUNNING, leases renewed
        # Read ahead for the next free worker to claim, still WAITING (see claim_once);
        # then taken by a worker, until its claim is written.
        self._queue: deque[str] = deque()
        self._taking: set[str] = set()
        self._lock = threading.Lock()
        self._claiming = threading.Lock()  # one claim pass at a time: each counts what the last claimed
        self._stopping = threading.Event()
        self._abandoning = threading.Event()  # set when a stop's grace is over
        self._threads: list[threading.Thread] = []
        self._ends = GroupCommit(self._write_ends)
        self._quiet = FaultLog(log)

    @property
    def _lease_ms(self) -> int:
        return int(self._settings.job_lease_s * 1000)

    # --- one step each, for the loops below and for tests ------------------------

    def claim_once(self) -> int:
        """Claim jobs for the idle workers. On the embedded database, where this
        is the only runner, also queue up as many again, so that a worker that
        is done goes on with the next job without waiting for a claim pass.
        Queued jobs are read, not claimed: they stay WAITING (a cancel ends one
        at once, and a runner that dies leaves it to the next) until a worker
        claims one, in the same write that ends its last job, or here when it
        is idle; that claim starts the job's timeout. On a shared database they
        are left for other processes' idle workers."""
        with self._claiming:
            return self._claim()

    def _claim(self) -> int:
        workers = self._settings.job_workers
        ahead = 0 if self._settings.database else workers
        with self._lock:
            idle = workers - len(self._running) - len(self._taking)
            taken = [self._queue.popleft() for _ in range(min(max(idle, 0), len(self._queue)))]
            self._taking.update(taken)
        claimed, started = [], []
        try:
            claimed = self._jobs.claim(self._clock(), idle, self._lease_ms, queued=taken) if idle > 0 else []
        finally:
            with self._lock:
                self._taking.difference_update(taken)  # claimed, or WAITING still if the claim failed
                for item in claimed:
                    cancel = threading.Event()
                    self._running[item.job.id] = cancel
                    started.append((item, cancel))
        for item, cancel in started:
            self._pool.submit(self._execute, item, cancel)
        if len(claimed) < idle:
            return len(claimed)  # no other job is WAITING
        with self._lock:
            room = ahead - len(self._queue)
            queued = [*self._queue, *self._taking]
        later = self._jobs.waiting(room, exclude=queued) if room > 0 else []
        with self._lock:
            self._queue.extend(later)
        return len(claimed) + len(later)

    def heartbeat_once(self) -> None:
        """Renew our leases and interrupt the jobs that were canceled. (A job past
        its timeout needs nothing from here: its runner thread stops waiting for it
        at the deadline and kills the worker process if a step is still computing.)"""
        with self._lock:
            running = dict(self._running)
        if running:
            for job_id in self._jobs.renew(list(running), self._clock(), self._lease_ms):
                running[job_id].set()

    def reap_once(self) -> None:
        """End the jobs whose runner died (in any process): their lease expired.
        Not for one lease after the database was away: nobody could renew a lease
        meanwhile, and the live runners need that long to renew theirs."""
        if seconds_since_outage() < self._settings.job_lease_s:
            return
        for job in self._jobs.reap_expired(self._clock()):
            log.warning("job %s ended %s/%s: its runner stopped", job.id, job.state, job.code)

    # --- running one job ----------------------------------------------------------

    def _next_queued(self) -> str | None:
        """Take the next queued job to claim (none while stopping: it stays WAITING
        for the next runner)."""
        with self._lock:
            if self._stopping.is_set() or not self._queue:
                return None
            job_id = self._queue.popleft()
            self._taking.add(job_id)
            return job_id

    def _started(self, job_id: str, item: ClaimedJob | None) -> threading.Event:
        """Account for a taken job once its claim is written (`item`) or failed;
        the cancel event of the job, now running."""
        cancel = threading.Event()
        with self._lock:
            self._taking.discard(job_id)
            if item is not None:
                self._running[item.job.id] = cancel
                if self._stopping.is_set():
                    cancel.set()  # stop() has interrupted the others: it goes back to WAITING
        return cancel

    def _execute(self, item: ClaimedJob, cancel: threading.Event) -> None:
        """Run the job, then each queued job this worker claims as it ends the last."""
        current: ClaimedJob | None = item
        while current is not None:
            current, cancel = self._execute_one(current, cancel)

    def _execute_one(self, item: ClaimedJob, cancel: threading.Event) -> tuple[ClaimedJob | None, threading.Event]:
        job = item.job
        next_id = next_item = None
        try:
            outcome = self._outcome(item, cancel)
            if outcome is None:
                self._jobs.release(job.id)  # shutting down: another runner takes it
                return None, cancel
            next_id = self._next_queued()
            ended, next_item = self._finish(job.id, outcome, next_id)
            if ended:
                level = logging.DEBUG if ended.state == JobState.COMPLETED else logging.INFO
                log.log(level, "job %s ended %s/%s", job.id, ended.state, ended.code)
                if self._metrics:
                    self._metrics.job_ended(ended.state, ended.code)
        except Exception:
            log.exception("could not record the end of job %s; its lease will expire", job.id)
        finally:
            with self._lock:
                self._running.pop(job.id, None)
            if next_id is not None:
                cancel = self._started(next_id, next_item)
            if next_item is None:
                hub.publish("jobs")  # a worker is free
        return next_item, cancel

    def _outcome(self, item: ClaimedJob, cancel: threading.Event) -> RunOutcome | None:
        """How running the job ended; None when it was interrupted because the
        runner is stopping."""
        try:
            return (JobState.COMPLETED, JobCode.JOB_SUCCESS, "", self._run(item, cancel))
        except flowdef.JobFailure as failure:
            return (JobState.ERROR, failure.code, failure.message, None)
        except flowdef.Canceled:
            if self._stopping.is_set():
                return None
            return (JobState.CANCELED, JobCode.JOB_USER_CANCELED, USER_CANCELED, None)
        except Exception as error:  # a bug in a step must still end the job
            log.exception("job %s failed unexpectedly", item.job.id)
            return (JobState.ERROR, JobCode.JOB_EXECUTION_ERROR, f"internal error: {type(error).__name__}", None)

    def _run(self, item: ClaimedJob, cancel: threading.Event) -> str:
        """The job's output as JSON text; raises JobFailure or Canceled."""
        definition_json = json.dumps(item.definition, sort_keys=True)
        definition = _definition(definition_json)
        deadline = time.monotonic() + definition.timeout_seconds
        if flowdef.needs_worker(definition):
            return self._workers.run(definition, definition_json, item.job.input, cancel=cancel, deadline=deadline)
        output = flowdef.run(definition, item.job.input, cancel=cancel, deadline=deadline)
        limits = self._settings.limits
        return flowdef.output_json(
            output,
            source=flowdef.output_source(definition),
            max_bytes=limits.max_json_bytes,
            max_depth=limits.max_json_depth,
        )

    def _finish(self, job_id: str, outcome: RunOutcome, next_id: str | None) -> tuple[Job | None, ClaimedJob | None]:
        """End the job with its run's outcome, and claim `next_id` (a queued job)
        in the same write: the ended job (None if it had ended already) and the
        claimed one (None if it is no longer WAITING).

        However long the database is away (a DatabaseFault): the job stays ours
        meanwhile (the heartbeat renews its lease whenever the database
        answers), so the run's real result is what is recorded, not a zombie's.
        Gives up only when a stop's grace period is over."""
        delay = 0.05
        while True:
            try:
                return self._ends.submit(((job_id, *outcome), next_id))
            except DatabaseFault as fault:
                if self._abandoning.is_set():
                    raise
                self._quiet.fault(f"recording the end of job {job_id}", fault)
            if self._abandoning.wait(delay):
                raise RuntimeError("stopped before the database came back")
            delay = min(delay * 2, 1.0)

    def _write_ends(self, items: list[tuple[JobEnd, str | None]]) -> list[tuple[Job | None, ClaimedJob | None]]:
        """One group commit of job ends, each with the queued job its worker claims next."""
        next_ids = [next_id for _, next_id in items if next_id is not None]
        ended, claimed = self._jobs.finish_and_claim(
            [outcome for outcome, _ in items], next_ids, self._clock(), self._lease_ms
        )
        by_id = dict(zip(next_ids, claimed, strict=True))
        return [(job, by_id.get(next_id) if next_id else None) for job, (_, next_id) in zip(ended, items, strict=True)]

    # --- the loops ----------------------------------------------------------------

    def start(self) -> None:
        self._workers.start()
        for target, name in ((self._claim_loop, "job-claimer"), (self._heartbeat_loop, "job-heartbeat")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            version = hub.version("jobs")
            try:
                self.claim_once()
            except Exception as error:
                self._quiet.failure("claiming jobs", error)
            hub.wait("jobs", version, self._settings.poll_interval_s)

    def _heartbeat_loop(self) -> None:
        # Often enough that a canceled job stops within a second; reaping, which
        # only matters after a crash, runs at a slower pace.
        interval = min(0.25, self._settings.job_lease_s / 4)
        reap_every = max(5.0, self._settings.job_lease_s)
        last_reap = 0.0
        while not self._stopping.wait(interval):
            try:
                self.heartbeat_once()
                if time.monotonic() - last_reap >= reap_every:
                    self.reap_once()
                    last_reap = time.monotonic()
            except Exception as error:
                self._quiet.failure("the job heartbeat", error)

    def stop(self, grace_s: float | None = None) -> None:
        """Let running jobs finish for `grace_s` (by default the shutdown grace),
        then interrupt the rest and put them back to WAITING for another runner."""
        deadline = time.monotonic() + (self._settings.shutdown_grace_s if grace_s is None else grace_s)
        self._stopping.set()
        hub.publish("jobs")
        for thread in self._threads:
            thread.join()
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running:
                    break
            time.sleep(0.02)
        with self._lock:
            for cancel in self._running.values():
                cancel.set()  # a job in a worker process: the process is killed
        self._abandoning.set()
        self._pool.shutdown(wait=True)
        self._workers.stop()

"""Job queries: start, cancel, claim under a lease, finish with its event."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .. import events, ids, notify
from ..errors import AlreadyExists, FailedPrecondition, HooklineError, NotFound, shown
from ..states import JOB_ACTIVE, JOB_ENDED, JobCode, JobState
from . import models as m
from . import queries, statements
from .database import is_postgres, now_ms
from .deliveries import Outbox, subscribers
from .lookup import flow_row
from .paging import filtered, paginate
from .records import ClaimedJob, Job, JobEnd
from .webhooks import flow_webhooks

USER_CANCELED = "canceled by a user"
FLOW_DELETED = "canceled by the system: the flow was deleted"


def _locking(query: Any, *, skip_locked: bool = False) -> Any:
    """The query's jobs, locked until the transaction ends, in id order (PostgreSQL).

    A job may be ended by its runner and by another process's reaper at once:
    the rows are locked before their states are read, so only one ends it. Every
    transaction that locks several jobs does so in one order, and before it
    takes the change log's lock, so two never wait for each other. (On SQLite a
    write transaction already excludes every other writer.)"""
    if not is_postgres():
        return query
    return query.order_by(m.Job.id).for_update("FOR UPDATE SKIP LOCKED" if skip_locked else "FOR UPDATE")


def _row(space_id: str, job_id: str) -> m.Job:
    row = statements.first_where(m.Job, id=job_id, space_id=space_id)
    if row is None:
        raise NotFound(f"job {shown(job_id)} not found")
    return row


def get_job(space_id: str, job_id: str) -> Job:
    return Job.from_row(_row(space_id, job_id))


def jobs_by_id(job_ids: Iterable[str]) -> dict[str, Job]:
    """The jobs of these ids that exist, of any space, in one query (what the
    process's one job feed reads for every WatchJob stream at once)."""
    return {row.id: Job.from_row(row) for row in statements.select_in(m.Job, "id", job_ids)}


def list_jobs(
    space_id: str,
    page_size: int,
    page_token: str,
    *,
    flow_ref: str = "",
    state: JobState | None = None,
    correlation_id: str = "",
    fits: Callable[[Job], bool] | None = None,
    newest_first: bool = False,
) -> tuple[list[Job], str]:
    flow_id = flow_row(space_id, flow_ref).id if flow_ref else ""
    q = filtered(
        m.Job.select().where(m.Job.space_id == space_id), m.Job,
        flow_id=flow_id, state=state, correlation_id=correlation_id,
    )  # fmt: skip
    filters = [flow_id, state or "", correlation_id]
    return paginate(q, m.Job.id, page_size, page_token, filters, Job.from_row, fits, newest_first)


@dataclass(frozen=True)
class StartRequest:
    space_id: str
    flow_ref: str
    version: int  # 0 = the latest
    input_json: str
    correlation_id: str
    idempotency_key: str
    idempotency_ttl_ms: int


def start_jobs(requests: Sequence[StartRequest]) -> list[Job | HooklineError]:
    """Create a WAITING job for each request's flow (by id or alias), or return
    the job an earlier request with the same idempotency key made (ALREADY_EXISTS
    when its flow, version or input differ), all in one transaction; a request
    that fails gets its error in its place.

    The flows are looked up in the same transaction, so a job is never created
    for a flow that is being deleted."""
    results: list[m.Job | HooklineError] = []
    with m.db.atomic():
        now = now_ms()
        keyed = {(r.space_id, r.idempotency_key) for r in requests if r.idempotency_key}
        if keyed and is_postgres():
            # Concurrent retries with one key take turns, so only the first creates a job.
            # In one order everywhere, so that two batches never wait for each other.
            for (lock,) in m.db.execute_sql(
                "SELECT DISTINCT hashtext(k) FROM unnest(%s) AS k ORDER BY 1", ([f"{s}/{k}" for s, k in keyed],)
            ):
                m.db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (lock,))
        flows: dict[tuple[str, str], m.Flow | HooklineError] = {}
        made: dict[tuple[str, str], m.Job] = {}  # by idempotency key, in this batch
        for r in requests:
            try:
                results.append(_start(r, now, flows, made))
            except HooklineError as error:
                results.append(error)
        rows = [row.__data__ for row in made.values()] + [
            row.__data__ for row in results if isinstance(row, m.Job) and not row.idempotency_key
        ]
        if rows:
            statements.insert_rows(m.Job, rows)
            notify.after_commit("jobs")
    return [Job.from_row(r) if isinstance(r, m.Job) else r for r in results]


def _start(
    r: StartRequest, now: int, flows: dict[tuple[str, str], m.Flow | HooklineError], made: dict[tuple[str, str], m.Job]
) -> m.Job:
    """One request's job: a new row (not yet written), or the earlier one of its key."""
    if (r.space_id, r.flow_ref) not in flows:
        try:
            flows[r.space_id, r.flow_ref] = flow_row(r.space_id, r.flow_ref)
        except HooklineError as error:
            flows[r.space_id, r.flow_ref] = error
    flow = flows[r.space_id, r.flow_ref]
    if isinstance(flow, HooklineError):
        raise flow
    run_version = r.version or flow.version
    if run_version > flow.version:
        raise NotFound(f"flow {shown(flow.alias)} has no version {run_version} (latest is {flow.version})")
    fingerprint = hashlib.sha256(f"{flow.id}\0{r.version}\0{r.input_json}".encode()).hexdigest()
    if r.idempotency_key:
        earlier = made.get((r.space_id, r.idempotency_key)) or (
            m.Job.select()
            .where(
                (m.Job.space_id == r.space_id)
                & (m.Job.idempotency_key == r.idempotency_key)
                & (m.Job.create_time > now - r.idempotency_ttl_ms)
            )
            .order_by(m.Job.create_time.desc())
            .first()
        )
        if earlier is not None:
            if earlier.request_fingerprint != fingerprint:
                raise AlreadyExists(
                    f"idempotency key {shown(r.idempotency_key)} was already used within the last 24 h "
                    "with a different flow, version or input"
                )
            return earlier
    row = m.Job(
        id=ids.new_id("job"),
        space_id=r.space_id,
        flow_id=flow.id,
        flow_alias=flow.alias,
        flow_version=run_version,
        state=JobState.WAITING,
        code=JobCode.JOB_WAITING,
        message="",
        input=r.input_json,
        output=None,
        correlation_id=r.correlation_id,
        idempotency_key=r.idempotency_key or None,
        request_fingerprint=fingerprint,
        create_time=now,
        claim_time=None,
        end_time=None,
        lease_expire_time=None,
        cancel_code=None,
    )
    if r.idempotency_key:
        made[r.space_id, r.idempotency_key] = row
    return row


class _Ends:
    """The job ends of one transaction, written together by `write`: one
    statement per table however many jobs end (see `_ending`)."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []  # queries.END_JOB's values
        self.outbox = Outbox()
        self.hooks: dict[str, list[m.Webhook]] = {}  # each flow's webhooks, read once

    def write(self) -> None:
        queries.END_JOB.execute_many(self.jobs)
        self.outbox.flush()
        self.jobs = []


@contextmanager
def _ending() -> Iterator[_Ends]:
    """Ends to write once the block is done (inside the caller's transaction)."""
    ends = _Ends()
    yield ends
    ends.write()


def _end(
    row: m.Job,
    state: JobState,
    code: JobCode,
    message: str,
    output_json: str | None = None,
    *,
    ends: _Ends | None = None,
) -> Job:
    """End a job and record its event, in the caller's transaction: now, or
    with the other `ends` when they are written."""
    if ends is None:
        with _ending() as ends:
            return _end(row, state, code, message, output_json, ends=ends)
    notify.after_commit("jobs")
    row.state, row.code, row.message, row.output = state, code, message, output_json
    row.end_time, row.lease_expire_time = now_ms(), None
    ends.jobs.append(
        dict(id=row.id, state=state, code=code, message=message, output=output_json, end_time=row.end_time)
    )
    job = Job.from_row(row)
    event_type = events.JOB_EVENT[state]
    if job.flow_id not in ends.hooks:
        ends.hooks[job.flow_id] = flow_webhooks(job.flow_id)
    ends.outbox.add(
        job.space_id,
        event_type,
        lambda event_id, time_ms: events.job_event_body(job, event_id, time_ms),
        subscribers(ends.hooks[job.flow_id], event_type),
        job_id=job.id,
        flow_id=job.flow_id,
    )
    return job


def _cancel_code(row: m.Job) -> JobCode:
    """The code a CANCELING job ends with: the one its cancel chose."""
    return JobCode(row.cancel_code or JobCode.JOB_USER_CANCELED)


def cancel_job(space_id: str, job_id: str) -> Job:
    """WAITING ends CANCELED at once; RUNNING becomes CANCELING for its runner to stop."""
    with m.db.atomic():
        row = _locking(m.Job.select().where((m.Job.id == job_id) & (m.Job.space_id == space_id))).first()
        if row is None:
            raise NotFound(f"job {shown(job_id)} not found")
        if row.state == JobState.WAITING:
            return _end(row, JobState.CANCELED, JobCode.JOB_USER_CANCELED, USER_CANCELED)
        if row.state == JobState.RUNNING:
            canceling = m.Job.update(state=JobState.CANCELING, cancel_code=JobCode.JOB_USER_CANCELED)
            canceling.where(m.Job.id == row.id).execute()
            notify.after_commit("jobs")
            return get_job(space_id, job_id)
    raise FailedPrecondition(f"job {job_id} is {row.state}; only WAITING or RUNNING jobs can be canceled")


def cancel_waiting(space_id: str, flow_ref: str) -> int:
    """Cancel every WAITING job of a flow (or of the space when `flow_ref` is
    empty): one event per job."""
    with m.db.atomic():
        q = m.Job.select().where((m.Job.space_id == space_id) & (m.Job.state == JobState.WAITING))
        if flow_ref:
            q = q.where(m.Job.flow_id == flow_row(space_id, flow_ref).id)
        rows = list(_locking(q))
        with _ending() as ends:
            for row in rows:
                _end(row, JobState.CANCELED, JobCode.JOB_USER_CANCELED, USER_CANCELED, ends=ends)
    return len(rows)


def cancel_flow_jobs(flow_id: str) -> None:
    """The flow is being deleted: its WAITING and RUNNING jobs end CANCELED
    (JOB_SYSTEM_CANCELED) now, with their events; runners notice and stop."""
    rows = m.Job.select().where((m.Job.flow_id == flow_id) & (m.Job.state.in_((JobState.WAITING, *JOB_ACTIVE))))
    with _ending() as ends:
        for row in list(_locking(rows)):
            _end(row, JobState.CANCELED, JobCode.JOB_SYSTEM_CANCELED, FLOW_DELETED, ends=ends)


def claim(now: int, limit: int, lease_ms: int, *, queued: Sequence[str] = ()) -> list[ClaimedJob]:
    """Claim up to `limit` WAITING jobs under a lease: first those of `queued`
    (ids read by `waiting`) that are still WAITING, then the oldest others."""
    if limit <= 0:
        return []
    listed = list(dict.fromkeys(queued))[:limit]
    with m.db.atomic():
        claimed = [item for item in _claim_listed(listed, now, lease_ms) if item is not None]
        if len(claimed) < limit:
            claimed += _claimed(
                queries.CLAIM_OLDEST_JOBS.dicts(now=now, lease=now + lease_ms, limit=limit - len(claimed))
            )
    return claimed


def waiting(limit: int, exclude: Collection[str] = ()) -> list[str]:
    """The ids of up to `limit` WAITING jobs, oldest first, other than `exclude`.
    Reading claims nothing: a runner queues these for its workers to claim
    (`claim` with `queued`, or `finish_and_claim`) as they become free, and they
    stay WAITING meanwhile, for a cancel to end at once or another runner to take."""
    if limit <= 0:
        return []
    return [job_id for (job_id,) in queries.WAITING_JOBS.rows(excluded=statements.padded(list(exclude)), limit=limit)]


def _claim_listed(job_ids: Sequence[str], now: int, lease_ms: int) -> list[ClaimedJob | None]:
    """Claim these jobs, in the caller's transaction, if they are still WAITING:
    one ClaimedJob per id, in order, or None for a job canceled, ended or claimed
    meanwhile."""
    if not job_ids:
        return []
    unique_ids = list(dict.fromkeys(job_ids))
    rows = queries.CLAIM_LISTED_JOBS.dicts(now=now, lease=now + lease_ms, ids=unique_ids)
    claimed = {item.job.id: item for item in _claimed(rows)}
    return [claimed.pop(job_id, None) for job_id in job_ids]


def _claimed(claimed_rows: list[dict[str, Any]]) -> list[ClaimedJob]:
    """The jobs a claiming UPDATE claimed (in the caller's transaction), with
    the definitions they run. A job whose flow version is gone (the flow was
    deleted meanwhile) cannot run: it ends CANCELED instead."""
    rows = [m.Job(**row) for row in claimed_rows]
    if rows:
        notify.after_commit("jobs")
    claimed = []
    definitions: dict[tuple[str, int], Any] = {}  # read once per flow version
    with _ending() as ends:
        for row in rows:
            key = (row.flow_id, row.flow_version)
            if key not in definitions:
                version = statements.first_where(m.FlowVersion, flow_id=row.flow_id, version=row.flow_version)
                definitions[key] = None if version is None else json.loads(version.definition)
            if definitions[key] is None:  # its flow was deleted meanwhile: the job cannot run
                _end(row, JobState.CANCELED, JobCode.JOB_SYSTEM_CANCELED, FLOW_DELETED, ends=ends)
                continue
            claimed.append(ClaimedJob(job=Job.from_row(row), definition=definitions[key]))
    return claimed


def renew(job_ids: Sequence[str], now: int, lease_ms: int) -> set[str]:
    """Extend the leases of running jobs; returns those whose runner must stop
    (CANCELING, or already ended by someone else)."""
    if not job_ids:
        return set()
    with m.db.atomic():
        active = [
            row.id
            for row in _locking(m.Job.select(m.Job.id).where(m.Job.id.in_(list(job_ids)) & m.Job.state.in_(JOB_ACTIVE)))
        ]
        if active:
            m.Job.update(lease_expire_time=now + lease_ms).where(m.Job.id.in_(active)).execute()
        running = {
            job_id
            for (job_id,) in m.Job.select(m.Job.id)
            .where(m.Job.id.in_(list(job_ids)) & (m.Job.state == JobState.RUNNING))
            .tuples()
        }
    return set(job_ids) - running


def finish(job_id: str, state: JobState, code: JobCode, message: str, output_json: str | None) -> Job | None:
    """End a claimed job with its run's outcome. Once CANCELING is set, cancel
    wins. Returns None when the job had already ended (nothing to do)."""
    return finish_many([(job_id, state, code, message, output_json)])[0]


def finish_many(outcomes: Sequence[JobEnd]) -> list[Job | None]:
    """finish() for each (job id, state, code, message, output JSON), in one transaction."""
    with m.db.atomic():
        return _finish_rows(outcomes)


def _finish_rows(outcomes: Sequence[JobEnd]) -> list[Job | None]:
    ended: list[Job | None] = []
    with _ending() as ends:
        rows = {row.id: row for row in _locking(m.Job.select().where(m.Job.id.in_([o[0] for o in outcomes])))}
        for job_id, state, code, message, output_json in outcomes:
            row = rows.get(job_id)
            if row is None or row.state in JOB_ENDED:
                ended.append(None)
            elif row.state == JobState.CANCELING:
                ended.append(_end(row, JobState.CANCELED, _cancel_code(row), USER_CANCELED, ends=ends))
            else:
                ended.append(_end(row, state, code, message, output_json, ends=ends))
    return ended


def finish_and_claim(
    outcomes: Sequence[JobEnd], next_ids: Sequence[str], now: int, lease_ms: int
) -> tuple[list[Job | None], list[ClaimedJob | None]]:
    """finish_many(outcomes), and claim the jobs of `next_ids` (read by `waiting`)
    that are still WAITING, in one transaction: a worker ends its job and claims
    its next one in one write. One ClaimedJob or None per next id, in order.
    For the embedded database, where a runner queues jobs: on PostgreSQL,
    claiming rows after an end has taken the change log's lock could deadlock."""
    with m.db.atomic():
        return _finish_rows(outcomes), _claim_listed(next_ids, now, lease_ms)


def reap_expired(now: int, *, all_leases: bool = False) -> list[Job]:
    """Jobs whose runner died (lease expired) end: RUNNING as ERROR/ZOMBIE_PROCESS,
    CANCELING as CANCELED. Their events are sent like any other. `all_leases`
    reaps every active job (when no other process can be running one)."""
    ended = []
    with m.db.atomic(), _ending() as ends:
        query = m.Job.select().where(m.Job.state.in_(JOB_ACTIVE))
        if not all_leases:
            query = query.where(m.Job.lease_expire_time < now)
        rows = list(_locking(query, skip_locked=True))  # a locked one is being ended or renewed
        for row in rows:
            if row.state == JobState.CANCELING:
                ended.append(_end(row, JobState.CANCELED, _cancel_code(row), USER_CANCELED, ends=ends))
            else:
                message = "the job's runner stopped without finishing it"
                ended.append(_end(row, JobState.ERROR, JobCode.ZOMBIE_PROCESS, message, ends=ends))
    return ended


def release(job_id: str) -> None:
    """Give a RUNNING job back (graceful shutdown): WAITING again, unclaimed."""
    with m.db.atomic():
        m.Job.update(state=JobState.WAITING, code=JobCode.JOB_WAITING, claim_time=None, lease_expire_time=None).where(
            (m.Job.id == job_id) & (m.Job.state == JobState.RUNNING)
        ).execute()
        notify.after_commit("jobs")

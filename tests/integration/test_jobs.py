"""JobService with a running job runner: start, get, list, cancel, watch."""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from hookline.client import (
    CancelJobRequest,
    DeleteFlowRequest,
    GetJobRequest,
    Job,
    JobState,
    JobStatusCode,
    ListEventsRequest,
    ListJobsRequest,
    WatchJobRequest,
)

from .helpers import (
    TERMINAL_JOB_STATES,
    body_json,
    concurrently,
    job_ids,
    make_flow,
    make_webhook,
    nested,
    pages,
    plain,
    rpc_error,
    start_job,
    unique,
    wait_job,
)

SLEEP = [{"sleep_ms": 5000}]


@pytest.fixture(scope="module")
def double(client):
    return make_flow(client, [{"transform": "{pair: [tag, n], tag: tag}"}], name="Pair")


def test_start_job_returns_a_waiting_job_that_completes_with_its_output(client, double):
    before = time.time()
    job = start_job(client, double.alias, {"n": 21, "tag": "x"}, correlation_id="order-1")
    assert job.id.startswith("job_")
    assert job.flow_id == double.id
    assert job.flow_alias == double.alias
    assert job.flow_version == 1
    assert job.state in (JobState.JOB_STATE_WAITING, JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_COMPLETED)
    assert plain(job.input) == {"n": 21, "tag": "x"}
    assert job.correlation_id == "order-1"
    assert before - 5 <= job.create_time.ToMilliseconds() / 1000 <= time.time() + 5

    done = wait_job(client, job.id)
    assert done.state == JobState.JOB_STATE_COMPLETED
    assert done.code == JobStatusCode.JOB_SUCCESS
    assert plain(done.output) == {"pair": ["x", 21], "tag": "x"}
    assert done.HasField("claim_time") and done.HasField("end_time")
    assert job.create_time.ToMilliseconds() <= done.claim_time.ToMilliseconds() <= done.end_time.ToMilliseconds()
    assert done.correlation_id == "order-1"


def test_start_job_by_flow_id(client, double):
    job = start_job(client, double.id, {"n": 1, "tag": "id"})
    assert job.flow_alias == double.alias
    assert plain(wait_job(client, job.id).output) == {"pair": ["id", 1], "tag": "id"}


def test_job_without_input_gets_null(client):
    flow = make_flow(client, [])
    job = start_job(client, flow.alias)
    done = wait_job(client, job.id)
    assert done.state == JobState.JOB_STATE_COMPLETED
    assert done.output.WhichOneof("kind") == "null_value"


def test_fail_if_ends_the_job_in_error_with_its_message(client):
    flow = make_flow(client, [{"fail_if": "amount > `10`", "message": "amount over limit"}])
    done = wait_job(client, start_job(client, flow.id, {"amount": 11}).id)
    assert done.state == JobState.JOB_STATE_ERROR
    assert done.code == JobStatusCode.JOB_EXECUTION_ERROR
    assert done.message == "amount over limit"
    assert not done.HasField("output")


def test_input_schema_mismatch_is_a_validation_error(client):
    flow = make_flow(client, definition={"input_schema": {"type": "object", "required": ["id"]}, "steps": []})
    done = wait_job(client, start_job(client, flow.id, {"other": 1}).id)
    assert done.state == JobState.JOB_STATE_ERROR
    assert done.code == JobStatusCode.JOB_VALIDATION_ERROR
    assert "id" in done.message


def test_timeout_ends_the_job_in_error(client):
    flow = make_flow(client, definition={"timeout_seconds": 0.3, "steps": SLEEP})
    done = wait_job(client, start_job(client, flow.id).id)
    assert done.state == JobState.JOB_STATE_ERROR
    assert done.code == JobStatusCode.JOB_TIMEOUT


def test_an_output_over_1_mib_ends_the_job_in_error(client):
    flow = make_flow(client, [{"transform": "[s, s]"}])
    done = wait_job(client, start_job(client, flow.id, {"s": "x" * 600_000}).id)
    assert done.state == JobState.JOB_STATE_ERROR
    assert done.code == JobStatusCode.JOB_EXECUTION_ERROR
    assert "1048576" in done.message


def test_an_output_nested_deeper_than_32_ends_the_job_in_error(client):
    flow = make_flow(client, [{"transform": "{a: {b: @}}"}])
    ok = wait_job(client, start_job(client, flow.id, nested(30)).id)
    assert ok.state == JobState.JOB_STATE_COMPLETED
    done = wait_job(client, start_job(client, flow.id, nested(31)).id)
    assert done.state == JobState.JOB_STATE_ERROR
    assert done.code == JobStatusCode.JOB_EXECUTION_ERROR
    assert "32" in done.message


def test_get_job_by_id(client, double):
    job = start_job(client, double.id, {"n": 3, "tag": "get"})
    done = wait_job(client, job.id)
    again = client.jobs.GetJob(GetJobRequest(id=job.id))
    assert again == done
    rpc_error(grpc.StatusCode.NOT_FOUND, client.jobs.GetJob, GetJobRequest(id="job_00000000000000000000000000"))


def test_idempotency_key_returns_the_same_job(client, double):
    key = unique("idem")
    first = start_job(client, double.alias, {"n": 5, "tag": "i"}, idempotency_key=key)
    second = start_job(client, double.alias, {"n": 5, "tag": "i"}, idempotency_key=key)
    assert second.id == first.id
    assert second.idempotency_key == key
    wait_job(client, first.id)
    # Later, the same call returns the job as it is now.
    third = start_job(client, double.id, {"n": 5, "tag": "i"}, idempotency_key=key)
    assert third.id == first.id
    assert third.state == JobState.JOB_STATE_COMPLETED
    assert job_ids(client, flow_id=double.id).count(first.id) == 1


def test_idempotency_key_with_other_input_is_already_exists(client, double):
    key = unique("idem")
    correlation = unique("corr")
    first = start_job(client, double.alias, {"n": 5, "tag": "a"}, idempotency_key=key, correlation_id=correlation)
    error = rpc_error(
        grpc.StatusCode.ALREADY_EXISTS,
        start_job,
        client,
        double.alias,
        {"n": 6, "tag": "a"},
        idempotency_key=key,
        correlation_id=correlation,
    )
    assert key in error.details()
    other = make_flow(client, [])
    rpc_error(
        grpc.StatusCode.ALREADY_EXISTS,
        start_job,
        client,
        other.alias,
        {"n": 5, "tag": "a"},
        idempotency_key=key,
        correlation_id=correlation,
    )
    assert job_ids(client, correlation_id=correlation) == [first.id]


def test_idempotency_key_under_concurrent_retries_makes_one_job(client, double):
    key = unique("idem")
    correlation = unique("corr")
    jobs, errors = concurrently(
        12, lambda: start_job(client, double.id, {"n": 1, "tag": "c"}, idempotency_key=key, correlation_id=correlation)
    )
    assert [e.code() for e in errors] == []
    assert len({j.id for j in jobs}) == 1
    assert job_ids(client, correlation_id=correlation) == [jobs[0].id]


def test_concurrent_starts_written_together_each_get_their_own_outcome(client, double):
    # Calls that arrive together are written in one transaction; a bad one fails alone.
    key = unique("idem")
    correlation = unique("corr")
    calls = iter(range(1000))
    lock = threading.Lock()

    def call() -> Job:
        with lock:
            i = next(calls)
        if i % 4 == 0:
            return start_job(client, "no-such-flow", {}, correlation_id=correlation)
        if i % 4 == 1:
            return start_job(client, double.id, {"n": i, "tag": "t"}, idempotency_key=key, correlation_id=correlation)
        return start_job(client, double.id, {"n": i, "tag": "t"}, correlation_id=correlation)

    jobs, errors = concurrently(24, call)
    codes = sorted(e.code().name for e in errors)
    # 6 missing flows, and of the 6 sharing a key with different inputs one wins, 5 conflict.
    assert codes == ["ALREADY_EXISTS"] * 5 + ["NOT_FOUND"] * 6
    assert len(jobs) == 13 and len({j.id for j in jobs}) == 13
    assert sorted(job_ids(client, correlation_id=correlation)) == sorted(j.id for j in jobs)


def test_cancel_a_running_job(client):
    flow = make_flow(client, SLEEP)
    job = start_job(client, flow.id)
    wait_job(client, job.id, JobState.JOB_STATE_RUNNING)

    canceling = client.jobs.CancelJob(CancelJobRequest(id=job.id))
    assert canceling.state in (JobState.JOB_STATE_CANCELING, JobState.JOB_STATE_CANCELED)
    started = time.monotonic()
    done = wait_job(client, job.id, timeout=3)
    assert time.monotonic() - started < 2, "a canceled job's runner must stop within a second"
    assert done.state == JobState.JOB_STATE_CANCELED
    assert done.code == JobStatusCode.JOB_USER_CANCELED
    assert done.HasField("end_time")


def test_cancel_a_finished_job_is_failed_precondition_and_changes_nothing(client, double):
    done = wait_job(client, start_job(client, double.id, {"n": 1, "tag": "f"}).id)
    error = rpc_error(grpc.StatusCode.FAILED_PRECONDITION, client.jobs.CancelJob, CancelJobRequest(id=done.id))
    assert "COMPLETED" in error.details()
    assert client.jobs.GetJob(GetJobRequest(id=done.id)) == done


def test_cancel_a_canceled_job_is_failed_precondition(client):
    flow = make_flow(client, SLEEP)
    job = start_job(client, flow.id)
    wait_job(client, job.id, JobState.JOB_STATE_RUNNING)
    client.jobs.CancelJob(CancelJobRequest(id=job.id))
    rpc_error(grpc.StatusCode.FAILED_PRECONDITION, client.jobs.CancelJob, CancelJobRequest(id=job.id))
    assert wait_job(client, job.id).code == JobStatusCode.JOB_USER_CANCELED


def test_cancel_unknown_job_is_not_found(client):
    rpc_error(grpc.StatusCode.NOT_FOUND, client.jobs.CancelJob, CancelJobRequest(id="job_00000000000000000000000000"))


def test_watch_job_streams_its_states_until_it_ends(client):
    flow = make_flow(client, [{"sleep_ms": 400}, {"transform": "{ok: `true`}"}])
    job = start_job(client, flow.id, {})
    seen = list(client.jobs.WatchJob(WatchJobRequest(id=job.id), timeout=10))
    states = [j.state for j in seen]
    assert states[-1] == JobState.JOB_STATE_COMPLETED
    assert JobState.JOB_STATE_RUNNING in states
    order = [JobState.JOB_STATE_WAITING, JobState.JOB_STATE_RUNNING, JobState.JOB_STATE_COMPLETED]
    assert [order.index(s) for s in states] == sorted({order.index(s) for s in states}), states
    assert all(j.id == job.id for j in seen)
    assert plain(seen[-1].output) == {"ok": True}


def test_watch_a_finished_job_gives_it_once_and_ends(client, double):
    done = wait_job(client, start_job(client, double.id, {"n": 2, "tag": "w"}).id)
    seen = list(client.jobs.WatchJob(WatchJobRequest(id=done.id), timeout=5))
    assert seen == [done]


def test_watch_a_canceled_job_ends_at_canceled(client):
    flow = make_flow(client, SLEEP)
    job = start_job(client, flow.id)
    wait_job(client, job.id, JobState.JOB_STATE_RUNNING)
    stream = client.jobs.WatchJob(WatchJobRequest(id=job.id), timeout=10)
    first = next(stream)
    assert first.state == JobState.JOB_STATE_RUNNING
    client.jobs.CancelJob(CancelJobRequest(id=job.id))
    rest = list(stream)
    assert rest[-1].state == JobState.JOB_STATE_CANCELED
    assert rest[-1].code == JobStatusCode.JOB_USER_CANCELED


def test_watch_unknown_job_is_not_found(client):
    rpc_error(grpc.StatusCode.NOT_FOUND, client.jobs.WatchJob, WatchJobRequest(id="job_00000000000000000000000000"))


def test_list_jobs_filters_by_flow_state_and_correlation_id(client):
    a = make_flow(client, [])
    b = make_flow(client, [{"fail_if": "`true`", "message": "always"}])
    correlation = unique("corr")
    a_jobs = [start_job(client, a.alias, {"i": i}, correlation_id=correlation).id for i in range(3)]
    b_jobs = [start_job(client, b.alias, {"i": i}, correlation_id=correlation).id for i in range(2)]
    lone = start_job(client, a.alias, {"i": 9}).id
    for job_id in a_jobs + b_jobs + [lone]:
        wait_job(client, job_id)

    assert job_ids(client, flow_id=a.id) == a_jobs + [lone]
    assert job_ids(client, flow_id=b.alias) == b_jobs
    assert job_ids(client, correlation_id=correlation) == a_jobs + b_jobs
    assert job_ids(client, correlation_id=correlation, state=JobState.JOB_STATE_ERROR) == b_jobs
    assert job_ids(client, flow_id=a.id, state=JobState.JOB_STATE_COMPLETED) == a_jobs + [lone]
    assert job_ids(client, flow_id=a.id, state=JobState.JOB_STATE_ERROR) == []
    errors = job_ids(client, state=JobState.JOB_STATE_ERROR)
    assert set(b_jobs) <= set(errors) and not set(a_jobs) & set(errors)
    rpc_error(grpc.StatusCode.NOT_FOUND, client.jobs.ListJobs, ListJobsRequest(flow_id=unique("ghost")))


def test_list_jobs_pages_without_gaps_or_repeats(client):
    flow = make_flow(client, [])
    made = [start_job(client, flow.id, {"i": i}).id for i in range(7)]
    paged = pages(client.jobs.ListJobs, ListJobsRequest(flow_id=flow.id), "jobs", page_size=3)
    assert [len(p) for p in paged] == [3, 3, 1]
    assert [j.id for page in paged for j in page] == made
    everything = pages(client.jobs.ListJobs, ListJobsRequest(), "jobs", page_size=4)
    flat = [j.id for page in everything for j in page]
    assert len(flat) == len(set(flat))
    assert flat[-7:] == made
    assert flat == job_ids(client)


def test_list_jobs_newest_first_pages_backwards_through_time(client):
    flow = make_flow(client, [])
    made = [start_job(client, flow.id, {"i": i}).id for i in range(5)]
    request = ListJobsRequest(flow_id=flow.id, order_by="create_time desc")
    paged = pages(client.jobs.ListJobs, request, "jobs", page_size=2)
    assert [[j.id for j in page] for page in paged] == [made[4:2:-1], made[2:0:-1], made[:1]]
    error = rpc_error(grpc.StatusCode.INVALID_ARGUMENT, client.jobs.ListJobs, ListJobsRequest(order_by="end_time"))
    assert "create_time desc" in error.details()


def test_delete_flow_cancels_its_running_jobs_with_system_canceled(client, receiver):
    path = "/flow-deleted-" + unique()
    hook = make_webhook(client, receiver.url(path), event_types=["JOB.CANCELED"]).webhook
    flow = make_flow(client, SLEEP, webhook_ids=[hook.id])
    job = start_job(client, flow.id, {"x": 1})
    wait_job(client, job.id, JobState.JOB_STATE_RUNNING)

    client.flows.DeleteFlow(DeleteFlowRequest(id=flow.id))

    done = client.jobs.GetJob(GetJobRequest(id=job.id))
    assert done.state == JobState.JOB_STATE_CANCELED
    assert done.code == JobStatusCode.JOB_SYSTEM_CANCELED
    assert done.HasField("end_time")
    # Its event is recorded and sent.
    events = client.webhooks.ListEvents(ListEventsRequest(job_id=job.id)).events
    assert [e.event_type for e in events] == ["JOB.CANCELED"]
    [request] = receiver.wait_for(path, 1)
    data = body_json(request.body)["data"]
    assert data["jobId"] == job.id
    assert data["status"]["state"] == "CANCELED"
    assert data["status"]["code"] == "JOB_SYSTEM_CANCELED"
    # It stays canceled: the runner does not finish it after all.
    time.sleep(0.5)
    assert client.jobs.GetJob(GetJobRequest(id=job.id)).code == JobStatusCode.JOB_SYSTEM_CANCELED


def test_job_end_sends_its_event_to_linked_webhooks(client, receiver):
    path = "/job-done-" + unique()
    hook = make_webhook(client, receiver.url(path), event_types=["JOB.COMPLETED"]).webhook
    unlinked_path = "/job-unlinked-" + unique()
    make_webhook(client, receiver.url(unlinked_path), event_types=["JOB.COMPLETED"])
    flow = make_flow(client, [{"transform": "{sum: sum(values)}"}], webhook_ids=[hook.alias])
    job = start_job(client, flow.id, {"values": [1, 2, 3]}, correlation_id="c-42")
    wait_job(client, job.id)

    [request] = receiver.wait_for(path, 1)
    body = body_json(request.body)
    assert body["eventType"] == "JOB.COMPLETED"
    assert body["data"]["jobId"] == job.id
    assert body["data"]["correlationId"] == "c-42"
    assert body["data"]["flow"] == {"id": flow.id, "alias": flow.alias, "version": 1}
    assert body["data"]["status"]["state"] == "COMPLETED"
    assert body["data"]["status"]["code"] == "JOB_SUCCESS"
    assert body["data"]["inputData"] == {"values": [1, 2, 3]}
    assert body["data"]["output"] == {"sum": 6}
    assert b'"sum":6}' in request.body  # a whole number has no fraction
    time.sleep(0.3)
    assert receiver.at(unlinked_path) == []


# --- runaway steps: stopped at their timeout or memory limit, others unaffected -------

ORDINARY = [{"transform": "{n: n}"}]


def pairs(levels: int) -> str:
    """[@, @] applied `levels` times: a value of 2**levels leaves that shares its parts."""
    return "|".join(["[@, @]"] * levels)


def comparing(levels: int) -> str:
    """Compare two such values: 2**levels comparisons in C, no memory, no let-up for other threads."""
    return f"{{p: {pairs(levels)}, q: {pairs(levels)}}} | p == q"


def nested_arrays(depth: int) -> list:
    doc: list = []
    for _ in range(depth):
        doc = [doc]
    return doc


# Each nested array matches both branches, so validation takes 2**depth steps.
EXPONENTIAL_SCHEMA = {
    "$defs": {"a": {"oneOf": [{"items": {"$ref": "#/$defs/a"}}, {"items": {"$ref": "#/$defs/a"}, "minItems": 0}]}},
    "$ref": "#/$defs/a",
}


def _ordinary_job_completes_promptly(client, flow, within: float = 3.0) -> None:
    started = time.monotonic()
    done = wait_job(client, start_job(client, flow.id, {"n": 1}).id, timeout=within)
    assert done.state == JobState.JOB_STATE_COMPLETED
    assert time.monotonic() - started < within


def _runaways(client, definition: dict, document, count: int) -> list[str]:
    """Start `count` jobs of a flow with `definition`; their ids once they run."""
    flow = make_flow(client, definition=definition)
    started = [start_job(client, flow.id, document).id for _ in range(count)]
    for job_id in started:
        wait_job(client, job_id, JobState.JOB_STATE_RUNNING, *TERMINAL_JOB_STATES)
    return started


def _ended_within_timeout(client, job_id: str, timeout_s: float, code: int) -> Job:
    done = wait_job(client, job_id, timeout=timeout_s + 5)
    assert (done.state, JobStatusCode.Name(done.code)) == (JobState.JOB_STATE_ERROR, JobStatusCode.Name(code)), done
    ran_s = (done.end_time.ToMilliseconds() - done.claim_time.ToMilliseconds()) / 1000
    assert ran_s < timeout_s + 1.0, f"ran {ran_s:.2f} s with a timeout of {timeout_s} s"
    return done


@pytest.fixture(scope="module")
def ordinary(client):
    return make_flow(client, ORDINARY)


def test_unique_items_over_thousands_of_objects_is_checked_within_the_timeout(client, ordinary):
    items = [{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(4000)]
    definition = {"timeout_seconds": 2, "input_schema": {"type": "array", "uniqueItems": True}}
    [job_id] = _runaways(client, definition, [*items, dict(items[0])], 1)
    _ordinary_job_completes_promptly(client, ordinary)
    done = _ended_within_timeout(client, job_id, 2, JobStatusCode.JOB_VALIDATION_ERROR)
    assert "items 0 and 4000 are equal" in done.message


def test_a_value_doubled_25_times_and_more_ends_at_the_output_check(client, ordinary):
    [job_id] = _runaways(client, {"timeout_seconds": 5, "steps": [{"transform": pairs(30)}]}, {}, 1)
    _ordinary_job_completes_promptly(client, ordinary)
    done = _ended_within_timeout(client, job_id, 5, JobStatusCode.JOB_EXECUTION_ERROR)
    assert "the limit is 1048576 bytes" in done.message


def test_a_step_that_needs_more_memory_than_the_limit_ends_in_error(client, ordinary):
    doubling = "|".join(["join('', [@, @])"] * 24)  # 16 bytes become 256 MiB
    [job_id] = _runaways(
        client, {"timeout_seconds": 10, "steps": [{"transform": "@"}, {"transform": doubling}]}, "x" * 16, 1
    )
    _ordinary_job_completes_promptly(client, ordinary)
    done = _ended_within_timeout(client, job_id, 10, JobStatusCode.JOB_EXECUTION_ERROR)
    assert done.message == "step 1 used more than 256 MiB of memory"  # the default --job-memory-limit


def test_steps_computing_past_the_timeout_are_killed_while_other_jobs_run(client, ordinary, hookline_settings):
    # One fewer than the runner's threads, so that the ordinary job has one.
    count = hookline_settings.job_workers - 1
    jobs = _runaways(client, {"timeout_seconds": 1.5, "steps": [{"transform": comparing(30)}]}, {}, count)
    _ordinary_job_completes_promptly(client, ordinary)
    for job_id in jobs:
        assert "timed out after 1.5 s" in _ended_within_timeout(client, job_id, 1.5, JobStatusCode.JOB_TIMEOUT).message


def test_input_validation_past_the_timeout_is_killed_and_frees_its_worker(client, ordinary, hookline_settings):
    # As many as the runner has threads: each must be free again once its job timed out.
    count = hookline_settings.job_workers
    definition = {"timeout_seconds": 1, "input_schema": EXPONENTIAL_SCHEMA}
    for job_id in _runaways(client, definition, nested_arrays(20), count):
        _ended_within_timeout(client, job_id, 1, JobStatusCode.JOB_TIMEOUT)
    _ordinary_job_completes_promptly(client, ordinary)


def test_cancel_stops_a_computing_step_within_a_second(client):
    [job_id] = _runaways(client, {"steps": [{"transform": comparing(32)}]}, {}, 1)
    client.jobs.CancelJob(CancelJobRequest(id=job_id))
    started = time.monotonic()
    done = wait_job(client, job_id, timeout=3)
    assert time.monotonic() - started < 1.5
    assert (done.state, done.code) == (JobState.JOB_STATE_CANCELED, JobStatusCode.JOB_USER_CANCELED)


def test_a_sleep_between_computing_steps_keeps_the_document_and_can_be_canceled(client):
    flow = make_flow(client, [{"transform": "{a: a}"}, {"sleep_ms": 300}, {"transform": "[a, a]"}])
    assert plain(wait_job(client, start_job(client, flow.id, {"a": "x"}).id).output) == ["x", "x"]
    long_sleep = make_flow(client, [{"transform": "{a: a}"}, {"sleep_ms": 60_000}, {"transform": "a"}])
    job = start_job(client, long_sleep.id, {"a": 1})
    wait_job(client, job.id, JobState.JOB_STATE_RUNNING)
    client.jobs.CancelJob(CancelJobRequest(id=job.id))
    started = time.monotonic()
    assert wait_job(client, job.id, timeout=3).state == JobState.JOB_STATE_CANCELED
    assert time.monotonic() - started < 1.5

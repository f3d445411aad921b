"""A job output that JSON text and protobuf cannot hold (an unpaired surrogate
from a JMESPath literal, NaN, a huge number) ends the job in ERROR naming the
step, and no stored job, however odd, makes a read of it (or a listing it is
on) fail."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hookline.client import (
    GetFlowRequest,
    GetJobRequest,
    Job,
    JobState,
    JobStatusCode,
    ListJobsRequest,
    WatchJobRequest,
)
from hookline.server.storage import models as m

from .helpers import TERMINAL_JOB_STATES, list_all, make_flow, make_webhook, plain, start_job, unique


def watch_to_end(client: Any, job_id: str) -> Job:
    """The job's last state, read through WatchJob (which ends at a terminal state)."""
    seen = list(client.jobs.WatchJob(WatchJobRequest(id=job_id), timeout=30))
    assert seen and seen[-1].state in TERMINAL_JOB_STATES, seen
    return seen[-1]


def every_read(client: Any, job: Job) -> Job:
    """Read the job every way a caller can; each read answers. Returns GetJob's."""
    got = client.jobs.GetJob(GetJobRequest(id=job.id))
    for request in (
        ListJobsRequest(),
        ListJobsRequest(flow_id=job.flow_id),
        ListJobsRequest(state=got.state),
        ListJobsRequest(correlation_id=job.correlation_id),
    ):
        assert got in list_all(client.jobs.ListJobs, request, "jobs"), request
    assert watch_to_end(client, job.id) == got
    return got


# (transform, what the job's message says after "step 0: ")
UNSTORABLE = [
    ('`"\\ud800"`', "output: holds the unpaired surrogate \\ud800"),
    ('{"\\udfff": @}', "output: has a key that holds the unpaired surrogate \\udfff"),
    ('{a: [`1`, `"x\\udc00"`]}', "output.a[1]: holds the unpaired surrogate \\udc00"),
    ("`NaN`", "output: is NaN"),
    ("to_number('1e999')", "output: is Infinity"),
    ("to_number('" + "9" * 400 + "')", "output: is an integer too large"),
]


@pytest.mark.parametrize(("transform", "message"), UNSTORABLE)
def test_an_output_that_cannot_be_stored_ends_the_job_in_error(client, receiver, transform, message):
    path = f"/outputs/{unique()}"
    hook = make_webhook(client, receiver.url(path), event_types=["JOB.COMPLETED", "JOB.ERROR"]).webhook
    flow = make_flow(client, [{"transform": "@"}, {"transform": transform}], webhook_ids=[hook.id])
    job = start_job(client, flow.id, {"n": 1}, correlation_id=unique("odd"))

    ended = watch_to_end(client, job.id)
    assert (ended.state, ended.code) == (JobState.JOB_STATE_ERROR, JobStatusCode.JOB_EXECUTION_ERROR)
    assert ended.message.startswith(f"step 1: {message}"), ended.message
    assert not ended.HasField("output")
    assert every_read(client, job) == ended

    # Its JOB.ERROR event went out, as valid JSON carrying the message.
    [delivered] = receiver.wait_for(path, 1)
    body = json.loads(delivered.body)
    assert (body["eventType"], body["data"]["status"]["message"]) == ("JOB.ERROR", ended.message)


def test_the_surrogate_halves_of_one_character_make_that_character(client):
    flow = make_flow(client, [{"transform": """join('', `["\\ud83d", "\\ude00"]`)"""}])
    ended = watch_to_end(client, start_job(client, flow.id).id)
    assert ended.state == JobState.JOB_STATE_COMPLETED, ended.message
    assert plain(ended.output) == "\U0001f600"


def test_an_error_quoting_odd_text_is_stored_and_read(client):
    # jmespath's error quotes the value as it is: here an unpaired surrogate and a NUL.
    flow = make_flow(client, [{"transform": '`"\\ud800 \\u0000"`'}, {"fail_if": "abs(@)"}])
    job = start_job(client, flow.id)
    ended = watch_to_end(client, job.id)
    assert (ended.state, ended.code) == (JobState.JOB_STATE_ERROR, JobStatusCode.JOB_EXECUTION_ERROR)
    assert ended.message.startswith("step 1: In function abs()")
    assert "\\ud800 \\u0000" in ended.message
    assert every_read(client, job) == ended


def test_rows_stored_before_outputs_were_checked_are_still_readable(client):
    """What an older version stored: an output holding an unpaired surrogate, a
    NaN and a number past a double's range. Every read answers, showing the
    surrogate as U+FFFD and the numbers as null."""
    flow = make_flow(client, [{"transform": "@"}])
    job = start_job(client, flow.id, {"n": 1}, correlation_id=unique("old"))
    watch_to_end(client, job.id)
    m.Job.update(output='{"s":"a\\ud800b","\\udc00":[NaN,1e999,' + "9" * 400 + "]}").where(m.Job.id == job.id).execute()
    m.FlowVersion.update(definition='{"steps":[{"transform":"@"}],"input_schema":{"description":"\\ud800"}}').where(
        m.FlowVersion.flow_id == flow.id
    ).execute()

    got = every_read(client, job)
    assert got.state == JobState.JOB_STATE_COMPLETED
    assert plain(got.output) == {"s": "a\ufffdb", "\ufffd": [None, None, None]}
    shown = client.flows.GetFlow(GetFlowRequest(id=flow.id))
    assert plain(shown.definition)["input_schema"] == {"description": "\ufffd"}


def test_a_job_as_deep_as_the_limit_allows_reads_back_everywhere(client):
    # The deepest input and output the default --max-json-depth (32) lets in must
    # still parse inside every response that carries them.
    deepest: Any = "bottom"
    for _ in range(32):
        deepest = {"a": deepest}
    flow = make_flow(client, [{"transform": "@"}])
    job = start_job(client, flow.id, deepest, correlation_id=unique("deep"))
    watch_to_end(client, job.id)
    ended = every_read(client, job)
    assert ended.state == JobState.JOB_STATE_COMPLETED, ended.message
    assert plain(ended.output) == deepest

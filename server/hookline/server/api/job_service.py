"""JobService: start, inspect, cancel and watch jobs."""

from __future__ import annotations

from hookline.v1 import jobs_pb2, jobs_pb2_grpc

from .. import jsonvalue, streams, validation
from ..feeds import JobFeed, Wait
from ..settings import Settings
from ..storage import jobs
from ..storage.groupcommit import GroupCommit
from ..validation import require
from . import convert
from .interceptor import principal
from .pages import PageBudget


class JobServicer(jobs_pb2_grpc.JobServiceServicer):
    def __init__(self, settings: Settings, feed: JobFeed):
        self._settings = settings
        self._feed = feed
        # Concurrent StartJob calls write their jobs together.
        self._starts = GroupCommit(jobs.start_jobs)

    def StartJob(self, request, context):  # type: ignore[no-untyped-def]
        limits = self._settings.limits
        v = validation.Violations()
        if not request.flow:
            v.add("flow", "is required (a flow id or alias)")
        if request.version < 0:
            v.add("version", "must be 0 (latest) or a positive version number")
        validation.key(v, "correlation_id", request.correlation_id)
        validation.key(v, "idempotency_key", request.idempotency_key)
        v.raise_if_any()
        document = None
        if request.HasField("input") and request.input.WhichOneof("kind") is not None:
            document = jsonvalue.value_to_python(request.input, field="input", max_depth=limits.max_json_depth)
        input_json = validation.json_size("input", document, limits)
        job = self._starts.submit(
            jobs.StartRequest(
                space_id=principal().space_id,
                flow_ref=request.flow,
                version=request.version,
                input_json=input_json.decode(),
                correlation_id=request.correlation_id,
                idempotency_key=request.idempotency_key,
                idempotency_ttl_ms=int(self._settings.idempotency_ttl_s * 1000),
            )
        )
        return convert.job(job)

    def GetJob(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        return convert.job(jobs.get_job(principal().space_id, request.id))

    def ListJobs(self, request, context):  # type: ignore[no-untyped-def]
        space_id = principal().space_id
        state = validation.state_filter("state", jobs_pb2.JobState, request.state, convert.JOB_STATES_FROM_PROTO)
        page = PageBudget(convert.job)
        _, token = jobs.list_jobs(
            space_id,
            request.page_size,
            request.page_token,
            flow_ref=request.flow_id,
            state=state,
            correlation_id=request.correlation_id,
            fits=page.fits,
            newest_first=validation.newest_first("order_by", request.order_by),
        )
        return jobs_pb2.ListJobsResponse(jobs=page.messages, next_page_token=token)

    def CancelJob(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        return convert.job(jobs.cancel_job(principal().space_id, request.id))

    def CancelJobs(self, request, context):  # type: ignore[no-untyped-def]
        space_id = principal().space_id
        return jobs_pb2.CancelJobsResponse(canceled_count=jobs.cancel_waiting(space_id, request.flow_id))

    def WatchJob(self, request, context):  # type: ignore[no-untyped-def]
        require("id", request.id)
        for job in streams.watch_job(self._feed, principal(), request.id, on_end=context.add_callback):
            yield job if isinstance(job, Wait) else convert.job(job)  # a Wait: nothing yet (see senders.py)

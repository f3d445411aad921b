"""Code a user of an installed hookline writes; scripts/lint requires mypy to
accept it, checked against an installed copy of the package (not the sources),
so the package's py.typed markers and generated .pyi stubs are what it sees."""

from __future__ import annotations

from google.protobuf import struct_pb2

from hookline.client import Client, GetJobRequest, Job, JobState, StartJobRequest, WatchJobRequest
from hookline.v1 import jobs_pb2


def run(client: Client, flow: str, total: float) -> Job:
    request = StartJobRequest(flow=flow, input=struct_pb2.Value(number_value=total), idempotency_key="order-42")
    job: Job = client.jobs.StartJob(request)
    state: JobState.ValueType = job.state
    for seen in client.jobs.WatchJob(WatchJobRequest(id=job.id)):
        if seen.state != state:
            state = seen.state
    same: jobs_pb2.Job = client.jobs.GetJob(GetJobRequest(id=job.id))
    return same

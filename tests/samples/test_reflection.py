"""Server reflection, as grpcurl uses it (`grpcurl -plaintext ADDRESS list`,
`describe`): no API key needed."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

SERVICES = {
    "hookline.v1.WebhookService",
    "hookline.v1.FlowService",
    "hookline.v1.JobService",
    "grpc.health.v1.Health",
}


@pytest.fixture(scope="module")
def channel(grpc_server: grpc.Server, grpc_addr: str) -> Iterator[grpc.Channel]:
    """A plain channel to the running server: no API key on it."""
    with grpc.insecure_channel(grpc_addr) as channel:
        yield channel


def ask(
    channel: grpc.Channel, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    [response] = list(stub.ServerReflectionInfo(iter([request]), timeout=10))
    assert not response.HasField("error_response"), response.error_response
    return response


def test_reflection_lists_the_services_without_a_key(channel: grpc.Channel) -> None:
    response = ask(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {service.name for service in response.list_services_response.service}
    assert names >= SERVICES | {"grpc.reflection.v1alpha.ServerReflection"}


def test_reflection_returns_the_file_descriptor_of_jobservice(channel: grpc.Channel) -> None:
    response = ask(channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol="hookline.v1.JobService"))
    files = {}
    for raw in response.file_descriptor_response.file_descriptor_proto:
        proto = descriptor_pb2.FileDescriptorProto.FromString(raw)
        files[proto.name] = proto
    jobs = files["hookline/v1/jobs.proto"]
    assert jobs.package == "hookline.v1"
    [service] = [s for s in jobs.service if s.name == "JobService"]
    methods = {m.name: m for m in service.method}
    assert set(methods) == {"StartJob", "GetJob", "ListJobs", "CancelJob", "CancelJobs", "WatchJob"}
    assert methods["StartJob"].input_type == ".hookline.v1.StartJobRequest"
    assert methods["WatchJob"].server_streaming


def test_reflection_describes_every_method_as_grpcurl_describe_does(channel: grpc.Channel) -> None:
    # Each file's imports (google/protobuf/*, the other hookline files) resolved through reflection.
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    for name in SERVICES:
        service = pool.FindServiceByName(name)
        assert service.methods, name
        for method in service.methods:
            assert method.input_type.full_name and method.output_type.full_name, method.full_name
    watch = pool.FindServiceByName("hookline.v1.WebhookService").methods_by_name["WatchDeliveries"]
    assert watch.output_type.full_name == "hookline.v1.DeliveryEvent"
    output = pool.FindMessageTypeByName("hookline.v1.Job").fields_by_name["output"]
    assert output.message_type.full_name == "google.protobuf.Value"

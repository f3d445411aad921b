"""Client: a channel to hookline with the API key attached to every call."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import grpc

from hookline.v1 import flows_pb2_grpc, jobs_pb2_grpc, webhooks_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
KEY_FILE = Path(".hookline") / "admin.key"


def find_api_key(key_file: Path | None = None) -> str:
    """HOOKLINE_API_KEY, else the key file the server wrote in its data directory."""
    if os.environ.get("HOOKLINE_API_KEY"):
        return os.environ["HOOKLINE_API_KEY"].strip()
    data_dir = os.environ.get("HOOKLINE_DATA_DIR")
    path = key_file or (Path(data_dir) / "admin.key" if data_dir else KEY_FILE)
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise RuntimeError(
            f"no API key: set HOOKLINE_API_KEY or run from the folder whose {path} the server wrote"
        ) from None


class _KeyInterceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):
    def __init__(self, api_key: str):
        self._metadata = ("authorization", f"Bearer {api_key}")

    def _with_key(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = (*(details.metadata or ()), self._metadata)
        return details._replace(metadata=metadata) if hasattr(details, "_replace") else _Details(details, metadata)

    def intercept_unary_unary(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_key(client_call_details), request)

    def intercept_unary_stream(self, continuation, client_call_details, request):  # type: ignore[no-untyped-def]
        return continuation(self._with_key(client_call_details), request)


class _Details(grpc.ClientCallDetails):
    def __init__(self, base: grpc.ClientCallDetails, metadata: tuple[tuple[str, str | bytes], ...]):
        self.method = base.method
        self.timeout = base.timeout
        self.metadata = metadata
        self.credentials = base.credentials
        self.wait_for_ready = getattr(base, "wait_for_ready", None)
        self.compression = getattr(base, "compression", None)


class Client:
    """Typed access to hookline's three services.

    >>> with Client() as hl:                         # HOOKLINE_ADDRESS, HOOKLINE_API_KEY
    ...     hl.jobs.GetJob(GetJobRequest(id="job_..."))
    """

    webhooks: webhooks_pb2_grpc.WebhookServiceStub
    flows: flows_pb2_grpc.FlowServiceStub
    jobs: jobs_pb2_grpc.JobServiceStub

    def __init__(
        self,
        address: str | None = None,
        api_key: str | None = None,
        *,
        channel: grpc.Channel | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        options: Any = None,
    ):
        """Connect to `address` (default HOOKLINE_ADDRESS or 127.0.0.1:50051), or wrap
        an existing `channel`; `credentials` turn on TLS."""
        self._owned = channel is None
        if channel is None:
            address = address or os.environ.get("HOOKLINE_ADDRESS", DEFAULT_ADDRESS)
            if credentials is not None:
                channel = grpc.secure_channel(address, credentials, options=options)
            else:
                channel = grpc.insecure_channel(address, options=options)
        self._raw = channel
        self.channel = grpc.intercept_channel(channel, _KeyInterceptor(api_key or find_api_key()))
        self.webhooks = webhooks_pb2_grpc.WebhookServiceStub(self.channel)
        self.flows = flows_pb2_grpc.FlowServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)

    def close(self) -> None:
        if self._owned:
            self._raw.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

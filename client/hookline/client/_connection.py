"""Client: a channel to hookline with the API key attached to every call."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import grpc

from hookline.v1 import events_pb2_grpc, flows_pb2_grpc, jobs_pb2_grpc, webhooks_pb2_grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"
KEY_FILE = Path(".hookline") / "admin.key"
API_KEY_FORM = "hl_<key id>_<secret>"
# What the server issues; anything else would fail there, or (with a line break or
# other byte a header cannot hold) fail inside gRPC before the call is even sent.
_API_KEY = re.compile(r"hl_[0-9A-Za-z-]+_[0-9A-Za-z_-]+")
# Keys are about 60 characters: reading stops long before the end of a wrong file.
_KEY_READ_LIMIT = 1024


def check_api_key(api_key: str, source: str = "") -> str:
    """`api_key` without surrounding whitespace; ValueError saying where it came
    from (`source`: "in HOOKLINE_API_KEY", say), never what it holds, when it is
    not shaped like a hookline key."""
    key = api_key.strip()
    where = f"the API key {source}".rstrip()
    if not key:
        raise ValueError(f"{where} is empty")
    if len(key) >= _KEY_READ_LIMIT or not _API_KEY.fullmatch(key):
        raise ValueError(f"{where} is malformed (a key looks like {API_KEY_FORM})")
    return key


def read_key_file(path: Path) -> str:
    """A key file's text, unchecked; OSError when it cannot be read."""
    with path.open("rb") as file:
        data = file.read(_KEY_READ_LIMIT)
    return data.decode("utf-8", "replace")


def default_key_file() -> Path:
    """The key file the server writes: admin.key in HOOKLINE_DATA_DIR, else .hookline/admin.key."""
    data_dir = os.environ.get("HOOKLINE_DATA_DIR")
    return Path(data_dir) / "admin.key" if data_dir else KEY_FILE


def find_api_key(key_file: Path | None = None) -> str:
    """The key in `key_file` when given, else HOOKLINE_API_KEY, else the key file
    the server wrote in its data directory. RuntimeError when there is none (or its
    file cannot be read), ValueError when it is malformed."""
    if key_file is None and os.environ.get("HOOKLINE_API_KEY"):
        return check_api_key(os.environ["HOOKLINE_API_KEY"], "in HOOKLINE_API_KEY")
    path = key_file or default_key_file()
    try:
        text = read_key_file(path)
    except FileNotFoundError:
        if key_file is not None:
            raise RuntimeError(f"no API key: the key file {path} does not exist") from None
        if os.environ.get("HOOKLINE_DATA_DIR"):
            raise RuntimeError(
                f"no API key: set HOOKLINE_API_KEY, or HOOKLINE_DATA_DIR to the server's data dir (no {path})"
            ) from None
        raise RuntimeError(
            f"no API key: set HOOKLINE_API_KEY, or run where the server wrote {path} (none here)"
        ) from None
    except OSError as error:
        raise RuntimeError(f"cannot read the key file {path}: {error.strerror or error}") from None
    return check_api_key(text, f"in {path}")


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
    """Typed access to hookline's four services.

    >>> with Client() as hl:                         # HOOKLINE_ADDRESS, HOOKLINE_API_KEY
    ...     hl.jobs.GetJob(GetJobRequest(id="job_..."))
    """

    webhooks: webhooks_pb2_grpc.WebhookServiceStub
    flows: flows_pb2_grpc.FlowServiceStub
    jobs: jobs_pb2_grpc.JobServiceStub
    events: events_pb2_grpc.EventServiceStub

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
        an existing `channel`; `credentials` turn on TLS. `api_key` defaults to
        find_api_key(); a malformed key is a ValueError here, before any call."""
        key = check_api_key(api_key) if api_key else find_api_key()  # before a channel is opened
        self._owned = channel is None
        if channel is None:
            address = address or os.environ.get("HOOKLINE_ADDRESS", DEFAULT_ADDRESS)
            if credentials is not None:
                channel = grpc.secure_channel(address, credentials, options=options)
            else:
                channel = grpc.insecure_channel(address, options=options)
        self._raw = channel
        self.channel = grpc.intercept_channel(channel, _KeyInterceptor(key))
        self.webhooks = webhooks_pb2_grpc.WebhookServiceStub(self.channel)
        self.flows = flows_pb2_grpc.FlowServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.events = events_pb2_grpc.EventServiceStub(self.channel)

    def close(self) -> None:
        if self._owned:
            self._raw.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

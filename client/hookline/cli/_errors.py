"""Errors as a person reads them: the server's status and message, its
google.rpc.BadRequest field violations, and a hint for the usual mistakes.

The status details travel in the `grpc-status-details-bin` trailer as a
serialized google.rpc.Status. The client depends on grpcio and protobuf only,
not on googleapis-common-protos, so the few messages needed are declared here,
wire-compatible, in a private descriptor pool."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

DETAILS_TRAILER = "grpc-status-details-bin"
BAD_REQUEST_TYPE = "google.rpc.BadRequest"


class CliError(Exception):
    """A failure already worded for a person; the CLI prints it and exits `code`."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


@dataclass(frozen=True)
class RpcFailure:
    code: grpc.StatusCode
    message: str
    violations: tuple[Violation, ...] = ()


@cache
def _messages() -> dict[str, Any]:
    F = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="hookline/cli/rpc_status.proto", package="google.rpc", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        spec = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = spec.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED
    # google.protobuf.Any has the same wire form as this.
    message("Any", ("type_url", 1, F.TYPE_STRING, optional, ""), ("value", 2, F.TYPE_BYTES, optional, ""))
    message(
        "Status",
        ("code", 1, F.TYPE_INT32, optional, ""),
        ("message", 2, F.TYPE_STRING, optional, ""),
        ("details", 3, F.TYPE_MESSAGE, repeated, ".google.rpc.Any"),
    )
    message(
        "FieldViolation",
        ("field", 1, F.TYPE_STRING, optional, ""),
        ("description", 2, F.TYPE_STRING, optional, ""),
    )
    message("BadRequest", ("field_violations", 1, F.TYPE_MESSAGE, repeated, ".google.rpc.FieldViolation"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"google.rpc.{name}"))
        for name in ("Status", "BadRequest")
    }


def violations_from_trailer(data: bytes) -> tuple[Violation, ...]:
    """The BadRequest field violations in a serialized google.rpc.Status."""
    try:
        classes = _messages()
        status = classes["Status"].FromString(data)
        found: list[Violation] = []
        for detail in status.details:
            if detail.type_url.rpartition("/")[2] != BAD_REQUEST_TYPE:
                continue
            bad = classes["BadRequest"].FromString(detail.value)
            found.extend(Violation(v.field, v.description) for v in bad.field_violations)
    except (DecodeError, TypeError, ValueError):
        return ()  # unreadable details: the status message still says what went wrong
    return tuple(found)


def rpc_failure(error: grpc.RpcError) -> RpcFailure:
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    message = error.details() if hasattr(error, "details") else str(error)
    violations: tuple[Violation, ...] = ()
    trailers = error.trailing_metadata() if hasattr(error, "trailing_metadata") else None
    # grpc-stubs types these as objects with .key and .value; they are pairs at run time.
    for key, value in cast("tuple[tuple[str, str | bytes], ...]", trailers or ()):
        if key == DETAILS_TRAILER and isinstance(value, bytes):
            violations = violations_from_trailer(value)
    return RpcFailure(code or grpc.StatusCode.UNKNOWN, message or "", violations)


_HINTS = {
    grpc.StatusCode.UNAUTHENTICATED: (
        "the server did not accept the API key; pass --key, set HOOKLINE_API_KEY, or run where "
        "the server's .hookline/admin.key is (HOOKLINE_DATA_DIR)"
    ),
    grpc.StatusCode.PERMISSION_DENIED: "this key's role may not do that; use a management key",
}


def describe(error: grpc.RpcError, address: str) -> list[str]:
    """The lines to print for a failed call."""
    failure = rpc_failure(error)
    code = failure.code
    if code is grpc.StatusCode.UNAVAILABLE and _is_connection_failure(failure.message):
        return [
            f"cannot reach hookline at {address} ({first_line(failure.message)})",
            "is `hookline serve` running? set --address or HOOKLINE_ADDRESS to where it listens",
        ]
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return [f"no answer from hookline at {address} in time ({failure.message or 'deadline exceeded'})"]
    listed = [f"{v.field}: {v.description}" for v in failure.violations]
    if listed and all(item in failure.message for item in listed):
        # The message is the violations joined: list them once, one a line.
        count = len(listed)
        lines = [f"{code.name}: {count} problem{'s' if count != 1 else ''} with the request"]
    else:
        lines = [f"{code.name}: {failure.message}" if failure.message else code.name]
    lines.extend(f"  - {v.field}: {v.description}" for v in failure.violations)
    if code in _HINTS:
        lines.append(_HINTS[code])
    return lines


def _is_connection_failure(message: str) -> bool:
    lowered = message.lower()
    words = (
        "failed to connect",
        "connection refused",
        "connect failed",
        "dns resolution",
        "name resolution",
        "errors resolving",  # an unknown host: gRPC's resolver says so in its own words
        "socket closed",  # the server went away during the call
        "connection reset",
    )
    return not message or any(word in lowered for word in words)


def first_line(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else "unavailable"
    return text if len(text) <= 200 else text[:197] + "..."

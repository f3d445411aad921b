"""Domain errors. Each names its gRPC status; one interceptor turns them into
status + message (+ google.rpc.BadRequest field violations) for the caller."""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class HooklineError(Exception):
    """Base of every error a caller is meant to see."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str, violations: list[FieldViolation] | None = None):
        super().__init__(message)
        self.message = message
        self.violations = list(violations or [])


class InvalidArgument(HooklineError):
    code = grpc.StatusCode.INVALID_ARGUMENT

    @classmethod
    def field(cls, field: str, description: str) -> InvalidArgument:
        """One bad field: the message repeats the violation so it reads on its own."""
        return cls(f"{field}: {description}", [FieldViolation(field, description)])

    @classmethod
    def fields(cls, violations: list[FieldViolation]) -> InvalidArgument:
        text = "; ".join(f"{v.field}: {v.description}" for v in violations)
        return cls(text, violations)


class NotFound(HooklineError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(HooklineError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(HooklineError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unauthenticated(HooklineError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(HooklineError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(HooklineError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class OutOfRange(HooklineError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unavailable(HooklineError):
    """A fault around the request (the database is away), not in it: try again."""

    code = grpc.StatusCode.UNAVAILABLE


class Unimplemented(HooklineError):
    """The method exists, but not on this process."""

    code = grpc.StatusCode.UNIMPLEMENTED


def shown(value: str, limit: int = 64) -> str:
    """A caller's value quoted for an error message, cut to `limit` characters
    (messages travel in gRPC trailers, which have a size limit)."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


# What no database column or protobuf string holds: NUL (PostgreSQL refuses it)
# and surrogate code points (no UTF-8 encoder takes them).
_UNSTORABLE = re.compile("[\0\ud800-\udfff]")


def storable(text: str) -> str:
    """`text` with NUL and surrogate code points written as \\u escapes, for a
    message that quotes a caller's data (a job's error quotes its values)."""
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)

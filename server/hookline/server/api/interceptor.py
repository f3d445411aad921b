"""One server interceptor for every RPC, of each of gRPC's four kinds:
authenticates the API key, enforces the key's role (from the table in access.py)
and the stream cap, turns undecodable requests into INVALID_ARGUMENT,
and maps domain errors to status codes (with BadRequest field violations).
Anything unexpected is logged and becomes INTERNAL."""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from ..errors import HooklineError, InvalidArgument, PermissionDenied, ResourceExhausted, Unauthenticated, shown
from ..storage import spaces
from ..storage.database import FaultLog, database_fault, release_connection
from ..storage.records import Principal
from .access import Access, access_of
from .senders import Senders

log = logging.getLogger("hookline.api")

_principal: contextvars.ContextVar[Principal] = contextvars.ContextVar("principal")


def principal() -> Principal:
    """The caller of the RPC being handled."""
    return _principal.get()


class _Undecodable:
    def __init__(self, error: Exception):
        self.error = error


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as error:  # protobuf's DecodeError, recursion limit, ...
            return _Undecodable(error)

    return decode


# The status travels in trailers, which clients refuse past 8 KiB (percent-encoded
# message plus base64 details): keep it well under, in ASCII.
_MAX_MESSAGE = 1000
_MAX_VIOLATIONS = 10


def _cut(text: str, limit: int) -> str:
    text = text.encode("ascii", "backslashreplace").decode("ascii")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _abort(context: grpc.ServicerContext, error: HooklineError) -> None:
    context.abort_with_status(_status(error))


def _status(error: HooklineError) -> grpc.Status:
    message = _cut(error.message, _MAX_MESSAGE)
    status = status_pb2.Status(code=getattr(code_pb2, error.code.name), message=message)
    if error.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=_cut(v.field, 100), description=_cut(v.description, 200)
                )
                for v in error.violations[:_MAX_VIOLATIONS]
            ]
        )
        detail = any_pb2.Any()
        detail.Pack(bad)
        status.details.append(detail)
    return rpc_status.to_status(status)


_INTERNAL = "internal error; the server log has the details"


_faults = FaultLog(log)


def _abort_unexpected(context: grpc.ServicerContext, method: str, error: Exception) -> None:
    """A database fault is the caller's to retry (UNAVAILABLE, RESOURCE_EXHAUSTED),
    logged once in a while; anything else is a bug: logged with its traceback,
    INTERNAL to the caller."""
    fault = database_fault(error)
    if fault is not None:
        _faults.fault(f"{method} (and the calls like it)", error)
        _abort(context, fault)
        return
    log.exception("unexpected error in %s", method)
    context.abort(grpc.StatusCode.INTERNAL, _INTERNAL)


# JSON values are stored as escaped JSON text, so NUL is harmless inside them.
_JSON_TYPES = ("google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue")


def _nul_field(message: Any, prefix: str = "") -> str | None:
    """The path of a text field holding a NUL character (no database stores one), or None."""
    for field, value in message.ListFields():
        path = prefix + field.name
        if field.message_type is not None and field.message_type.full_name in _JSON_TYPES:
            continue
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            for key, item in value.items():
                if "\0" in str(key) or (isinstance(item, str) and "\0" in item):
                    return f"{path}[{shown(str(key))}]"
            continue
        items = value if field.is_repeated else [value]
        for index, item in enumerate(items):
            where = f"{path}[{index}]" if field.is_repeated else path
            if isinstance(item, str) and "\0" in item:
                return where
            if field.message_type is not None:
                found = _nul_field(item, where + ".")
                if found:
                    return found
    return None


class ApiInterceptor(grpc.ServerInterceptor):
    """A stream holds a thread of the server's pool while it is open, so every
    such stream counts against the cap, reflection's too (it needs no key): the
    pool has room for the cap and for ordinary calls beside it."""

    def __init__(self, max_streams: int, senders: Senders):
        self._max_streams = max_streams
        self._senders = senders
        self._streams = 0
        self._lock = threading.Lock()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None:
            return handler
        access = access_of(method)
        if access is Access.OPEN:
            return self._open(handler)
        # Text values only: binary ones (keys ending -bin) never carry the key.
        metadata = {k: v for k, v in handler_call_details.invocation_metadata or () if isinstance(v, str)}
        decode = _safe(handler.request_deserializer)
        encode = handler.response_serializer
        if handler.unary_unary:
            behavior = self._unary(handler.unary_unary, method, access, metadata)
            return grpc.unary_unary_rpc_method_handler(behavior, decode, encode)
        if handler.unary_stream:
            behavior = self._stream(handler.unary_stream, method, access, metadata)
            return grpc.unary_stream_rpc_method_handler(behavior, decode, encode)
        if handler.stream_unary:
            behavior = self._request_stream(handler.stream_unary, method, access, metadata)
            return grpc.stream_unary_rpc_method_handler(behavior, decode, encode)
        if handler.stream_stream:
            behavior = self._bidi(handler.stream_stream, method, access, metadata)
            return grpc.stream_stream_rpc_method_handler(behavior, decode, encode)
        # Not one of gRPC's four kinds: nothing here could check its caller.
        log.error("refused %s: its handler is of no known kind", method)
        return grpc.unary_unary_rpc_method_handler(
            lambda request, context: context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} cannot be called")
        )

    def _open(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        """A call of an open service: no key; its streams that hold a thread
        (reflection's) count against the cap, while health's Watch holds none."""
        if handler.stream_stream and not getattr(handler.stream_stream, "experimental_non_blocking", False):
            return grpc.stream_stream_rpc_method_handler(
                self._counted(handler.stream_stream), handler.request_deserializer, handler.response_serializer
            )
        return handler

    def _counted(self, behavior: Callable) -> Callable:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                self._take_slot()
            except ResourceExhausted as error:
                _abort(context, error)
            try:
                yield from behavior(request, context)
            finally:
                self._free_slot()

        return handle

    def _take_slot(self) -> None:
        with self._lock:
            if self._streams >= self._max_streams:
                raise ResourceExhausted(
                    f"too many open streams (the limit is {self._max_streams}, --max-streams); try again later"
                )
            self._streams += 1

    def _free_slot(self) -> None:
        with self._lock:
            self._streams -= 1

    def _enter(self, method: str, access: Access | None, metadata: dict[str, str], request: Any) -> Principal:
        _check_request(request)
        return self._caller(method, access, metadata)

    def _caller(self, method: str, access: Access | None, metadata: dict[str, str]) -> Principal:
        """The caller the key in `metadata` names, if its role may call `method`."""
        header = metadata.get("authorization", "")
        if not header:
            raise Unauthenticated("missing API key: send metadata 'authorization: Bearer hl_<key id>_<secret>'")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("malformed authorization metadata: expected 'Bearer hl_<key id>_<secret>'")
        caller = spaces.authenticate(token.strip())
        if access is None:
            raise PermissionDenied(f"no key may call {method}: the server grants it to no role")
        if caller.role not in access.value:
            needed = " or ".join(sorted(access.value))
            raise PermissionDenied(f"a {caller.role} key may not call {method}; this call needs a {needed} key")
        return caller

    def _unary(self, behavior: Callable, method: str, access: Access | None, metadata: dict[str, str]) -> Callable:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                token = _principal.set(self._enter(method, access, metadata, request))
                try:
                    return behavior(request, context)
                finally:
                    _principal.reset(token)
                    release_connection()
            except HooklineError as error:
                _abort(context, error)
            except Exception as error:
                _abort_unexpected(context, method, error)

        return handle

    def _stream(self, behavior: Callable, method: str, access: Access | None, metadata: dict[str, str]) -> Callable:
        """A streaming call: authenticated here, then run by the senders (it holds no thread)."""

        def handle(request: Any, context: grpc.ServicerContext, send: Callable[[Any], None]) -> None:
            try:
                caller = self._enter(method, access, metadata, request)
                self._take_slot()
            except HooklineError as error:
                _abort(context, error)
            except Exception as error:
                _abort_unexpected(context, method, error)
            finally:
                release_connection()
            try:
                run_in = contextvars.copy_context()
                run_in.run(_principal.set, caller)
                items = run_in.run(behavior, request, context)
                self._senders.start(items, run_in, context, send, self._free_slot, lambda e: _stream_status(method, e))
            except BaseException:
                self._free_slot()
                raise

        handle.experimental_non_blocking = True  # type: ignore[attr-defined]
        return handle

    def _request_stream(
        self, behavior: Callable, method: str, access: Access | None, metadata: dict[str, str]
    ) -> Callable:
        """A call whose requests stream in, answered with one message: the key is
        checked before the servicer runs, each request as it arrives."""

        def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            try:
                token = _principal.set(self._caller(method, access, metadata))
                try:
                    return behavior(_checked(requests), context)
                finally:
                    _principal.reset(token)
                    release_connection()
            except HooklineError as error:
                _abort(context, error)
            except Exception as error:
                _abort_unexpected(context, method, error)

        return handle

    def _bidi(self, behavior: Callable, method: str, access: Access | None, metadata: dict[str, str]) -> Callable:
        """A call whose requests and answers both stream, on a thread of the pool
        (so counted against the cap): checked as _request_stream's are."""

        def handle(requests: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                token = _principal.set(self._caller(method, access, metadata))
                try:
                    yield from behavior(_checked(requests), context)
                finally:
                    _principal.reset(token)
                    release_connection()
            except HooklineError as error:
                _abort(context, error)
            except Exception as error:
                _abort_unexpected(context, method, error)

        return self._counted(handle)


def _check_request(request: Any) -> None:
    """INVALID_ARGUMENT for a request that could not be decoded or holds a NUL character."""
    if isinstance(request, _Undecodable):
        raise InvalidArgument(
            "the request could not be decoded; note that JSON values may be nested at most 100 "
            f"levels deep in protobuf (and at most 32 levels in hookline): {request.error}"
        )
    nul = _nul_field(request)
    if nul:
        raise InvalidArgument.field(nul, "may not contain NUL (\\0) characters")


def _checked(requests: Iterator[Any]) -> Iterator[Any]:
    for request in requests:
        _check_request(request)
        yield request


def _stream_status(method: str, error: BaseException) -> grpc.Status:
    """The status a stream that raised `error` ends with."""
    if isinstance(error, HooklineError):
        return _status(error)
    fault = database_fault(error) if isinstance(error, Exception) else None
    if fault is not None:
        _faults.fault(f"{method} (and the streams like it)", error)
        return _status(fault)
    log.error("unexpected error in %s", method, exc_info=error)
    return rpc_status.to_status(status_pb2.Status(code=code_pb2.INTERNAL, message=_INTERNAL))

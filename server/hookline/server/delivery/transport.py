"""How webhook requests reach the wire: httpx on aiohttp, with the SSRF guard.

httpx's own connection pool is CPU-bound with many requests in flight, so the
worker's httpx client sends through the httpx-aiohttp transport. The guard sits
where aiohttp resolves names (a resolver given to its connector), so the addresses
checked are exactly the ones connected to, while the Host header and the TLS server
name stay the URL's host. aiohttp skips its resolver for literal addresses; those
are checked here before each request.

A request's total timeout counts the time its process could run: a process
stopped (or starved of CPU) while an answer came in reads that answer when it
runs again, rather than judging the request late by the wall clock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, cast

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from httpx_aiohttp import AiohttpTransport

from . import targets
from .targets import IPNetwork

AllowedNetworks = Callable[[], Sequence[IPNetwork]]

# A deadline's timer that fires this much late means the event loop could not
# run meanwhile (the process was stopped, or starved of CPU).
STALL_S = 0.25

# aiohttp errors as the httpx errors they amount to, most specific first.
_ERRORS: list[tuple[type[BaseException], type[httpx.TransportError]]] = [
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # also DNS and TLS failures
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # a malformed response
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientError, httpx.NetworkError),
]


class GuardedResolver(AbstractResolver):
    """Resolves with `base` and refuses the lot (TargetRefused) unless every
    address is allowed; the allow-list is read at each resolution."""

    def __init__(self, allowed: AllowedNetworks, base: AbstractResolver | None = None):
        self._allowed = allowed
        self._base = base if base is not None else ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._base.resolve(host, port, family)
        targets.check_resolved(host, [r["host"] for r in results], self._allowed())
        return results

    async def close(self) -> None:
        await self._base.close()


class GuardedTransport(httpx.AsyncBaseTransport):
    """The httpx-aiohttp transport over an aiohttp session of our own: guarded
    resolution, no DNS cache, no proxies from the environment, a total deadline per
    request (body included), and aiohttp's errors raised as httpx's.

    Create it on the event loop it will run on."""

    def __init__(
        self,
        *,
        allowed: AllowedNetworks,
        total_timeout_s: float,
        max_connections: int,
        base_resolver: AbstractResolver | None = None,
    ):
        self._allowed = allowed
        self._total_timeout_s = total_timeout_s
        self._resolver = GuardedResolver(allowed, base_resolver)
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            resolver=self._resolver,
            # Every new connection resolves (and is checked) afresh.
            use_dns_cache=False,
            ssl=httpx.create_ssl_context(trust_env=False),  # the CA bundle httpx would use
        )
        session = aiohttp.ClientSession(connector=connector, trust_env=False)
        self._inner = AiohttpTransport(client=session, trust_env=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        address = targets.check_literal(request.url.host, self._allowed())
        if address is not None and request.url.host != str(address):
            # aiohttp refuses legacy spellings (2130706433, 127.1): connect to the
            # address they mean; the Host header keeps the URL's spelling.
            request.url = request.url.copy_with(host=str(address))
        deadline = _Deadline(self._total_timeout_s)
        try:
            async with deadline.scope():
                response = await self._inner.handle_async_request(request)
        except Exception as error:
            translated = _translate(error, request, self._total_timeout_s)
            if translated is error:
                raise
            raise translated from error
        body = cast(httpx.AsyncByteStream, response.stream)  # an async transport's
        response.stream = _DeadlineStream(body, deadline, self._total_timeout_s, request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
        await self._resolver.close()


def _translate(error: Exception, request: httpx.Request, total_timeout_s: float) -> Exception:
    """`error` as an httpx error; a refusal passes as it is (the worker looks for
    one through any wrapping)."""
    if targets.refused_in(error) is not None:
        return error
    if isinstance(error, TimeoutError):
        return httpx.ReadTimeout(f"no complete response within {total_timeout_s:g} s", request=request)
    # httpx-aiohttp maps every aiohttp connection error to ConnectTimeout, which
    # would report a refused connection as a timeout: map from the cause instead.
    cause = error.__cause__ if isinstance(error, httpx.HTTPError) else error
    for aiohttp_type, httpx_type in _ERRORS:
        if isinstance(cause, aiohttp_type):
            return httpx_type(str(cause) or type(cause).__name__, request=request)
    return error


class _Deadline:
    """The end of a request's total timeout, counted in time its event loop could
    run: when the timer fires late because the loop could not run, the request
    is given that time back (at most its timeout once more in all), so an answer
    that arrived meanwhile is read rather than timed out."""

    def __init__(self, timeout_s: float):
        self.loop = asyncio.get_running_loop()
        self.end = self.loop.time() + timeout_s
        self._spare = timeout_s

    def scope(self) -> _DeadlineScope:
        """`async with deadline.scope():` raises TimeoutError at the deadline."""
        return _DeadlineScope(self)

    def extend(self) -> bool:
        """At the end: move it on by the time the loop could not run, if it lost any."""
        late = self.loop.time() - self.end
        if late < STALL_S or self._spare <= 0:
            return False
        given = min(late, self._spare)
        self._spare -= given
        self.end = self.loop.time() + given
        return True


class _DeadlineScope:
    __slots__ = ("_deadline", "_timeout", "_timer")

    def __init__(self, deadline: _Deadline):
        self._deadline = deadline
        self._timeout = asyncio.timeout(None)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()
        self._timer = self._deadline.loop.call_at(self._deadline.end, self._at_end)

    async def __aexit__(self, kind: Any, error: Any, traceback: Any) -> None:
        self._timer.cancel()
        await self._timeout.__aexit__(kind, error, traceback)

    def _at_end(self) -> None:
        deadline = self._deadline
        if deadline.extend():
            self._timer = deadline.loop.call_at(deadline.end, self._at_end)
        else:
            self._timeout.reschedule(deadline.loop.time())  # time is up: cancel now


class _DeadlineStream(httpx.AsyncByteStream):
    """A response body read under the request's total deadline, errors translated."""

    def __init__(
        self, inner: httpx.AsyncByteStream, deadline: _Deadline, total_timeout_s: float, request: httpx.Request
    ):
        self._inner = inner
        self._deadline = deadline
        self._total_timeout_s = total_timeout_s
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._inner.__aiter__()
        while True:
            try:
                async with self._deadline.scope():
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except Exception as error:
                translated = _translate(error, self._request, self._total_timeout_s)
                if translated is error:
                    raise
                raise translated from error
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()

"""How webhook requests reach the wire: httpx's request and response types over
an aiohttp session of our own, with the SSRF guard.

httpx's own connection pool is CPU-bound with many requests in flight, and
httpx.AsyncClient spends more CPU per request than the socket work itself on
machinery the worker does not use (redirects, cookies, auth, hooks), so the
worker hands an httpx.Request straight to this transport, which sends it with
aiohttp. The guard sits where aiohttp resolves names (a resolver given to its
connector), so the addresses checked are exactly the ones connected to, while the
Host header and the TLS server name stay the URL's host. aiohttp skips its
resolver for literal addresses; those are checked here before each request.

A request's total timeout counts the time its process could run: a process
stopped (or starved of CPU) while an answer came in reads that answer when it
runs again, rather than judging the request late by the wall clock."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from functools import lru_cache
from typing import Any

import aiohttp
import httpx
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from . import targets
from .targets import IPNetwork

AllowedNetworks = Callable[[], Sequence[IPNetwork]]

# A deadline's timer that fires this much late means the event loop could not
# run meanwhile (the process was stopped, or starved of CPU).
STALL_S = 0.25

# aiohttp errors as the httpx errors they amount to, most specific first (aiohttp's
# timeouts are also TimeoutErrors: they must match here before the deadline's do).
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
    """httpx requests sent by an aiohttp session: guarded resolution, no DNS cache,
    no proxies or cookies, no redirects followed, a connect timeout and a total
    deadline per request (body included), aiohttp's errors raised as httpx's.

    The timeouts are the transport's own: an httpx client's timeout settings do
    not reach it. A request's body is bytes (not a stream); the response body
    arrives as sent (httpx decodes it, as its Content-Encoding says). Create it on
    the event loop it will run on."""

    def __init__(
        self,
        *,
        allowed: AllowedNetworks,
        connect_timeout_s: float,
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
        self._session = aiohttp.ClientSession(
            connector=connector,
            trust_env=False,  # no proxy (nor netrc) from the environment
            # One session serves every webhook of every space: keep no cookie, so
            # none set by one receiver goes out with another webhook's message.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
            # The total deadline is ours (see _Deadline): aiohttp's would not give
            # back time the process could not run.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout_s),
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        address = targets.check_literal(url.host, self._allowed())
        if address is not None and url.host != str(address):
            # aiohttp refuses legacy spellings (2130706433, 127.1): connect to the
            # address they mean; the Host header keeps the URL's spelling.
            url = url.copy_with(host=str(address))
        deadline = _Deadline(self._total_timeout_s)
        try:
            async with deadline:
                response = await self._session.request(
                    request.method,
                    _aiohttp_url(str(url)),
                    headers=request.headers.multi_items(),
                    data=request.content or None,
                    allow_redirects=False,
                )
        except BaseException as error:
            deadline.close()
            translated = _translated(error, request, self._total_timeout_s)
            if translated is error:
                raise
            raise translated from error
        return httpx.Response(
            response.status,
            headers=response.raw_headers,
            stream=_Body(response, deadline, self._total_timeout_s, request),
            request=request,
        )

    async def aclose(self) -> None:
        await self._session.close()
        await self._resolver.close()


@lru_cache(maxsize=4096)
def _aiohttp_url(text: str) -> URL:
    """A webhook URL as aiohttp takes it, parsed once; httpx has encoded it already."""
    return URL(text, encoded=True)


def _translated(error: BaseException, request: httpx.Request, total_timeout_s: float) -> BaseException:
    """`error` as the httpx error it amounts to; a refusal passes as it is (the
    worker looks for one through any wrapping), as does anything unforeseen."""
    if targets.refused_in(error) is not None:
        return error
    for aiohttp_type, httpx_type in _ERRORS:
        if isinstance(error, aiohttp_type):
            return httpx_type(str(error) or type(error).__name__, request=request)
    if isinstance(error, TimeoutError):  # the total deadline's
        return httpx.ReadTimeout(f"no complete response within {total_timeout_s:g} s", request=request)
    return error


class _Deadline:
    """The end of a request's total timeout, counted in time its event loop could
    run: when the timer fires late because the loop could not run, the request
    is given that time back (at most its timeout once more in all), so an answer
    that arrived meanwhile is read rather than timed out.

    One timer per request; `async with deadline:` marks where the request waits
    (for its head, for each part of its body). At the end the timer cancels the
    task waiting there, and that block raises TimeoutError, as asyncio.timeout's
    would; a block entered after the end raises it at once. `close()` when done."""

    __slots__ = ("_loop", "_end", "_spare", "_timer", "_task", "_cancelling", "_cancelled", "expired")

    def __init__(self, timeout_s: float):
        self._loop = asyncio.get_running_loop()
        self._end = self._loop.time() + timeout_s
        self._spare = timeout_s
        self._timer = self._loop.call_at(self._end, self._at_end)
        self._task: asyncio.Task[Any] | None = None  # the one waiting in a block, if any
        self._cancelling = 0
        self._cancelled = False
        self.expired = False

    async def __aenter__(self) -> None:
        if self.expired:
            raise TimeoutError
        task = asyncio.current_task()
        assert task is not None, "a deadline is waited for inside a task"
        self._task, self._cancelling = task, task.cancelling()

    async def __aexit__(self, kind: Any, error: Any, traceback: Any) -> None:
        task, self._task = self._task, None
        if self._cancelled and task is not None:
            self._cancelled = False
            # Ours alone (no other cancellation came meanwhile): the time is up.
            if task.uncancel() <= self._cancelling and kind is asyncio.CancelledError:
                raise TimeoutError

    def close(self) -> None:
        self._timer.cancel()

    def _at_end(self) -> None:
        late = self._loop.time() - self._end
        if late >= STALL_S and self._spare > 0:  # the loop could not run: give that time back
            given = min(late, self._spare)
            self._spare -= given
            self._end = self._loop.time() + given
            self._timer = self._loop.call_at(self._end, self._at_end)
            return
        self.expired = True
        if self._task is not None:
            self._cancelled = True
            self._task.cancel()


class _Body(httpx.AsyncByteStream):
    """A response body read under the request's total deadline, errors translated;
    the connection goes back to the pool only after a body read to its end."""

    def __init__(
        self, response: aiohttp.ClientResponse, deadline: _Deadline, total_timeout_s: float, request: httpx.Request
    ):
        self._response = response
        self._deadline = deadline
        self._total_timeout_s = total_timeout_s
        self._request = request
        self._complete = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        while not content.at_eof():  # a short body is often whole with the head: no wait at all
            try:
                async with self._deadline:
                    chunk = await content.readany()
            except Exception as error:
                translated = _translated(error, self._request, self._total_timeout_s)
                if translated is error:
                    raise
                raise translated from error
            if chunk:
                yield chunk
        self._complete = True

    async def aclose(self) -> None:
        self._deadline.close()
        if self._complete:
            self._response.release()
        else:  # a body left unread (or cut at the capture cap) leaves the connection unusable
            self._response.close()

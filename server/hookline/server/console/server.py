"""The console's web server: aiohttp.web on a thread and event loop of its own,
the routes, and what every response gets — no page without a session, a CSRF
token checked on every POST, security headers, and error pages (never a
traceback) for whatever a person or a hostile page may send."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc
from aiohttp import web

from . import render
from .live import Live
from .pages import SESSION, BadInput, Pages
from .rpc import Api, Refused
from .sessions import SESSION_COOKIE, Sessions, same_token

log = logging.getLogger("hookline.console")

STATIC = Path(__file__).parent / "static"
# No inline script or style anywhere, no framing, nothing from elsewhere.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Reachable without a session: the sign-in form and the static files it uses.
_PUBLIC = ("/signin", "/static/", "/favicon.ico")

_STATUS_OF: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.NOT_FOUND: (404, "Not found"),
    grpc.StatusCode.INVALID_ARGUMENT: (400, "Bad request"),
    grpc.StatusCode.OUT_OF_RANGE: (400, "Bad request"),
    grpc.StatusCode.FAILED_PRECONDITION: (409, "Not possible now"),
    grpc.StatusCode.PERMISSION_DENIED: (403, "Not allowed"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (503, "Busy"),
    grpc.StatusCode.UNAVAILABLE: (503, "Unavailable"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "Too slow"),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_app(api: Api, sessions: Sessions) -> tuple[web.Application, Live]:
    templates = render.environment()
    pages = Pages(api, sessions, templates)
    live = Live(pages)

    def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
        return pages.page(request, "error.html", status=status, title=title, message=message)

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            if not request.path.startswith(_PUBLIC):
                session = sessions.get(request.cookies.get(SESSION_COOKIE))
                if session is None:
                    raise web.HTTPSeeOther("/signin")
                request[SESSION] = session
                if request.method == "POST":
                    form = await request.post()
                    if not same_token(str(form.get("csrf", "")), session.csrf):
                        return error_page(
                            request, 403, "Not allowed", "This form's CSRF token is missing or wrong; reload the page."
                        )
            return await handler(request)
        except Refused as refusal:
            if refusal.code == grpc.StatusCode.UNAUTHENTICATED:  # the key was revoked since sign-in
                if SESSION in request:
                    sessions.drop(request[SESSION].token)
                raise web.HTTPSeeOther("/signin") from None
            status, title = _STATUS_OF.get(refusal.code, (502, "hookline refused"))
            return error_page(request, status, title, refusal.message)
        except BadInput as error:
            return error_page(request, 400, "Bad request", str(error))
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return error_page(request, error.status, error.reason, error.text or error.reason)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("console error on %s %s", request.method, request.path)
            return error_page(request, 500, "Something went wrong", "internal error; the server log has the details")

    async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")

    async def home(request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther("/webhooks")

    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/", home)
    app.router.add_get("/signin", pages.signin_form)
    app.router.add_post("/signin", pages.signin)
    app.router.add_post("/signout", pages.signout)
    app.router.add_get("/webhooks", pages.webhooks)
    app.router.add_get("/webhooks/{ref}", pages.webhook)
    app.router.add_post("/webhooks/{ref}/enabled", pages.set_enabled)
    app.router.add_post("/webhooks/{ref}/test", pages.send_test)
    app.router.add_post("/webhooks/{ref}/recover", pages.recover)
    app.router.add_get("/deliveries/{id}", pages.delivery)
    app.router.add_post("/deliveries/{id}/retry", pages.retry)
    app.router.add_get("/jobs", pages.jobs)
    app.router.add_get("/jobs/{id}", pages.job)
    app.router.add_get("/events", pages.events)
    app.router.add_get("/live/deliveries", live.deliveries)
    app.router.add_static("/static/", STATIC)
    return app, live


class Console:
    """The console on `host:port`, calling the gRPC API at `target` (loopback)."""

    def __init__(self, host: str, port: int, target: str, sessions: Sessions | None = None):
        self.host, self.port, self.target = host, port, target
        self.sessions = sessions or Sessions()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="console", daemon=True)
        self._runner: web.AppRunner | None = None
        self._live: Live | None = None
        self._api: Api | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        """Bind and serve; OSError when the port cannot be had."""
        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            raise

    async def _start(self) -> None:
        self._api = Api(self.target)
        app, self._live = make_app(self._api, self.sessions)
        # Open live streams are ended at stop; a second covers requests in flight.
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            await self._api.close()
            raise
        self.port = self._runner.addresses[0][1]

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _stop(self) -> None:
        if self._live:
            self._live.close()
        if self._runner:
            await self._runner.cleanup()
        if self._api:
            await self._api.close()

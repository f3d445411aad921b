"""Who is signed in: sessions kept in the console's memory (a restart signs
everyone out), each with the API key it signed in with, its CSRF token and an
expiry. The browser holds only the session's random token, in an HttpOnly,
SameSite=Strict cookie; the API key never leaves the server."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

SESSION_COOKIE = "hookline_session"
# A sign-in form's CSRF token, before there is a session to hold one.
SIGNIN_COOKIE = "hookline_signin"
SESSION_TTL_S = 8 * 3600.0


@dataclass
class Session:
    token: str
    api_key: str
    key_id: str
    csrf: str
    expires: float  # time.monotonic()
    # Messages for the next page shown (an action's outcome, after its redirect).
    flashes: list[tuple[str, str]] = field(default_factory=list)

    def flash(self, kind: str, message: str) -> None:
        self.flashes.append((kind, message))

    def take_flashes(self) -> list[tuple[str, str]]:
        taken, self.flashes = self.flashes, []
        return taken


def same_token(given: str, expected: str) -> bool:
    """Constant-time comparison of a submitted token with the expected one."""
    return bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def key_id_of(api_key: str) -> str:
    """The public part of hl_<key id>_<secret>, to say who is signed in."""
    parts = api_key.split("_", 2)
    return parts[1] if len(parts) == 3 else "?"


class Sessions:
    def __init__(self, ttl_s: float = SESSION_TTL_S, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, api_key: str) -> Session:
        session = Session(
            token=secrets.token_urlsafe(32),
            api_key=api_key,
            key_id=key_id_of(api_key),
            csrf=secrets.token_urlsafe(32),
            expires=self._clock() + self.ttl_s,
        )
        with self._lock:
            self._drop_expired()
            self._sessions[session.token] = session
        return session

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self._lock:
            session = self._sessions.get(token)
            if session is None or session.expires <= self._clock():
                self._sessions.pop(token, None)
                return None
            return session

    def drop(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def _drop_expired(self) -> None:
        now = self._clock()
        for token in [t for t, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[token]

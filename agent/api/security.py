"""Who may use the local API: the API token, browser sessions, Host names, body sizes.

Invariants:
- Every API route needs either ``Authorization: Bearer <api_token>`` or a session cookie; a session
  is created only by presenting the token (login form) or a one-time code minted with the token (the
  tray's "Open status page"), so the token itself never travels in a URL.
- Session cookies are HttpOnly and SameSite=Strict; a state-changing request authenticated by cookie
  must also carry ``X-Possync-Request: 1`` (a header other sites cannot make a browser send).
- Requests whose Host is not a name of this machine are refused (DNS rebinding).
- Request bodies larger than the limit are refused with 413 before they are read whole.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException, Request

SESSION_COOKIE = "possync_session"
CSRF_HEADER = "x-possync-request"
SESSION_TTL_S = 12 * 3600
CODE_TTL_S = 60
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Sessions:
    """Browser sessions and one-time login codes.

    Sessions are kept as SHA-256 digests of their ids with an expiry (wall clock) and handed to
    ``save`` on every change, so a page left open survives an agent restart; one-time codes live
    only in memory.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        *,
        initial: dict[str, float] | None = None,
        save: Callable[[dict[str, float]], None] | None = None,
    ) -> None:
        """Start with ``initial`` sessions (digest -> expiry) and persist changes through ``save``."""
        self._clock = clock
        self._sessions: dict[str, float] = {k: float(v) for k, v in (initial or {}).items() if float(v) > clock()}
        self._codes: dict[str, float] = {}
        self._lock = threading.Lock()
        self._save = save

    def create(self) -> str:
        """Open a session; return its id."""
        sid = secrets.token_urlsafe(32)
        with self._lock:
            self._expire()
            self._sessions[_digest(sid)] = self._clock() + SESSION_TTL_S
            snapshot = dict(self._sessions)
        self._persist(snapshot)
        return sid

    def valid(self, sid: str | None) -> bool:
        """Return True if ``sid`` is a live session."""
        if not sid:
            return False
        with self._lock:
            expiry = self._sessions.get(_digest(sid))
            return expiry is not None and expiry > self._clock()

    def end(self, sid: str | None) -> None:
        """Close a session."""
        with self._lock:
            self._sessions.pop(_digest(sid or ""), None)
            snapshot = dict(self._sessions)
        self._persist(snapshot)

    def _persist(self, snapshot: dict[str, float]) -> None:
        if self._save is not None:
            self._save(snapshot)

    def mint_code(self) -> str:
        """Return a one-time code, valid for a minute, that can be exchanged for a session."""
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._expire()
            self._codes[code] = self._clock() + CODE_TTL_S
        return code

    def redeem(self, code: str) -> bool:
        """Use up a one-time code; True if it was valid."""
        with self._lock:
            expiry = self._codes.pop(code, None)
        return expiry is not None and expiry > self._clock()

    def _expire(self) -> None:
        now = self._clock()
        for store in (self._sessions, self._codes):
            for key in [k for k, v in store.items() if v <= now]:
                del store[key]


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class Guard:
    """The authentication dependency shared by every API route."""

    def __init__(self, token: str, sessions: Sessions) -> None:
        """Check requests against ``token`` and ``sessions``."""
        self.token = token
        self.sessions = sessions

    def token_ok(self, presented: str) -> bool:
        """Compare a presented token in constant time."""
        return secrets.compare_digest(presented.encode(), self.token.encode())

    def __call__(self, request: Request) -> None:
        """Raise 401 unless the request is authenticated (403 for a cookie POST without the header)."""
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and presented and self.token_ok(presented):
            return
        if self.sessions.valid(request.cookies.get(SESSION_COOKIE)):
            if request.method in UNSAFE_METHODS and request.headers.get(CSRF_HEADER) != "1":
                raise HTTPException(403, f"browser requests that change something must send {CSRF_HEADER}: 1")
            return
        raise HTTPException(401, "missing or wrong API token", headers={"WWW-Authenticate": "Bearer"})


def allowed_hosts(bind: str, extra: list[str]) -> list[str]:
    """Host names the API answers to: loopback names, the bind address, and configured names."""
    hosts = {"127.0.0.1", "localhost", "::1", "[::1]", *extra}
    if bind not in ("0.0.0.0", "::"):  # noqa: S104 - a wildcard bind is not a host name
        hosts.add(bind)
    return sorted(hosts)


ASGIApp = Callable[
    [MutableMapping[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]
]


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, counting as they stream."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        """Wrap ``app``."""
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Any]],
        send: Callable[[Any], Awaitable[None]],
    ) -> None:
        """Pass the request on, or answer 413."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _too_large(send, self.max_bytes)
            return
        # Read the body here (bounded), then replay it: the app never sees more than the limit.
        buffered: list[Any] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                buffered.append(message)
                break
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                await _too_large(send, self.max_bytes)
                return
            buffered.append(message)
            if not message.get("more_body", False):
                break

        async def replay() -> Any:
            return buffered.pop(0) if buffered else await receive()

        await self.app(scope, replay, send)


async def _too_large(send: Callable[[Any], Awaitable[None]], limit: int) -> None:
    body = f'{{"code":"TOO_LARGE","message":"request body over {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})

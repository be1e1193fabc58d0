"""Tryton's JSON-RPC over one httpx client: sessions, Tryton's JSON types, and what each failure means.

Invariants:
- Every call ends in a result or one of three exceptions: ``RpcTransient`` (try again later: network,
  timeouts, 429/5xx, locked or busy database, concurrent edits), ``RpcAuth`` (the user or password
  is refused) or ``RpcRefused`` (Tryton refused the operation itself: a ``UserError`` or
  ``UserWarning`` with Tryton's own words). Nothing else escapes for what the server does.
- The password is read through the secret lookup at login and never logged. A session Tryton no
  longer accepts (expired, server restarted) is replaced by a fresh login once, transparently.
- Every call carries the user's company context and ``_skip_warnings`` so Tryton's interactive
  warnings cannot block an unattended agent.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import threading
from collections.abc import Callable
from decimal import Decimal
from http import HTTPStatus
from typing import Any

import httpx

from wms_client._common import describe, redirect_message
from wms_client.outcomes import parse_retry_after

PERMANENT_ERRORS = frozenset({"UserError", "UserWarning"})
TRANSIENT_ERRORS = frozenset({"ConcurrencyException", "TimeOutException", "RateLimitException"})


class RpcTransient(RuntimeError):
    """Tryton could not be reached or could not answer now; the same call may work later."""

    def __init__(self, message: str, retry_after: float | None = None, status: int | None = None) -> None:
        """Carry the server's requested delay and HTTP status when known."""
        super().__init__(message)
        self.retry_after = retry_after
        self.status = status


class RpcAuth(RuntimeError):
    """Tryton refused the user name or password."""


class RpcRefused(RuntimeError):
    """Tryton refused the operation (``UserError``/``UserWarning``); the message is Tryton's."""


def encode(value: Any) -> Any:
    """``json.dumps`` default: Tryton's JSON forms of dates, datetimes and Decimals."""
    if isinstance(value, dt.datetime):
        return {
            "__class__": "datetime",
            "year": value.year,
            "month": value.month,
            "day": value.day,
            "hour": value.hour,
            "minute": value.minute,
            "second": value.second,
            "microsecond": value.microsecond,
        }
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    raise TypeError(f"cannot send {type(value).__name__} to Tryton")


def decode(obj: dict[str, Any]) -> Any:
    """``json.loads`` object hook: Tryton's typed objects back to Python values."""
    kind = obj.get("__class__")
    if kind == "Decimal":
        return Decimal(str(obj["decimal"]))
    if kind == "date":
        return dt.date(obj["year"], obj["month"], obj["day"])
    if kind == "datetime":
        return dt.datetime(
            obj["year"], obj["month"], obj["day"], obj["hour"], obj["minute"], obj["second"], obj.get("microsecond", 0)
        )
    if kind == "bytes":
        return base64.b64decode(obj["base64"])
    return obj


class TrytonRpc:
    """A logged-in JSON-RPC session to one Tryton database."""

    def __init__(self, http: httpx.Client, database: str, user: str, password: Callable[[], str]) -> None:
        """Bind to a database; nothing is sent until the first call."""
        self._http = http
        self._path = f"/{database}/rpc/"
        self._user = user
        self._password = password
        self._auth: str | None = None
        self._context: dict[str, Any] = {}
        self._ids = 0
        self._lock = threading.Lock()

    @property
    def context(self) -> dict[str, Any]:
        """The context every model call carries (company, language, ``_skip_warnings``)."""
        if self._auth is None:
            self.login()
        return dict(self._context)

    def login(self) -> None:
        """Open a session with the user's password and load the user's company context."""
        self._auth = None
        try:
            answer = self._post("common.db.login", [self._user, {"password": self._password()}, "en"], None)
        except RpcRefused as exc:  # Tryton answers a wrong password with LoginException / 401
            raise RpcAuth(f"Tryton refused the login of user {self._user!r}: {exc}") from exc
        try:
            user_id, session = int(answer[0]), str(answer[1])
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            raise RpcTransient(f"Tryton answered the login with something unexpected: {answer!r:.200}") from exc
        token = base64.b64encode(f"{self._user}:{user_id}:{session}".encode()).decode()
        self._auth = f"Session {token}"
        preferences = self._post("model.res.user.get_preferences", [True, {}], self._auth)
        if not isinstance(preferences, dict):
            raise RpcTransient("Tryton answered the user preferences with something unexpected")
        self._context = {
            key: preferences[key] for key in ("company", "companies", "language") if preferences.get(key) is not None
        }
        self._context["_skip_warnings"] = True

    def logout(self) -> None:
        """Forget the session (the next call logs in again)."""
        self._auth = None

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method`` with ``params``; log in first, and once more if the session was dropped."""
        with self._lock:
            if self._auth is None:
                self.login()
            try:
                return self._post(method, list(params), self._auth)
            except _SessionRejected:
                self.login()
                try:
                    return self._post(method, list(params), self._auth)
                except _SessionRejected as exc:
                    raise RpcAuth(f"Tryton refused a fresh session of user {self._user!r} (HTTP {exc})") from exc

    def model(self, model: str, method: str, *params: Any) -> Any:
        """Call ``model.<model>.<method>(*params, context)`` with the session's context."""
        return self.call(f"model.{model}.{method}", *params, self.context)

    def _post(self, method: str, params: list[Any], auth: str | None) -> Any:
        self._ids += 1
        body = json.dumps({"id": self._ids, "method": method, "params": params}, default=encode, separators=(",", ":"))
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = auth
        try:
            response = self._http.post(self._path, content=body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            raise RpcTransient(f"Tryton not reachable: {describe(exc)}") from exc
        status = response.status_code
        if status == HTTPStatus.UNAUTHORIZED:
            if method == "common.db.login":
                raise RpcAuth(f"Tryton refused the login of user {self._user!r} (HTTP {status})")
            raise _SessionRejected(str(status))
        if status == HTTPStatus.FORBIDDEN:  # Tryton's answer for a method it does not expose over RPC
            if method == "common.db.login":
                raise RpcAuth(f"Tryton does not allow password logins for user {self._user!r} (HTTP 403)")
            raise RpcRefused(f"Tryton does not allow {method} over RPC (HTTP 403)")
        if status == HTTPStatus.NOT_FOUND:
            raise RpcTransient(f"Tryton has no database at {self._path} (HTTP 404); check wms.url and wms.database")
        if 300 <= status < 400:
            raise RpcTransient(redirect_message(response), status=status)
        if status != HTTPStatus.OK:
            text = response.text.strip().replace("\n", " ")[:300] or response.reason_phrase
            raise RpcTransient(
                f"Tryton answered HTTP {status}: {text}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                status=status,
            )
        try:
            payload = json.loads(response.content, object_hook=decode)
        except ValueError as exc:
            raise RpcTransient("Tryton answered with a body that is not JSON") from exc
        if not isinstance(payload, dict):
            raise RpcTransient("Tryton answered with something that is not a JSON-RPC response")
        if "error" in payload and payload["error"] is not None:
            raise _classify(payload["error"])
        return payload.get("result")


class _SessionRejected(RuntimeError):
    """The session was refused (401): log in again."""


def _classify(error: Any) -> RuntimeError:
    """Turn a JSON-RPC ``error`` member into the exception that says what to do."""
    name = error[0] if isinstance(error, list | tuple) and error else error
    args = error[1] if isinstance(error, list | tuple) and len(error) > 1 else None
    if name in PERMANENT_ERRORS:
        words = args[0] if isinstance(args, list | tuple) and args else args
        detail = args[1] if isinstance(args, list | tuple) and len(args) > 1 and args[1] else ""
        text = " ".join(str(part) for part in (words, detail) if part)
        return RpcRefused(text.strip()[:500] or str(name))
    if name == "LoginException":
        return RpcRefused(f"Tryton asks for more login information ({args!r:.100})")
    if name in TRANSIENT_ERRORS:
        return RpcTransient(f"Tryton is busy ({name}); trying again later")
    # Anything else is an exception inside Tryton (for example "database is locked"): transient.
    return RpcTransient(f"Tryton failed while handling the request: {str(name)[:300]}")

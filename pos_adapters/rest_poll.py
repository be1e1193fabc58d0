"""``rest_poll``: the agent polls a POS REST API for transactions, resuming from a stored cursor.

Each record the API returns becomes POS transaction JSON (DESIGN.md), through either a field mapping
in the config or a preset (``rest_presets``), and then goes through the shared parser
(``transactions``): one validation and mapping path for every source.

Invariants:
- The cursor is stored in the same transaction as the movements of the page that moves it, so a
  restart resumes exactly where the last durable page left off; re-read records get the same event
  ids and change nothing, so resuming too early is harmless and nothing is ever skipped.
- ``updated_since`` mode asks from the stored high-water mark minus ``overlap`` and advances the mark
  (never past the poll's own start time) only when a whole poll (all pages, or ``max_pages``) is
  stored: records that change, move between pages or arrive late are read again rather than missed.
  ``page`` mode stores the API's opaque cursor after each page.
- Credentials come from secret references and are only ever sent to the configured host: a "next
  page" link to another host is refused.
- A POS that is down, slow, throttling (429 + Retry-After) or refusing credentials is reported in the
  source's health in words and tried again; one malformed record becomes an exception with its raw
  JSON while the others are captured.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from agent.domain import CaptureIssue, Cursor, check_secret_ref, make_issue_id, parse_duration, parse_retry_after
from pos_adapters.base import Batch, BatchSink, CaptureRefused, SourceContext, SourceHealth, SourceSettings, register
from pos_adapters.rest_presets import PRESETS, Preset, get_path
from pos_adapters.transactions import ParsedTransactions, TransactionsInvalid, parse_transactions

log = logging.getLogger("possync.source.rest_poll")
Duration = Annotated[float, BeforeValidator(parse_duration)]
SecretRef = Annotated[str, AfterValidator(check_secret_ref)]
CURSOR_KEY = "poll"
MAX_RETRY_AFTER_S = 300.0
MAX_RESPONSE_BYTES = 32 * 1024 * 1024


class AuthSettings(BaseModel):
    """How to authenticate to the POS API (secrets are references, never values)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["none", "bearer", "basic", "header"] = "none"
    token: SecretRef | None = None
    username: str | None = None
    password: SecretRef | None = None
    header: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> AuthSettings:
        if self.type in ("bearer", "header") and not self.token:
            raise ValueError(f"auth type {self.type!r} needs 'token' (a secret reference)")
        if self.type == "header" and not self.header:
            raise ValueError("auth type 'header' needs 'header', the header's name (e.g. X-Api-Key)")
        if self.type == "basic" and not (self.username and self.password):
            raise ValueError("auth type 'basic' needs 'username' and 'password' (a secret reference)")
        return self


class RestPollSettings(SourceSettings):
    """``[[sources]]`` with ``kind = "rest_poll"``."""

    kind: Literal["rest_poll"] = "rest_poll"
    url: str = Field(pattern=r"^https?://[^\s/]+.*$")
    preset: str | None = None
    every: Duration = 60.0
    timeout_s: float = Field(15.0, gt=0, le=300)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    cursor: Literal["updated_since", "page"] | None = None
    since_param: str | None = None
    since_format: Literal["iso", "epoch", "epoch_ms"] = "iso"
    overlap: Duration = 300.0
    initial_lookback: Duration = 86400.0
    cursor_param: str | None = None
    next_cursor: str | None = None
    page_size_param: str | None = None
    page_size: int = Field(100, ge=1, le=10_000)
    records: str | None = None
    updated_field: str | None = None
    max_pages: int = Field(1000, ge=1)
    params: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, str] = Field(default_factory=dict)
    fields: dict[str, str] = Field(default_factory=dict)
    line_fields: dict[str, str] = Field(default_factory=dict)
    kinds: dict[str, str] = Field(default_factory=dict)
    default_kind: str = "sale"
    location_id: str | None = None
    verify_tls: bool = True

    @model_validator(mode="after")
    def _preset_or_mapping(self) -> RestPollSettings:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"preset {self.preset!r} is not known (available: {', '.join(sorted(PRESETS))})")
        if self.preset is None:
            missing = [f for f in ("transaction_id", "occurred_at", "lines") if f not in self.fields]
            missing += [f"line_fields.{f}" for f in ("item", "quantity") if f not in self.line_fields]
            if missing:
                raise ValueError(f"without a preset, map {', '.join(missing)} to the API's JSON fields")
        return self


@dataclass(frozen=True, slots=True)
class Plan:
    """The effective polling plan: the settings with the preset's defaults filled in."""

    cursor: str
    since_param: str
    cursor_param: str
    next_cursor: str | None
    page_size_param: str | None
    records: str
    updated_field: str
    params: dict[str, str]


def plan_for(settings: RestPollSettings, preset: Preset | None) -> Plan:
    """Merge the preset's defaults under the explicit settings."""
    defaults = preset.defaults if preset else {}

    def pick(name: str, fallback: str | None) -> Any:
        explicit = getattr(settings, name)
        return explicit if explicit is not None else defaults.get(name, fallback)

    return Plan(
        cursor=pick("cursor", "updated_since"),
        since_param=pick("since_param", "updated_since"),
        cursor_param=pick("cursor_param", "cursor"),
        next_cursor=pick("next_cursor", None),
        page_size_param=pick("page_size_param", "limit"),
        records=pick("records", ""),
        updated_field=pick("updated_field", "updated_at"),
        params={**dict(defaults.get("params", {})), **settings.params},
    )


class PollFailed(RuntimeError):
    """A poll stopped early; the message says why in words. Nothing was skipped."""


class RestPollSource:
    """Polls a POS REST API every ``every`` seconds."""

    def __init__(self, settings: RestPollSettings, ctx: SourceContext) -> None:
        """Prepare the plan; secrets are read when polling starts."""
        self.name = settings.name
        self.settings = settings
        self.ctx = ctx
        self.health = SourceHealth()
        self.preset = PRESETS.get(settings.preset) if settings.preset else None
        self.plan = plan_for(settings, self.preset)
        self.host = urlsplit(settings.url).netloc
        self._stop = threading.Event()
        self._wake = threading.Event()
        self.polls = 0

    def wake(self) -> None:
        """Poll now."""
        self._wake.set()

    def run(self, sink: BatchSink, stop: threading.Event) -> None:
        """Poll until ``stop`` is set."""
        with httpx.Client(
            timeout=self.settings.timeout_s,
            follow_redirects=False,
            verify=self.settings.verify_tls,
            headers={"User-Agent": "possync-agent", "Accept": "application/json", **self.settings.headers},
        ) as http:
            while not stop.is_set():
                self.poll_once(http, sink, stop)
                self._wake.wait(timeout=self.settings.every)
                self._wake.clear()

    def poll_once(self, http: httpx.Client, sink: BatchSink, stop: threading.Event) -> None:
        """Read every new page once; report problems in the source's health, never raise."""
        try:
            captured = self._poll(http, sink, stop)
        except PollFailed as exc:
            self._failed(str(exc))
            return
        except CaptureRefused as exc:
            self._failed(f"could not store what the POS sent (will ask again): {exc}")
            return
        self.polls += 1
        if self.health.state != "ok":
            log.info("%s: POS API polled successfully again", self.name)
        self.health.state, self.health.last_error = "ok", None
        if captured:
            self.health.last_capture_at = time.time()
            self.health.captured += captured

    def _failed(self, message: str) -> None:
        if self.health.last_error != message:
            log.warning("%s: %s", self.name, message)
        self.health.state, self.health.last_error = "error", message

    # -- one poll ----------------------------------------------------------------------------

    def _poll(self, http: httpx.Client, sink: BatchSink, stop: threading.Event) -> int:
        self._stop = stop  # a 429 wait must not hold up shutdown
        stored = sink.cursor(CURSOR_KEY) or {}
        if self.plan.cursor == "page":
            return self._poll_pages(http, sink, stop, stored)
        return self._poll_since(http, sink, stop, stored)

    def _poll_since(self, http: httpx.Client, sink: BatchSink, stop: threading.Event, stored: Mapping[str, Any]) -> int:
        now = datetime.now(UTC)
        since = _parse_time(stored.get("since")) or now - timedelta(seconds=self.settings.initial_lookback)
        ask_from = since - timedelta(seconds=self.settings.overlap)
        params = {**self.plan.params, self.plan.since_param: self._format_time(ask_from)}
        if self.plan.page_size_param:
            params[self.plan.page_size_param] = str(self.settings.page_size)
        high = since
        captured = 0
        request: tuple[str, dict[str, str] | None] | None = (self.settings.url, params)
        for page in range(self.settings.max_pages):
            if request is None or stop.is_set():
                break
            body, next_request = self._fetch(http, *request)
            records = self._records(body)
            captured_before = self._captured_check(sink)
            for record in records:
                updated = _parse_time(get_path(record, self.plan.updated_field))
                if updated is not None and updated > high:
                    # Never past this poll's start: a record stamped in the future (a POS clock that
                    # runs ahead, a bad date) would otherwise make later records look already read.
                    high = min(updated, now)
            last = next_request is None or page == self.settings.max_pages - 1
            if next_request is not None and page == self.settings.max_pages - 1:
                log.warning(
                    "%s: poll stopped after max_pages = %d with more pages waiting; the rest is read from "
                    "the newest record stored (the API must list records oldest-updated first)",
                    self.name,
                    self.settings.max_pages,
                )
            # The mark moves only with the last page: an interrupted poll is read again from the old mark.
            value = {"since": (high if last else since).isoformat()}
            captured += self._submit(sink, records, Cursor(CURSOR_KEY, value), captured_before)
            request = next_request
        return captured

    def _poll_pages(self, http: httpx.Client, sink: BatchSink, stop: threading.Event, stored: Mapping[str, Any]) -> int:
        params = dict(self.plan.params)
        linked = not self.plan.next_cursor  # the API names its next page in a Link header: the cursor is a URL
        if stored.get("cursor") and not linked:
            params[self.plan.cursor_param] = str(stored["cursor"])
        if self.plan.page_size_param:
            params[self.plan.page_size_param] = str(self.settings.page_size)
        captured = 0
        request: tuple[str, dict[str, str] | None] | None = (self.settings.url, params)
        if stored.get("cursor") and linked:
            request = (str(stored["cursor"]), None)  # _fetch still refuses any host but the configured one
        position = stored.get("cursor")
        for _ in range(self.settings.max_pages):
            if request is None or stop.is_set():
                break
            body, next_request = self._fetch(http, *request)
            position = self._next_token(body, next_request) or position
            records = self._records(body)
            captured += self._submit(
                sink, records, Cursor(CURSOR_KEY, {"cursor": position}), self._captured_check(sink)
            )
            request = next_request
        return captured

    @staticmethod
    def _captured_check(sink: BatchSink) -> Callable[[str], bool]:
        return lambda pos_transaction_id: bool(sink.movements_of(pos_transaction_id))

    def _submit(self, sink: BatchSink, records: list[Any], cursor: Cursor, captured: Callable[[str], bool]) -> int:
        result = ParsedTransactions()
        for record in records:
            self.convert(record, captured, result)
        stored = sink.submit(Batch(movements=result.movements, issues=result.issues, voids=result.voids, cursor=cursor))
        return len(stored.new)

    def convert(self, record: Any, captured: Callable[[str], bool], into: ParsedTransactions) -> None:
        """Turn one API record into transactions and parse them (a bad record becomes an issue).

        ``captured`` tells whether a POS transaction is already stored (a cancelled order reverses
        what was captured; one never captured moves nothing).
        """
        ident = str(
            get_path(record, self.preset.id_field if self.preset else self.settings.fields["transaction_id"]) or "?"
        )
        ref = f"{self.name} record {ident}"
        try:
            if self.preset:
                documents = self.preset.convert(record, self.settings, captured)
            else:
                documents = map_record(record, self.settings, captured)
            for document in documents:
                parsed = parse_transactions(
                    document, self.ctx, source=self.name, source_ref=f"{ref} ({document.get('transaction_id')})"
                )
                into.movements += parsed.movements
                into.voids += parsed.voids
                into.issues += parsed.issues
        except (TransactionsInvalid, KeyError, TypeError, ValueError) as exc:
            into.issues.append(
                CaptureIssue(
                    issue_id=make_issue_id(self.name, ref),
                    source=self.name,
                    source_ref=ref,
                    code="BAD_RECORD",
                    message=f"the POS API record {ident} could not be read: {exc}",
                    pos_transaction_id=ident,
                    raw=json.dumps(record, default=str)[:4000],
                )
            )

    # -- HTTP --------------------------------------------------------------------------------

    def _fetch(
        self, http: httpx.Client, url: str, params: dict[str, str] | None
    ) -> tuple[Any, tuple[str, dict[str, str] | None] | None]:
        if urlsplit(url).netloc != self.host:
            raise PollFailed(
                f"the POS API pointed the next page at {urlsplit(url).netloc}; credentials only go to {self.host}"
            )
        for _attempt in range(5):
            try:
                response = http.get(url, params=params, headers=self._auth_headers())
            except httpx.HTTPError as exc:
                raise PollFailed(f"POS API not reachable: {type(exc).__name__}: {exc}") from None
            if response.status_code == 429:
                delay = min(parse_retry_after(response.headers.get("retry-after")) or 5.0, MAX_RETRY_AFTER_S)
                log.info("%s: POS API asks to slow down; waiting %.1f s", self.name, delay)
                if self._stop.wait(delay):
                    raise PollFailed("stopping while the POS API asked to slow down; the page is read next time")
                continue
            if response.status_code in (401, 403):
                raise PollFailed(f"the POS API refused possync's credentials (HTTP {response.status_code})")
            if response.status_code != 200:
                raise PollFailed(f"the POS API answered HTTP {response.status_code}: {response.text[:200]}")
            if len(response.content) > MAX_RESPONSE_BYTES:
                raise PollFailed(f"the POS API sent {len(response.content)} bytes in one page; lower page_size")
            try:
                body = json.loads(response.content, parse_float=Decimal)
            except ValueError:
                raise PollFailed("the POS API answered with something that is not JSON") from None
            return body, self._next_request(body, response, params)
        raise PollFailed("the POS API kept answering 429 (too many requests); trying again next poll")

    def _next_request(
        self, body: Any, response: httpx.Response, params: dict[str, str] | None
    ) -> tuple[str, dict[str, str] | None] | None:
        if self.plan.next_cursor:
            token = get_path(body, self.plan.next_cursor)
            if not token:
                return None
            return self.settings.url, {**(params or {}), self.plan.cursor_param: str(token)}
        link = response.links.get("next", {}).get("url")
        return (str(link), None) if link else None

    def _next_token(self, body: Any, next_request: tuple[str, dict[str, str] | None] | None) -> str | None:
        if self.plan.next_cursor:
            token = get_path(body, self.plan.next_cursor)
            return str(token) if token else None
        return next_request[0] if next_request else None

    def _records(self, body: Any) -> list[Any]:
        records = get_path(body, self.plan.records) if self.plan.records else body
        if not isinstance(records, list):
            raise PollFailed(f"the POS API answer has no list at {self.plan.records or 'the top level'!r}")
        return records

    def _auth_headers(self) -> dict[str, str]:
        auth = self.settings.auth
        if auth.type == "none":
            return {}
        secret = self._secret(auth.password if auth.type == "basic" else auth.token)
        if auth.type == "bearer":
            return {"Authorization": f"Bearer {secret}"}
        if auth.type == "header":
            return {str(auth.header): secret}
        pair = base64.b64encode(f"{auth.username}:{secret}".encode()).decode()
        return {"Authorization": f"Basic {pair}"}

    def _secret(self, ref: str | None) -> str:
        if ref is None or self.ctx.secrets is None:
            raise PollFailed("the POS API credentials cannot be read in this process")
        try:
            return self.ctx.secrets(ref)
        except Exception as exc:  # a missing secret is reported in the status, not a crash
            raise PollFailed(f"cannot read the POS API credentials: {exc}") from None

    def _format_time(self, moment: datetime) -> str:
        if self.settings.since_format == "epoch":
            return str(int(moment.timestamp()))
        if self.settings.since_format == "epoch_ms":
            return str(int(moment.timestamp() * 1000))
        return moment.isoformat(timespec="seconds")


def map_record(record: Any, settings: RestPollSettings, captured: Any) -> list[dict[str, Any]]:
    """Turn one API record into POS transaction JSON with the configured field mapping."""
    fields = settings.fields
    txn_id = str(get_path(record, fields["transaction_id"]))
    cancelled = bool(get_path(record, fields["cancelled"])) if "cancelled" in fields else False
    if cancelled:
        if not captured(txn_id):
            return []
        return [
            {
                "transaction_id": f"{txn_id}-cancelled",
                "occurred_at": get_path(record, fields["occurred_at"]),
                "kind": "post_void",
                "voids": {"transaction_id": txn_id},
            }
        ]
    raw_kind = get_path(record, fields["kind"]) if "kind" in fields else None
    kind = settings.kinds.get(str(raw_kind), str(raw_kind)) if raw_kind is not None else settings.default_kind
    document: dict[str, Any] = {"transaction_id": txn_id, "kind": kind, "lines": []}
    for target in ("occurred_at", "terminal_id", "business_day", "counterpart_location", "currency"):
        if target in fields:
            document[target] = get_path(record, fields[target])
    lines = get_path(record, fields["lines"]) or []
    if not isinstance(lines, list):
        raise ValueError(f"{fields['lines']!r} is not a list")
    for position, line in enumerate(lines, start=1):
        entry = {target: get_path(line, path) for target, path in settings.line_fields.items()}
        entry.setdefault("line_no", position)
        document["lines"].append({k: v for k, v in entry.items() if v is not None})
    return [document]


def _parse_time(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, int | float | Decimal):
        seconds = float(value) / (1000 if float(value) > 1e11 else 1)
        return datetime.fromtimestamp(seconds, UTC)
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def build(settings: RestPollSettings, ctx: SourceContext) -> RestPollSource:
    """Build a rest_poll source (the factory registered for ``kind = "rest_poll"``)."""
    return RestPollSource(settings, ctx)


def replay(settings: RestPollSettings, ctx: SourceContext, path: Path) -> Iterator[Batch]:
    """Replay recorded API responses (a JSON file, or JSON lines of responses), page by page."""
    source = RestPollSource(settings, ctx)
    text = path.read_text(encoding="utf-8-sig")
    pages = [text] if path.suffix == ".json" else [line for line in text.splitlines() if line.strip()]
    for page in pages:
        result = ParsedTransactions()
        for record in source._records(json.loads(page, parse_float=Decimal)):
            source.convert(record, lambda _txn: False, result)  # a replay starts from an empty outbox
        yield Batch(movements=result.movements, issues=result.issues, voids=result.voids)


register("rest_poll", RestPollSettings, build, replay)

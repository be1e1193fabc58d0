"""Load and validate ``possync.toml``.

Invariants:
- Validation is pure: no files besides the config itself, no network, no keyring. Secrets stay
  as references (``keyring:…``, ``env:…``, ``file:…``) until the runtime resolves them.
- Every section is a typed model with unknown keys rejected; sources and the WMS are chosen by
  ``kind`` from their registries, so a new kind brings its own keys.
- Every mistake is reported at once, each with the file, the line and the key, and the agent does
  not start.
- Relative paths are relative to the folder of the config file, not the working directory.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from agent.domain import check_secret_ref, parse_duration
from agent.kinds import load_kinds
from outbox.stock import FIELDS as STOCK_FIELDS
from pos_adapters.base import REGISTRY as SOURCE_KINDS
from pos_adapters.base import SourceSettings
from wms_client.base import REGISTRY as WMS_KINDS
from wms_client.possync_http import WmsSettings

load_kinds()

Duration = Annotated[float, BeforeValidator(parse_duration)]
SecretRef = Annotated[str, AfterValidator(check_secret_ref)]
Loc = tuple[str | int, ...]


class AgentSettings(BaseModel):
    """``[agent]``: who this store is and where the agent keeps its data."""

    model_config = ConfigDict(extra="forbid")

    store_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    timezone: str = "UTC"
    data_dir: str | None = None
    location: str | None = None
    api_port: int = Field(8765, ge=0, le=65535)
    api_bind: str = "127.0.0.1"
    api_token: SecretRef | None = None
    api_allowed_hosts: list[str] = Field(default_factory=list)
    api_max_body_kb: int = Field(1024, ge=1, le=65536)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone name (for example 'America/Chicago')") from None
        return value


class SyncSettings(BaseModel):
    """``[sync]``: delivery promises and housekeeping."""

    model_config = ConfigDict(extra="forbid")

    sla_s: float = Field(60.0, gt=0)
    offline_alert_after: Duration = 900.0
    retention_days: float = Field(30.0, ge=1)
    max_retry_delay: Duration = 300.0
    disk_min_free_mb: float = Field(500.0, ge=0)


class StockSettings(BaseModel):
    """``[stock]``: the CSV export of the store stock view that a POS imports."""

    model_config = ConfigDict(extra="forbid")

    export_dir: str | None = None
    export_file: str = Field("stock.csv", pattern=r"^[^/\\]+$")
    export_columns: list[str] = Field(
        default_factory=lambda: ["sku", "location", "effective_on_hand", "allocated", "available", "snapshot_as_of"],
        min_length=1,
    )
    export_every: Duration = 300.0

    @field_validator("export_columns")
    @classmethod
    def _known_columns(cls, value: list[str]) -> list[str]:
        unknown = [c for c in value if c not in STOCK_FIELDS]
        if unknown:
            raise ValueError(f"unknown column(s) {', '.join(unknown)} (available: {', '.join(STOCK_FIELDS)})")
        return value


class ReconcileSettings(BaseModel):
    """``[reconcile]``: the daily reconciliation report and when drift turns the tray red."""

    model_config = ConfigDict(extra="forbid")

    at: str = Field("02:30", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    report_dir: str | None = None
    drift_threshold: int = Field(0, ge=0)


@dataclass(frozen=True)
class Config:
    """A validated configuration with its paths resolved."""

    path: Path
    agent: AgentSettings
    wms: WmsSettings
    sync: SyncSettings
    sources: list[SourceSettings]
    stock: StockSettings = field(default_factory=lambda: StockSettings.model_validate({}))
    reconcile: ReconcileSettings = field(default_factory=lambda: ReconcileSettings.model_validate({}))

    @property
    def base_dir(self) -> Path:
        """The folder relative paths in the file are resolved against."""
        return self.path.parent

    @property
    def data_dir(self) -> Path:
        """Where the outbox, logs and other state live."""
        if self.agent.data_dir:
            return (self.base_dir / self.agent.data_dir).resolve()
        return platformdirs.user_data_path("possync", appauthor=False)

    @property
    def outbox_path(self) -> Path:
        """The outbox SQLite file."""
        return self.data_dir / "outbox.sqlite"

    @property
    def export_path(self) -> Path | None:
        """Where the stock CSV export is written, or None when the export is off."""
        if not self.stock.export_dir:
            return None
        return (self.base_dir / self.stock.export_dir).resolve() / self.stock.export_file

    @property
    def report_dir(self) -> Path:
        """Where reconciliation reports are written."""
        if self.reconcile.report_dir:
            return (self.base_dir / self.reconcile.report_dir).resolve()
        return self.data_dir / "reports"

    @property
    def location(self) -> str:
        """The store's stock location in the WMS (defaults to the store id)."""
        return self.agent.location or self.agent.store_id


@dataclass(frozen=True, slots=True)
class Problem:
    """One mistake in the config file."""

    loc: Loc
    message: str


class ConfigError(ValueError):
    """The config file has mistakes; ``str()`` lists each with file, line and key."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        """Keep the formatted problems."""
        self.path = path
        self.problems = problems
        super().__init__("\n".join(problems))


def load_config(path: Path | str) -> Config:
    """Read and validate a config file; raise ``ConfigError`` describing every mistake."""
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ConfigError(path, [f"{path}: cannot read the config file: {exc.strerror or exc}"]) from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = match.group(1) if match else "?"
        raise ConfigError(path, [f"{path}:{line}: not valid TOML: {exc}"]) from None
    return validate(raw, path, text)


def validate(raw: dict[str, Any], path: Path, text: str = "") -> Config:
    """Validate an already parsed config (pure); raise ``ConfigError`` on mistakes."""
    problems: list[Problem] = []
    for key in raw:
        if key not in ("agent", "wms", "sync", "sources", "stock", "reconcile"):
            problems.append(Problem((key,), "unknown section (expected agent, wms, sync, sources, stock, reconcile)"))
    agent = _section(AgentSettings, raw.get("agent"), ("agent",), problems, required=True)
    sync = _section(SyncSettings, raw.get("sync", {}), ("sync",), problems)
    stock = _section(StockSettings, raw.get("stock", {}), ("stock",), problems)
    reconcile = _section(ReconcileSettings, raw.get("reconcile", {}), ("reconcile",), problems)
    wms_raw = raw.get("wms")
    wms: BaseModel | None = None
    if not isinstance(wms_raw, dict):
        problems.append(Problem(("wms",), "the [wms] section is required"))
    else:
        kind = wms_raw.get("kind", "possync")
        if kind not in WMS_KINDS:
            problems.append(
                Problem(("wms", "kind"), f"unknown WMS kind {kind!r} (available: {', '.join(sorted(WMS_KINDS))})")
            )
        else:
            wms = _section(WMS_KINDS[kind].settings, {"kind": kind, **wms_raw}, ("wms",), problems)
    sources = _sources(raw.get("sources", []), problems)
    _check_push_sources(raw.get("sources"), sources, agent, problems)
    if problems:
        locator = _Locator(text)
        raise ConfigError(path, [_format(path, locator, p, raw) for p in problems])
    assert isinstance(agent, AgentSettings) and isinstance(sync, SyncSettings)
    assert isinstance(wms, WmsSettings)
    assert isinstance(stock, StockSettings) and isinstance(reconcile, ReconcileSettings)
    return Config(path=path, agent=agent, wms=wms, sync=sync, sources=sources, stock=stock, reconcile=reconcile)


def _check_push_sources(
    raw: Any, sources: list[SourceSettings], agent: BaseModel | None, problems: list[Problem]
) -> None:
    """Refuse an http_ingest source without the local API (``agent.api_token``), and a second one."""
    entries = raw if isinstance(raw, list) else []
    pushed = [i for i, e in enumerate(entries) if isinstance(e, dict) and e.get("kind") == "http_ingest"]
    if not pushed or not sources:
        return
    if isinstance(agent, AgentSettings) and agent.api_token is None:
        problems.append(
            Problem(
                ("sources", pushed[0], "kind"),
                "an http_ingest source needs the local API: set agent.api_token (for example "
                '"keyring:possync/api-token"), or the POS\'s pushes would be refused',
            )
        )
    for i in pushed[1:]:
        problems.append(
            Problem(
                ("sources", i, "kind"),
                "only one http_ingest source per agent: every POS posts to the same POST /api/v1/transactions",
            )
        )


def _sources(raw: Any, problems: list[Problem]) -> list[SourceSettings]:
    if not isinstance(raw, list):
        problems.append(Problem(("sources",), "sources must be a list of [[sources]] tables"))
        return []
    result: list[SourceSettings] = []
    names: set[str] = set()
    for i, entry in enumerate(raw):
        loc: Loc = ("sources", i)
        if not isinstance(entry, dict):
            problems.append(Problem(loc, "each [[sources]] entry must be a table"))
            continue
        kind = entry.get("kind")
        if kind not in SOURCE_KINDS:
            available = ", ".join(sorted(SOURCE_KINDS))
            what = "is missing" if kind is None else f"{kind!r} is not available in this version"
            problems.append(Problem((*loc, "kind"), f"source kind {what} (available: {available})"))
            continue
        model = _section(SOURCE_KINDS[kind].settings, entry, loc, problems)
        if isinstance(model, SourceSettings):
            if model.name in names:
                problems.append(Problem((*loc, "name"), f"another source is already named {model.name!r}"))
            names.add(model.name)
            result.append(model)
    return result


def _section(
    model: type[BaseModel], raw: Any, loc: Loc, problems: list[Problem], *, required: bool = False
) -> BaseModel | None:
    if raw is None:
        if required:
            problems.append(Problem(loc, f"the [{'.'.join(map(str, loc))}] section is required"))
            return None
        raw = {}
    if not isinstance(raw, dict):
        problems.append(Problem(loc, "must be a table"))
        return None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        allowed = ", ".join(model.model_fields)
        for error in exc.errors():
            where = (*loc, *error["loc"])
            if error["type"] == "extra_forbidden":
                message = f"unknown key (allowed here: {allowed})"
            elif error["type"] == "missing":
                message = "required key is missing"
            else:
                message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(Problem(where, message))
        return None


def _format(path: Path, locator: _Locator, problem: Problem, raw: dict[str, Any]) -> str:
    line = locator.line_of(problem.loc)
    key = _dotted(problem.loc)
    if problem.loc[:1] == ("sources",) and len(problem.loc) > 1:
        index = problem.loc[1]
        entries = raw.get("sources")
        name = ""
        if isinstance(index, int) and isinstance(entries, list) and index < len(entries):
            entry = entries[index]
            name = f" ({entry.get('name')})" if isinstance(entry, dict) and entry.get("name") else ""
        key = f"[[sources]] #{int(index) + 1 if isinstance(index, int) else index}{name} " + _dotted(problem.loc[2:])
    return f"{path}:{line or '?'}: {key.strip()}: {problem.message}"


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)


class _Locator:
    """Finds the line of a key path in TOML text (tables, arrays of tables, dotted keys)."""

    _header = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    _key = re.compile(r"^\s*([A-Za-z0-9_.\-\"' ]+?)\s*=")

    def __init__(self, text: str) -> None:
        self.lines: dict[Loc, int] = {}
        counters: dict[str, int] = {}
        table: Loc = ()
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._header.match(line)
            if header:
                parts = [p.strip().strip("\"'") for p in header.group(2).split(".")]
                if header.group(1) == "[[":
                    name = ".".join(parts)
                    counters[name] = counters.get(name, -1) + 1
                    table = (*parts, counters[name])
                elif parts and parts[0] in counters and len(parts) > 1:
                    table = (parts[0], counters[parts[0]], *parts[1:])
                else:
                    table = tuple(parts)
                self.lines.setdefault(table, number)
                continue
            key = self._key.match(line)
            if key:
                parts = [p.strip().strip("\"'") for p in key.group(1).split(".")]
                self.lines.setdefault((*table, *parts), number)

    def line_of(self, loc: Loc) -> int | None:
        """Return the line of ``loc`` or of the nearest enclosing table that is in the file."""
        for end in range(len(loc), 0, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return None

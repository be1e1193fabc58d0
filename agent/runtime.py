"""The agent runtime: builds the parts from a validated config and runs them on their threads.

Threads: one per source, one delivery loop, one scheduler. Data flows one way: source ->
``OutboxSink`` (item mapping, then the outbox) -> ``DeliveryLoop`` -> WMS client.

Invariants:
- Nothing is built until ``start``: secrets are resolved there, and a missing one stops the start.
- One agent per data folder (an OS lock that a SIGKILL releases).
- ``stop`` lets every thread finish its current unit of work; anything in flight at a crash is
  leased and goes back to ready at the next start.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import date, datetime, timedelta
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from agent.api.server import ApiServer
from agent.capture import OutboxSink
from agent.config import Config
from agent.delivery import DeliveryLoop
from agent.domain import CaptureIssue, Cursor
from agent.live import LiveState
from agent.mapping import ItemMaster
from agent.metrics import History
from agent.secrets import resolve_secret
from agent.singleton import DataDirLock
from agent.status import Thresholds, build_status
from outbox.backoff import Backoff
from outbox.db import DatabaseDamaged
from outbox.exceptions import ExceptionQueue, ExceptionView
from outbox.items import ItemCache
from outbox.queue import Outbox
from outbox.reconcile import Report
from outbox.state import AgentState
from outbox.stock import StockRecord, StockView
from pos_adapters.base import REGISTRY as SOURCE_KINDS
from pos_adapters.base import Source, SourceContext
from wms_client.base import REGISTRY as WMS_KINDS

if TYPE_CHECKING:
    from fastapi import FastAPI
from wms_client.base import WmsAuthError, WmsClient, WmsUnavailable

log = logging.getLogger("possync.agent")

LEASE_S = 120.0
HEARTBEAT_S = 2.0
HISTORY_EVERY_S = 60.0
RECONCILE_CHECK_S = 60.0
RECONCILE_RECHECK_S = 600.0  # a day that differed is reconciled again this often


def possync_version() -> str:
    """Return the installed possync version."""
    try:
        return version("possync")
    except PackageNotFoundError:
        return "0+unknown"


class Agent:
    """All parts of one store agent, started and stopped together."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        """Keep the config; call ``start`` to build and run. ``clock`` is the wall clock of the outbox."""
        self.config = config
        self.clock = clock
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = DataDirLock(config.data_dir)
        self.outbox: Outbox
        self.client: WmsClient
        self.items: ItemMaster
        self.live: LiveState
        self.delivery: DeliveryLoop
        self.sources: list[Source] = []
        self._item_master_due = 0.0
        self._item_master_failures = 0
        self._snapshot_due = 0.0
        self._snapshot_failures = 0

    def start(self) -> None:
        """Build every part and start the threads; raises if anything cannot be built."""
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            self._build()
        except BaseException:
            if hasattr(self, "outbox"):
                self.outbox.close()
            self._lock.release()
            raise
        self._start_api()
        self._spawn("delivery", self.delivery.run)
        for source in self.sources:
            sink = OutboxSink(source.name, self.outbox, self.items, self._stored)
            self._spawn(f"source-{source.name}", lambda stop, s=source, k=sink: s.run(k, stop))
        self._spawn("scheduler", self.scheduler.run)
        log.info(
            "possync %s started for store %s: %d source(s), WMS %s, data in %s",
            possync_version(),
            cfg.agent.store_id,
            len(self.sources),
            cfg.wms.kind,
            cfg.data_dir,
        )

    def _build(self) -> None:
        from agent.scheduler import Scheduler

        cfg = self.config
        try:
            self.outbox = self._open_outbox()
        except DatabaseDamaged as exc:
            self.outbox = self._recover_damaged_outbox(str(exc))
        self.item_cache = ItemCache(self.outbox.db)
        self.items = ItemMaster(self.item_cache.load())
        previous = AgentState(self.outbox.db).get_all()
        self.live = LiveState(AgentState(self.outbox.db), possync_version())
        self.metrics = History()
        self.metrics.load(previous.get("history"))
        if len(self.items):
            self.live.item_master(len(self.items))
        self.stock = StockView(self.outbox.db)
        self.live.restore_reconcile(
            previous.get("reconcile_day"), previous.get("reconcile_drift_skus"), previous.get("reconcile_at")
        )
        kind = WMS_KINDS[cfg.wms.kind]
        self.client = kind.build(cfg.wms, cfg.agent.store_id, lambda ref: resolve_secret(ref, cfg.base_dir))
        self.delivery = DeliveryLoop(
            self.outbox,
            self.client,
            self.live,
            batch_size=cfg.wms.batch_size,
            backoff=Backoff(base_s=1.0, cap_s=cfg.sync.max_retry_delay),
        )
        if previous.get("paused"):
            log.warning("delivery stays paused, as an operator left it; resume with the tray or the status page")
            self.delivery.pause()
        ctx = SourceContext(
            store_id=cfg.agent.store_id,
            timezone=ZoneInfo(cfg.agent.timezone),
            base_dir=cfg.base_dir,
            data_dir=cfg.data_dir,
            location=cfg.location,
            secrets=lambda ref: resolve_secret(ref, cfg.base_dir),
        )
        self.sources = [SOURCE_KINDS[s.kind].build(s, ctx) for s in cfg.sources]
        self.scheduler = Scheduler()
        self.scheduler.every(HEARTBEAT_S, "heartbeat", self._heartbeat)
        self.scheduler.every(1, "item-master", self.refresh_item_master_if_due)
        self.scheduler.every(60, "lease-recovery", self._recover_expired_leases)
        self.scheduler.every(3600, "retention", self._purge)
        self.scheduler.every(HISTORY_EVERY_S, "history", self._sample_history)
        self.scheduler.every(1, "stock-snapshot", self.refresh_stock_if_due)
        if cfg.export_path is not None:
            self.scheduler.every(cfg.stock.export_every, "stock-export", self.export_stock)
        self.scheduler.every(RECONCILE_CHECK_S, "reconcile", self.reconcile_if_due)
        self.live.flush(force=True)
        if len(self.items) == 0:
            # First start: without an item master every capture would be held, so try once now.
            self.scheduler.run_now("item-master")

    def _spawn(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _open_outbox(self) -> Outbox:
        cfg = self.config
        return Outbox.open_file(
            cfg.outbox_path, lease_s=LEASE_S, max_backoff_s=cfg.sync.max_retry_delay, clock=self.clock
        )

    def _recover_damaged_outbox(self, reason: str) -> Outbox:
        """Set a damaged outbox aside, start a new one, and re-queue what the damaged copy still holds.

        The agent keeps running (no crash loop); an exception tells people what happened and where
        the damaged copy is.
        """
        from outbox.recovery import salvage, set_aside

        path = self.config.outbox_path
        folder = set_aside(path, reason)
        log.error("the outbox was damaged (%s); set aside in %s, starting a new one", reason, folder)
        outbox = self._open_outbox()
        found = salvage(folder / path.name)
        for source, key, value in found.cursors:
            try:
                outbox.save_cursor(source, Cursor(key, json.loads(value)))
            except ValueError:
                found.problems.append(f"cursor {source}/{key} unreadable; that source re-reads its input (safe)")
        mapped = [m for m in found.movements if m.is_mapped]
        unmapped, issues = ItemMaster().map([m for m in found.movements if not m.is_mapped])
        for i in range(0, len(mapped), 2000):
            outbox.enqueue(mapped[i : i + 2000], source="recovery")
        outbox.enqueue(unmapped, None, issues, source="recovery")
        lost = (
            " Nothing was unreadable."
            if not found.unreadable_chunks
            else f" {found.unreadable_chunks} part(s) of the old file could not be read: IT should check the copy."
        )
        outbox.enqueue(
            [],
            None,
            [
                CaptureIssue(
                    issue_id=f"outbox-damaged-{folder.name}",
                    source="outbox",
                    source_ref=str(folder),
                    code="OUTBOX_DAMAGED",
                    message=(
                        f"the outbox file was damaged ({reason}) and was set aside in {folder}; possync started a new "
                        f"one and re-queued {len(found.movements)} movement(s) not yet confirmed by the WMS (sending "
                        f"them again is safe).{lost}"
                    ),
                    raw="; ".join(found.problems)[:4000],
                )
            ],
            source="outbox",
        )
        log.warning("recovered %d movement(s) from the damaged outbox", len(found.movements))
        return outbox

    def _start_api(self) -> None:
        cfg = self.config.agent
        self.api: ApiServer | None = None
        self.api_app: FastAPI | None = None
        if cfg.api_token is None:
            log.warning("local API and status page disabled: set agent.api_token to enable them")
            return
        from agent.api.app import create_app
        from agent.api.security import Sessions

        token = resolve_secret(cfg.api_token, self.config.base_dir)
        state = AgentState(self.outbox.db)
        saved = state.get_all().get("api_sessions")
        sessions = Sessions(
            initial=saved if isinstance(saved, dict) else None, save=lambda s: state.set(api_sessions=s)
        )
        asgi, self.api_app = create_app(
            self,
            token,
            bind=cfg.api_bind,
            hosts=cfg.api_allowed_hosts,
            max_body_bytes=cfg.api_max_body_kb * 1024,
            routers=[r for r in (getattr(s, "router", None) for s in self.sources) if r is not None],
            sessions=sessions,
            schemas=[m for s in self.sources for m in getattr(s, "schemas", ())],
        )
        self.api = ApiServer(asgi, cfg.api_bind, cfg.api_port)
        self.api.start()
        host = cfg.api_bind if cfg.api_bind not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        self.live.api_listening(f"http://{host}:{self.api.port}")

    def _stored(self, count: int) -> None:
        self.live.count_captured(count)
        self.delivery.wake()

    def _sample_history(self) -> None:
        values = self.live.snapshot()
        self.metrics.sample(time.time(), self.outbox.counts().pending, values.delivered_total, values.captured_total)
        AgentState(self.outbox.db).set(history=self.metrics.to_json())

    # -- AgentControl (the local API) --------------------------------------------------------

    def history(self) -> list[dict[str, Any]]:
        """Return the per-minute history."""
        return self.metrics.to_json()

    def sync_now(self) -> None:
        """Deliver now (ends backoff waits, re-checks credentials) and pull a stock snapshot soon."""
        self._snapshot_due = 0.0
        self.delivery.sync_now()

    # -- store stock view --------------------------------------------------------------------

    def stock_records(self, sku: str | None) -> list[StockRecord]:
        """Return the effective stock of one SKU (or barcode/alias), or of every SKU."""
        now = time.time()
        if sku is None:
            return self.stock.all(now)
        resolved = self.stock.resolve(sku)
        return self.stock.lookup(resolved, now) if resolved else []

    def refresh_stock_if_due(self) -> None:
        """Pull a snapshot every ``wms.snapshot_every``; after a failure retry sooner (2 s doubling to 60 s)."""
        now = time.monotonic()
        if now < self._snapshot_due:
            return
        try:
            self.refresh_stock()
        except Exception:
            self._snapshot_failures += 1
            self._snapshot_due = now + min(2.0**self._snapshot_failures, 60.0, self.config.wms.snapshot_every)
            raise
        self._snapshot_failures = 0
        self._snapshot_due = now + self.config.wms.snapshot_every

    def refresh_stock(self) -> bool:
        """Pull the store's stock snapshot now and store it unless a newer one is stored; True if stored."""
        try:
            snapshot = self.client.stock_snapshot()
        except WmsAuthError as exc:
            self.live.auth_refused(f"stock snapshot: {exc}")
            raise
        except WmsUnavailable as exc:
            self.live.failed(f"stock snapshot: {exc}")
            raise
        # A read that works says nothing about deliveries (a WMS may serve reads and fail pushes), so
        # reachability is left to the delivery loop.
        with self.delivery.exchange:  # between pushes: every applied event has its ack recorded
            stored = self.stock.replace(snapshot, time.time())
        self.live.stock_snapshot(snapshot.version, len(snapshot.levels))
        log.info(
            "stock snapshot version %d: %d level(s) %s",
            snapshot.version,
            len(snapshot.levels),
            "stored" if stored else "(no newer than the stored one)",
        )
        if self.config.export_path is not None:
            self.export_stock()
        return stored

    def export_stock(self) -> None:
        """Atomically replace the stock CSV export (when ``stock.export_dir`` is set)."""
        from agent.stock_export import write_export

        path = self.config.export_path
        if path is None:
            return
        rows = write_export(self.stock.all(time.time()), path, self.config.stock.export_columns)
        log.debug("stock export: %d row(s) to %s", rows, path)

    # -- reconciliation ----------------------------------------------------------------------

    def reconcile_if_due(self) -> None:
        """Once a day after ``reconcile.at`` (store time), reconcile the previous business day."""
        zone = ZoneInfo(self.config.agent.timezone)
        now = datetime.now(zone)
        if now.strftime("%H:%M") < self.config.reconcile.at:
            return
        day = (now.date() - timedelta(days=1)).isoformat()
        last = self.live.snapshot()
        # A day that differed is checked again every RECONCILE_RECHECK_S: once the cause is fixed (an
        # exception retried, the WMS caught up), the red clears without waiting a day.
        recheck = bool(last.reconcile_drift_skus) and time.time() - (last.reconcile_at or 0.0) >= RECONCILE_RECHECK_S
        if last.reconcile_day == day and not recheck:
            return
        self.reconcile(date.fromisoformat(day))

    def reconcile(self, day: date) -> Report:
        """Reconcile ``day``, write its CSV report, and record the drift (red beyond the threshold)."""
        from outbox.reconcile import reconcile, write_csv

        report = reconcile(self.outbox.db, day)
        path = write_csv(report, self.config.report_dir)
        self.live.reconciled(day.isoformat(), report.drift_skus)
        level = logging.WARNING if report.drift_skus > self.config.reconcile.drift_threshold else logging.INFO
        log.log(level, "reconciliation of %s: %d SKU(s) differ; report in %s", day, report.drift_skus, path)
        return report

    def pause(self) -> None:
        """Pause delivery; capture continues."""
        self.delivery.pause()

    def resume(self) -> None:
        """Resume delivery."""
        self.delivery.resume()

    def list_exceptions(self, include_resolved: bool) -> list[ExceptionView]:
        """Return exceptions, oldest first."""
        return self.exceptions().list(include_resolved=include_resolved)

    def retry_exception(self, exception_id: int) -> str:
        """Retry one exception with the live item master."""
        from agent.api.app import ActionRefused
        from agent.operator import CannotRetry, retry_exception

        try:
            message = retry_exception(self.outbox, self.exceptions(), self.items, exception_id)
        except CannotRetry as exc:
            raise ActionRefused(str(exc)) from None
        self.delivery.wake()
        return message

    def resolve_exception(self, exception_id: int, note: str) -> str:
        """Resolve one exception without delivering it."""
        from agent.api.app import ActionRefused
        from agent.operator import CannotRetry, resolve_exception

        try:
            return resolve_exception(self.exceptions(), exception_id, note)
        except CannotRetry as exc:
            raise ActionRefused(str(exc)) from None

    def refresh_item_master_if_due(self) -> None:
        """Refresh on schedule; after a failure retry sooner (2 s doubling to 60 s) until it works."""
        now = time.monotonic()
        if now < self._item_master_due:
            return
        try:
            self.refresh_item_master()
        except Exception:
            self._item_master_failures += 1
            self._item_master_due = now + min(2.0**self._item_master_failures, 60.0)
            raise
        self._item_master_failures = 0
        self._item_master_due = now + self.config.wms.item_master_every

    def refresh_item_master(self) -> None:
        """Fetch the item master, cache it, and release held movements it now maps."""
        started = time.monotonic()
        try:
            items = self.client.item_master()
        except WmsAuthError as exc:
            self.live.auth_refused(f"item master: {exc}")
            raise
        except WmsUnavailable as exc:
            self.live.failed(f"item master: {exc}")
            raise
        self.live.reachable(time.monotonic() - started)
        self.item_cache.replace(items)
        self.items.replace(items)
        self.live.item_master(len(items))
        released = self.release_held("item master refreshed")
        log.info("item master refreshed: %d items; %d held movement(s) released", len(items), released)

    def release_held(self, resolution: str, *, page_size: int = 2_000) -> int:
        """Map held movements with the current item master and make the mapped ones deliverable."""
        total = 0
        # Page through all of them: a flood of items the master still lacks must not hide, behind the
        # first page, movements it now knows.
        for held in self.outbox.held_pages(page_size):
            mapped = [m for m in (self.items.map_one(h)[0] for h in held) if m.is_mapped]
            total += self.outbox.release_held(mapped, resolution)
        if total:
            self.delivery.wake()
        return total

    def _heartbeat(self) -> None:
        self.live.sources({s.name: asdict(s.health) for s in self.sources})
        self.live.flush()

    def _recover_expired_leases(self) -> None:
        recovered = self.outbox.recover_leases(expired_only=True)
        if recovered:
            log.warning("%d movement(s) had an expired delivery lease; queued again", recovered)

    def _purge(self) -> None:
        gone = self.outbox.purge(self.config.sync.retention_days)
        if gone:
            log.info("retention: purged %d acknowledged movement(s)", gone)

    def status(self) -> dict[str, Any]:
        """Return the same status record ``possync status --json`` prints, from this process's live state.

        Live values come from memory, not from the outbox file, so the status stays true even when the
        data folder cannot be written (disk full, read-only) and the persisted heartbeat goes stale.
        """
        live = asdict(self.live.snapshot())
        live["heartbeat_at"] = time.time()
        live["history"] = self.metrics.to_json()
        return build_status(
            self.outbox.counts(),
            live,
            thresholds(self.config),
            store_id=self.config.agent.store_id,
            data_dir=self.config.data_dir,
        )

    def exceptions(self) -> ExceptionQueue:
        """Return the exception queue of this agent's outbox."""
        return ExceptionQueue(self.outbox.db)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every thread, publish the stop, and close the outbox."""
        self.stop_event.set()
        if getattr(self, "api", None) is not None:
            self.api.stop()  # type: ignore[union-attr]
        if hasattr(self, "delivery"):
            self.delivery.wake()
        for source in self.sources:
            wake = getattr(source, "wake", None)
            if callable(wake):
                wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(deadline - time.monotonic(), 0.1))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning(
                "threads still busy at shutdown: %s (their work is leased and resumes at next start)", ", ".join(stuck)
            )
        if hasattr(self, "live"):
            self.live.stopped()
        if hasattr(self, "client"):
            self.client.close()
        if hasattr(self, "outbox"):
            self.outbox.close()
        self._lock.release()
        log.info("possync stopped")


def thresholds(config: Config) -> Thresholds:
    """Return the status thresholds from the config."""
    return Thresholds(
        sla_s=config.sync.sla_s,
        offline_alert_after_s=config.sync.offline_alert_after,
        disk_min_free_mb=config.sync.disk_min_free_mb,
        drift_threshold=config.reconcile.drift_threshold,
    )

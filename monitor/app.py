"""Wiring and lifecycle: builds the daemon from a config and runs it until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Sequence
from contextlib import AsyncExitStack

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.clock import Clock, SystemClock
from monitor.config import Config, ConfigError, load_config
from monitor.config.catalog import Catalog, build_catalog
from monitor.config.models import parse_listen
from monitor.logs import get_logger
from monitor.metrics import Metrics
from monitor.notify.base import Notifier
from monitor.poller.budget import RateBudget
from monitor.poller.dispatcher import Dispatcher, Health, RetryPolicy
from monitor.poller.live import LiveState
from monitor.poller.processor import Processor
from monitor.poller.scheduler import MaintenanceView, PollScheduler
from monitor.server.app import ApiServer
from monitor.store.base import Store
from monitor.store.sqlite import SQLiteStore
from monitor.upstream.inventory import InventoryClient

log = get_logger("monitor.app")

SHUTDOWN_SECONDS = 8.0


class Daemon:
    """The assembled daemon. Parts are built in `start` and torn down in reverse in `stop`.

    Tests construct it with a config (and optionally a clock, registry or store), call `start`
    with `schedule=False`, and drive polls through `scheduler.run_once()`.
    """

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        clock: Clock | None = None,
        registry: CollectorRegistry | None = None,
        store: Store | None = None,
        notifiers: Sequence[Notifier] = (),
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.metrics = Metrics(registry)
        self.health = Health(self.metrics)
        self.catalog: Catalog = build_catalog(config)
        self.live = LiveState()
        self.store: Store = store or SQLiteStore(config.state.path)
        self._extra_notifiers = list(notifiers)
        self._stack = AsyncExitStack()
        self._stop = asyncio.Event()
        self.url = ""
        self.session: aiohttp.ClientSession | None = None

    def _current_catalog(self) -> Catalog:
        return self.catalog

    async def start(self, *, schedule: bool = True) -> None:
        """Open the store, load state, start the server, workers and (optionally) the schedule."""
        try:
            await self._start(schedule)
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self, schedule: bool) -> None:
        cfg = self.config
        up = cfg.upstream
        stack = self._stack
        await self.store.open()
        stack.push_async_callback(self.store.close)
        stored = await self.store.load_states()
        self.live.load(stored)
        self.live.recount(self.catalog)
        self.health.state_loaded = True

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(8, up.max_in_flight * 2)),
            headers={"User-Agent": f"availability-monitor/{__version__}"},
        )
        # aiohttp silently resends an idempotent request once when the server drops the
        # connection; that second request would bypass the rate budget, so it is switched off
        # and the dispatcher's own (counted) retries take over.
        self.session._retry_connection = False
        stack.push_async_callback(self.session.close)
        client = InventoryClient(
            session=self.session,
            base_url=up.base_url,
            api_key=up.api_key,
            method=up.method,
            timeout_seconds=up.timeout_seconds,
            clock=self.clock,
        )
        self.processor = Processor(
            store=self.store,
            live=self.live,
            catalog=self._current_catalog,
            metrics=self.metrics,
            notifiers=self._extra_notifiers,
        )
        self.maintenance = MaintenanceView(self._current_catalog, self.clock)
        self.budget = RateBudget(up.rate_limit.requests, up.rate_limit.per_seconds)
        self.dispatcher = Dispatcher(
            client=client,
            processor=self.processor,
            budget=self.budget,
            metrics=self.metrics,
            health=self.health,
            observed_at=lambda eid: self.live.observed_at.get(eid, 0.0),
            exclude=self.maintenance.excluded,
            clock=self.clock,
            batch_size=up.batch_size,
            max_in_flight=up.max_in_flight,
            retry=RetryPolicy(
                max_retries=up.max_retries,
                base_seconds=up.backoff_base_seconds,
                max_seconds=up.backoff_max_seconds,
                auth_backoff_seconds=up.auth_backoff_seconds,
                quarantine_seconds=up.quarantine_seconds,
            ),
        )
        self.dispatcher.start()
        stack.push_async_callback(self.dispatcher.stop, SHUTDOWN_SECONDS - 2)
        self.scheduler = PollScheduler(
            dispatcher=self.dispatcher,
            catalog=self._current_catalog,
            maintenance=self.maintenance,
            metrics=self.metrics,
            health=self.health,
            status_counts=self.live.status_counts,
            clock=self.clock,
        )
        self.scheduler.publish_static_gauges()
        self.server = ApiServer(
            registry=self.metrics.registry,
            health=self.health,
            catalog=self._current_catalog,
            live=self.live,
            store=self.store,
            clock=self.clock,
            admin_token=cfg.server.admin_token,
            quarantined=lambda eid: eid in self.dispatcher.quarantined,
        )
        await self._start_server(self.server.app())
        self._log_start()
        if schedule:
            self.scheduler.start()
            stack.push_async_callback(self.scheduler.stop, SHUTDOWN_SECONDS - 2)

    async def _start_server(self, app: web.Application) -> None:
        host, port = parse_listen(self.config.server.listen)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        self._stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, host, port)
        await site.start()
        addr = runner.addresses[0]
        shown = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
        self.url = f"http://{shown}:{addr[1]}"

    def _log_start(self) -> None:
        catalog = self.catalog
        no_tz = sum(1 for e in catalog.events.values() if e.zone < 0)
        log.info(
            "daemon started",
            version=__version__,
            watch_sets=len(catalog.sets),
            events=len(catalog.events),
            listen=self.url,
            remembered_events=len(self.live.states),
        )
        if no_tz:
            log.warning(
                "events without a time zone are polled at all hours (no maintenance window)",
                events_without_time_zone=no_tz,
            )

    async def stop(self) -> None:
        """Stop scheduling, let batches in flight finish, flush and close everything."""
        self._stop.set()
        await self._stack.aclose()

    def request_stop(self) -> None:
        """Ask `run_forever` to return (signal handlers call this)."""
        self._stop.set()

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP). An invalid file keeps the old config running."""
        if not self.config_path:
            log.warning("reload asked, but the daemon was not started from a config file")
            return False
        try:
            new = load_config(self.config_path)
        except ConfigError as exc:
            self.metrics.config_reloads_total.labels("invalid").inc()
            log.error(
                "new config is invalid; keeping the running one",
                errors=[str(i) for i in exc.issues],
            )
            return False
        ignored = [
            section
            for section in ("upstream", "state", "server", "log")
            if getattr(new, section) != getattr(self.config, section)
        ]
        if ignored:
            log.warning("these sections change only on restart", sections=ignored)
        self.config = self.config.model_copy(
            update={
                "maintenance": new.maintenance,
                "venues": new.venues,
                "watch_sets": new.watch_sets,
            }
        )
        self.catalog = build_catalog(self.config)
        self.live.recount(self.catalog)
        self.scheduler.publish_static_gauges()
        self.scheduler.reschedule()
        self.metrics.config_reloads_total.labels("ok").inc()
        log.info(
            "config reloaded", watch_sets=len(self.catalog.sets), events=len(self.catalog.events)
        )
        return True

    async def run_forever(self, *, install_signals: bool = True) -> None:
        """Start, then run until SIGTERM/SIGINT; SIGHUP reloads the config."""
        loop = asyncio.get_running_loop()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.reload)
        try:
            await self.start()
            await self._stop.wait()
            log.info("stopping")
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.stop(), SHUTDOWN_SECONDS)
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            log.info("stopped")

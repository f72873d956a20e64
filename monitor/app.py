"""Wiring and lifecycle: builds the daemon from a config and runs it until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from typing import cast

import aiohttp
from aiohttp.abc import AbstractResolver
from prometheus_client import CollectorRegistry

from monitor import __version__
from monitor.actions.rules import ActionRules
from monitor.allocator import release_free_memory
from monitor.clock import Clock, SystemClock
from monitor.cluster.coordinator import Coordinator, LeaseStore
from monitor.config import Config, ConfigError, load_config
from monitor.config.catalog import Catalog, build_catalog
from monitor.config.event_files import ListedEvents
from monitor.config.models import WatchSet, parse_listen
from monitor.eventinfo import EventInfo
from monitor.logs import get_logger
from monitor.metric_series import (
    daemon_series,
    rule_series,
    subscription_series,
    watch_set_series,
)
from monitor.metrics import Metrics
from monitor.notify.alertmanager import AlertmanagerNotifier
from monitor.notify.base import Notifier
from monitor.notify.outbox import OutboxWorker
from monitor.notify.subscriptions import Subscriptions
from monitor.notify.webhook import WebhookSender, make_session
from monitor.poller.budget import RateBudget
from monitor.poller.dispatcher import Dispatcher, Health, RetryPolicy
from monitor.poller.live import LiveState
from monitor.poller.processor import Processor
from monitor.poller.scheduler import MaintenanceView, PollScheduler
from monitor.poller.unknown import LongUnknownCollector, UnknownSince
from monitor.registry import WatchSetRegistry
from monitor.sdnotify import SdNotifier
from monitor.secrets import PROCESS_SECRETS, SecretValues, secrets_in
from monitor.server.actions_api import ActionsApi
from monitor.server.api import AdminApi, read_only_without_token
from monitor.server.app import ApiServer
from monitor.server.listener import ServerLimits, start_listener
from monitor.server.schema import RequestSchemas, load_document
from monitor.server.watch_sets_api import WatchSetsApi
from monitor.store.base import Store
from monitor.store.sqlite import SQLiteStore
from monitor.upstream.inventory import InventoryClient
from monitor.upstream.inventory import trace_config as inventory_trace_config
from monitor.upstream.marketplace import API as MARKETPLACE_API
from monitor.upstream.marketplace import MarketplaceClient
from monitor.upstream.partner import PartnerClient

log = get_logger("monitor.app")

SHUTDOWN_SECONDS = 8.0
STEP_SECONDS = 7.0
CHECKPOINT_SECONDS = 300.0


def make_store(config: Config, clock: Clock | None = None) -> Store:
    """The store the config asks for."""
    st = config.state
    if st.backend == "postgres":
        from monitor.store.postgres import PostgresStore

        assert st.dsn is not None
        return PostgresStore(st.dsn.reveal(), schema=st.schema_, max_size=st.pool_size, clock=clock)
    return SQLiteStore(st.path, clock=clock)


def watch_store(store: Store, metrics: Metrics) -> None:
    """Keep the state-store metrics with the store's write health."""
    health = store.health
    health.observe(
        lambda failure: metrics.store_write(failure.kind if failure else None, health.ok)
    )
    metrics.store_write(None, health.ok)


async def _bounded(fn: Callable[..., Awaitable[object]], *args: object) -> None:
    """Run one teardown step, but never let it hold up the rest of the shutdown."""
    try:
        await asyncio.wait_for(fn(*args), STEP_SECONDS)
    except TimeoutError:
        log.warning(
            "a shutdown step took too long; going on", step=getattr(fn, "__qualname__", "?")
        )
    except Exception:
        log.exception("a shutdown step failed; going on")


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
        webhook_resolver: AbstractResolver | None = None,
        systemd: SdNotifier | None = None,
        secret_values: SecretValues | None = None,
        server_limits: ServerLimits | None = None,
    ) -> None:
        self.server_limits = server_limits or ServerLimits()
        self.systemd = systemd or SdNotifier()
        self.config = config
        # The log redactor searches for the running config's secrets, and for nothing else.
        self.secret_values = secret_values or PROCESS_SECRETS
        self._secrets_owner = f"daemon-{id(self)}"
        self.secret_values.set(self._secrets_owner, secrets_in(config))
        self.config_path = config_path
        self.clock = clock or SystemClock()
        self.metrics = Metrics(registry)
        self.health = Health(self.metrics)
        self.catalog: Catalog = build_catalog(config)
        self.live = LiveState()
        self.store: Store = store or make_store(config, self.clock)
        self.health.store = self.store.health.state
        watch_store(self.store, self.metrics)
        self.registry = WatchSetRegistry(
            store=self.store,
            config=lambda: self.config,
            use_catalog=self._use_catalog,
            catalog=self._current_catalog,
        )
        self.subscriptions = Subscriptions(self.store)
        self._extra_notifiers = list(notifiers)
        self._webhook_resolver = webhook_resolver
        self._stack = AsyncExitStack()
        self._stop = asyncio.Event()
        self._checkpointed = 0.0
        self._gauges_dirty = False
        self._share_version = 0
        self._background: set[asyncio.Task[None]] = set()
        self.url = ""
        self.session: aiohttp.ClientSession | None = None
        self.alertmanager: AlertmanagerNotifier | None = None
        self.coordinator: Coordinator | None = None

    def _current_catalog(self) -> Catalog:
        return self.catalog

    # -- start and stop --------------------------------------------------------------------

    async def start(self, *, schedule: bool = True) -> None:
        """Open the store, load state, start the server, workers and (optionally) the schedule."""
        try:
            await self._start(schedule)
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self, schedule: bool) -> None:
        cfg = self.config
        stack = self._stack
        await self.store.open()
        stack.push_async_callback(self.store.close)
        await self.registry.load()
        effective = self.registry.effective()
        if effective is not cfg:  # API-made sets add events: the catalog from __init__ lacks them
            self.catalog = build_catalog(effective)
        # After the catalog: the states take its ID strings (see LiveState.load_all).
        await self.live.load_all(self.store.iter_states(), self.catalog)
        release_free_memory()  # what loading freed (chunks, catalog building) goes back
        self.coordinator = self._make_coordinator()
        self.eventinfo = self._make_eventinfo()
        await self.eventinfo.load()
        await self.subscriptions.load(cfg.notifications.webhooks)
        self.health.state_loaded = True

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=max(8, cfg.upstream.max_in_flight * 2)),
            headers={"User-Agent": f"availability-monitor/{__version__}"},
            trace_configs=[inventory_trace_config()],
        )
        # aiohttp silently resends an idempotent request once when the server drops the
        # connection; that second request would bypass the rate budget, so it is switched off
        # and the dispatcher's own (counted) retries take over.
        self.session._retry_connection = False
        stack.push_async_callback(_bounded, self.session.close)
        notifiers = await self._start_notifications()
        self._start_polling(notifiers)
        if self.coordinator is not None:
            self.budget.resize(0)  # no share until the first slots cool down
            self.health.cluster = self.coordinator.healthy
            coordinator = self.coordinator
            self.health.standby = lambda: not coordinator.owned_slots
            await self.coordinator.start()
            stack.push_async_callback(_bounded, self.coordinator.stop)
            self._set_budget_share(len(self.coordinator.owned_slots))
        await self._start_server()
        self._known_series()
        stack.push_async_callback(_bounded, self._checkpoint)
        checkpointer = asyncio.create_task(self._checkpoint_loop(), name="checkpoint")
        stack.callback(checkpointer.cancel)
        self.eventinfo.start()
        stack.push_async_callback(_bounded, self.eventinfo.stop)
        self._log_start()
        if schedule:
            self.scheduler.start()
            stack.push_async_callback(_bounded, self.scheduler.stop, SHUTDOWN_SECONDS - 2)
        if self.systemd.enabled:
            self.systemd.ready(self._status_line())
            watchdog = asyncio.create_task(self._watchdog_loop(), name="watchdog")
            stack.callback(watchdog.cancel)

    async def _start_notifications(self) -> list[Notifier]:
        n = self.config.notifications
        self.webhook_session = make_session(
            deny_private=n.deny_private_networks, resolver=self._webhook_resolver
        )
        self._stack.push_async_callback(_bounded, self.webhook_session.close)
        self.actions = await self._start_actions()
        self.outbox = OutboxWorker(
            store=self.store,
            subscriptions=self.subscriptions,
            sender=WebhookSender(
                session=self.webhook_session,
                timeout_seconds=n.timeout_seconds,
                deny_private=n.deny_private_networks,
                clock=self.clock,
            ),
            metrics=self.metrics,
            schedule=n.retry_schedule,
            clock=self.clock,
            extra=self.actions,
            claimer=self.coordinator.replica_id if self.coordinator else None,
            claim_seconds=self.config.cluster.claim_seconds,
        )
        self.outbox.start()
        self._stack.push_async_callback(_bounded, self.outbox.stop, 2.0)
        notifiers: list[Notifier] = [self.outbox]
        if n.alertmanager is not None:
            assert self.session is not None
            self.alertmanager = AlertmanagerNotifier(
                config=n.alertmanager,
                session=self.session,
                live=self.live,
                catalog=self._current_catalog,
                metrics=self.metrics,
                clock=self.clock,
                mine=self._mine(),
            )
            self.alertmanager.start()
            self._stack.push_async_callback(_bounded, self.alertmanager.stop)
            notifiers.append(self.alertmanager)
        return [*notifiers, *self._extra_notifiers]

    def _make_coordinator(self) -> Coordinator | None:
        if self.config.state.backend != "postgres":
            return None
        c = self.config.cluster
        return Coordinator(
            store=cast(LeaseStore, self.store),
            metrics=self.metrics,
            shards=c.shards,
            slots=self.config.upstream.rate_limit.requests,
            lease_seconds=c.lease_seconds,
            replica_id=c.replica_id,
            on_change=self._leases_changed,
        )

    def _mine(self) -> Callable[[str], bool] | None:
        return self.coordinator.mine if self.coordinator is not None else None

    def _set_budget_share(self, slots: int) -> None:
        """Use `slots` budget slots: fewer at once; more only one window later.

        A slot just taken over may have been spent by its previous owner moments ago: using it
        at once could put one request too many into the upstream's window.
        """
        self._share_version += 1
        version = self._share_version
        if slots <= self.budget.requests:
            self.budget.resize(slots)
            return
        rl = self.config.upstream.rate_limit
        delay = rl.per_seconds * (1 + rl.margin)

        def grow() -> None:
            if version == self._share_version:
                self.budget.resize(slots)

        asyncio.get_running_loop().call_later(delay, grow)

    async def _leases_changed(self, gained: set[int], dropped: set[int], slots: int) -> None:
        """Shards came or went: load what other replicas stored for the new ones."""
        coordinator = self.coordinator
        assert coordinator is not None
        self._set_budget_share(slots)
        if gained:
            ids = [e for e in self.catalog.profiles if coordinator.shard(e) in gained]
            chunks = [chunk async for chunk in self.store.iter_states(ids)]
            # No await from here on: polls in between cannot mix old and new states.
            self.live.replace(ids, chunks)
            self.live.recount(self.catalog)
            self.eventinfo.schedule_all()
        log.info(
            "shards changed",
            gained=len(gained),
            dropped=len(dropped),
            owned=len(coordinator.owned),
            budget_slots=slots,
        )

    def _make_eventinfo(self) -> EventInfo:
        partner = self.config.partner
        client = None
        if partner is not None:
            session = aiohttp.ClientSession(
                headers={"User-Agent": f"availability-monitor/{__version__}"},
                trace_configs=[inventory_trace_config()],
            )
            session._retry_connection = False
            self._stack.push_async_callback(_bounded, session.close)
            requests = self.metrics.upstream_requests_total
            durations = self.metrics.upstream_request_duration_seconds

            def observe(endpoint: str, outcome: str, seconds: float) -> None:
                requests.labels("partner", outcome).inc()
                durations.labels("partner").observe(seconds)

            rl = partner.rate_limit
            client = PartnerClient(
                session=session,
                base_url=partner.base_url,
                api_key=partner.api_key,
                client_secret=partner.client_secret,
                clock=self.clock,
                timeout_seconds=partner.timeout_seconds,
                budget=RateBudget(rl.requests, rl.per_seconds, margin=rl.margin),
                on_request=observe,
                max_answer_bytes=partner.max_answer_bytes,
                max_retry_after=partner.max_retry_after_seconds,
            )
            self.metrics.partner_not_found_ratio.set_function(lambda: client.not_found.share)
        return EventInfo(
            store=self.store,
            catalog=self._current_catalog,
            metrics=self.metrics,
            config=partner,
            client=client,
            clock=self.clock,
            on_resolved=self._zones_changed,
            mine=self._mine(),
        )

    def _zones_changed(self) -> None:
        # Gauges that count events without a time zone are O(events): refresh them lazily.
        self._gauges_dirty = True

    async def _start_actions(self) -> ActionRules:
        market = self.config.marketplace
        client = None
        if market is not None:
            session = aiohttp.ClientSession(
                headers={"User-Agent": f"availability-monitor/{__version__}"},
                trace_configs=[inventory_trace_config()],
            )
            self._stack.push_async_callback(_bounded, session.close)
            requests = self.metrics.upstream_requests_total
            durations = self.metrics.upstream_request_duration_seconds

            def observe(outcome: str, seconds: float) -> None:
                requests.labels(MARKETPLACE_API, outcome).inc()
                durations.labels(MARKETPLACE_API).observe(seconds)

            client = MarketplaceClient(
                session=session,
                base_url=market.base_url,
                api_token=market.api_token,
                budget=RateBudget(market.rate_limit.requests, market.rate_limit.per_seconds),
                timeout_seconds=market.timeout_seconds,
                on_request=observe,
                clock=self.clock,
                max_answer_bytes=market.max_answer_bytes,
                max_retry_after=market.max_retry_after_seconds,
            )
        rules = ActionRules(store=self.store, client=client, metrics=self.metrics)
        await rules.load(self.config.actions)
        return rules

    def _start_polling(self, notifiers: list[Notifier]) -> None:
        up = self.config.upstream
        assert self.session is not None
        client = InventoryClient(
            session=self.session,
            base_url=up.base_url,
            api_key=up.api_key,
            method=up.method,
            timeout_seconds=up.timeout_seconds,
            clock=self.clock,
            max_retry_after=up.max_retry_after_seconds,
            max_answer_bytes=up.max_answer_bytes,
        )
        self.processor = Processor(
            store=self.store,
            live=self.live,
            catalog=self._current_catalog,
            metrics=self.metrics,
            notifiers=notifiers,
            router=self.outbox,
            clock=self.clock,
            enrich=self.eventinfo.enrich if self.config.partner is not None else None,
            fence=self.coordinator.fence if self.coordinator is not None else None,
        )
        self.maintenance = MaintenanceView(
            self._current_catalog,
            self.clock,
            retired=self.eventinfo.retired,
            retiring=self.eventinfo.retiring,
            mine=self._mine(),
        )
        self.unknown = UnknownSince()
        LongUnknownCollector(
            self.unknown, self._current_catalog, self.clock.wall, up.long_unknown_seconds
        ).register(self.metrics.registry)
        rl = up.rate_limit
        self.budget = RateBudget(rl.requests, rl.per_seconds, margin=rl.margin)
        self.dispatcher = Dispatcher(
            client=client,
            processor=self.processor,
            budget=self.budget,
            metrics=self.metrics,
            health=self.health,
            observed_at=self.live.observed_at,
            splitter=self.maintenance.splitter,
            generation=self._current_catalog,
            clock=self.clock,
            batch_size=up.batch_size,
            max_in_flight=up.max_in_flight,
            max_request_bytes=None if up.method == "POST" else up.max_url_bytes,
            unknown=self.unknown,
            retry=RetryPolicy(
                max_retries=up.max_retries,
                base_seconds=up.backoff_base_seconds,
                max_seconds=up.backoff_max_seconds,
                auth_backoff_seconds=up.auth_backoff_seconds,
                quarantine_seconds=up.quarantine_seconds,
                max_retry_after=up.max_retry_after_seconds,
                pause_unready_seconds=up.pause_unready_seconds,
            ),
        )
        self.dispatcher.start()
        self._stack.push_async_callback(_bounded, self.dispatcher.stop, SHUTDOWN_SECONDS - 2)
        self.scheduler = PollScheduler(
            dispatcher=self.dispatcher,
            catalog=self._current_catalog,
            maintenance=self.maintenance,
            metrics=self.metrics,
            health=self.health,
            status_counts=self.live.status_counts,
            clock=self.clock,
            observed_at=self.live.observed_at.get,
            status=self.live.status,
        )
        self.scheduler.publish_static_gauges()

    async def _start_server(self) -> None:
        cfg = self.config
        self.server = ApiServer(
            registry=self.metrics.registry,
            health=self.health,
            catalog=self._current_catalog,
            live=self.live,
            store=self.store,
            clock=self.clock,
            admin_token=cfg.server.admin_token,
            quarantined=lambda eid: eid in self.dispatcher.quarantined,
            unknown_since=self.unknown.since,
            details=self.eventinfo.details,
            retired=self.eventinfo.retired,
            max_body_bytes=self.server_limits.body_bytes,
            body_seconds=self.server_limits.body_seconds,
        )
        app = self.app = self.server.app()
        if cfg.server.admin_token is None:
            app.middlewares.append(read_only_without_token)
        schemas = RequestSchemas(load_document())
        ActionsApi(
            rules=self.actions,
            store=self.store,
            clock=self.clock,
            schemas=schemas,
            wake_outbox=self.outbox.wake,
        ).add_routes(app)
        AdminApi(
            subscriptions=self.subscriptions,
            store=self.store,
            clock=self.clock,
            schemas=schemas,
            wake_outbox=self.outbox.wake,
            deny_private=cfg.notifications.deny_private_networks,
            resolver=self._webhook_resolver,
            on_created=lambda name: subscription_series(self.metrics, name),
        ).add_routes(app)
        WatchSetsApi(registry=self.registry, schemas=schemas).add_routes(app)
        host, port = parse_listen(cfg.server.listen)
        bad = self.metrics.http_bad_requests_total
        runner = await start_listener(
            app,
            host,
            port,
            limits=self.server_limits,
            clock=self.clock,
            on_malformed=lambda kind: bad.labels(kind).inc(),
            on_refused=self.metrics.http_connections_refused_total.inc,
        )
        self._stack.push_async_callback(_bounded, runner.cleanup)
        server = runner.server
        self.metrics.http_connections_open.set_function(
            lambda: len(server.connections) if server is not None else 0
        )
        addr = runner.addresses[0]
        shown = f"[{addr[0]}]" if ":" in str(addr[0]) else str(addr[0])
        self.url = f"http://{shown}:{addr[1]}"

    def _known_series(self) -> None:
        """Zero the labelled counters of everything that exists now (see metric_series)."""
        m, cfg = self.metrics, self.config
        apis = ["inventory", *(["partner"] if cfg.partner else [])]
        apis += [MARKETPLACE_API] if cfg.marketplace else []
        alertmanager = cfg.notifications.alertmanager is not None
        daemon_series(m, apis=apis, alertmanager=alertmanager, cluster=self.coordinator is not None)
        for sub in self.subscriptions.all():
            subscription_series(m, sub.name)
        for rule in self.actions.rules():
            rule_series(m, rule.rule.name)
        for spec in self.catalog.sets.values():
            watch_set_series(m, spec.name, spec.track_unknown)

    def _log_start(self) -> None:
        catalog = self.catalog
        no_tz = catalog.without_time_zone()
        log.info(
            "daemon started",
            version=__version__,
            watch_sets=len(catalog.sets),
            events=len(catalog.events),
            subscriptions=len(self.subscriptions.all()),
            listen=self.url,
            remembered_events=len(self.live.states),
        )
        if no_tz:
            log.warning(
                "events without a time zone are polled at all hours (no maintenance window)",
                events_without_time_zone=no_tz,
            )
        self._log_plan()

    def _log_plan(self) -> None:
        plan = self.catalog.plan
        if plan is None or not plan.stretched:
            return
        log.warning(
            "daily quota: intervals stretched to fit",
            quota=plan.quota,
            needed_per_day=round(plan.needed_per_day),
            planned_per_day=round(plan.planned_per_day),
            fits=plan.fits,
            intervals={n: round(self.catalog.sets[n].interval_seconds, 1) for n in plan.stretched},
        )

    async def stop(self) -> None:
        """Stop scheduling, let batches in flight finish, flush and close everything."""
        self._stop.set()
        self.systemd.stopping("stopping: finishing requests in flight")
        await self._stack.aclose()
        self.secret_values.drop(self._secrets_owner)

    # -- systemd ---------------------------------------------------------------------------

    def stall_seconds(self) -> float:
        """How long without progress counts as stalled (the watchdog stops pinging then)."""
        if self.config.server.stall_seconds is not None:
            return self.config.server.stall_seconds
        ticks = [s.tick_seconds for s in self.catalog.sets.values()] or [60.0]
        return 3 * max(ticks) + self.config.upstream.timeout_seconds + 30

    def making_progress(self) -> bool:
        """Whether polling moved lately: a request completed or a run finished."""
        last = max(self.dispatcher.last_progress, self.scheduler.last_progress)
        return self.clock.monotonic() - last < self.stall_seconds()

    def _status_line(self) -> str:
        ready, reason = self.health.readiness()
        return (
            f"{len(self.catalog.events)} events in {len(self.catalog.sets)} watch sets; "
            f"{'ready' if ready else reason}; {self.dispatcher.queued} queued"
        )

    async def _watchdog_loop(self) -> None:
        interval = self.systemd.watchdog_interval()
        period = interval / 2 if interval else 10.0
        ticks = 0
        while True:
            await asyncio.sleep(period)
            if interval and self.making_progress():
                self.systemd.watchdog()  # no ping while stalled: systemd restarts us
            ticks += 1
            if ticks * period >= 10:
                ticks = 0
                self.systemd.status(self._status_line())

    def request_stop(self) -> None:
        """Ask `run_forever` to return (signal handlers call this)."""
        self._stop.set()

    # -- observation-time checkpoints ------------------------------------------------------

    async def _checkpoint(self) -> None:
        """Write last-observation times of unchanged events (changed ones are written already)."""
        since = self._checkpointed
        self._checkpointed = self.clock.wall()
        items = [(t, eid) for eid, t in self.live.observed_at.items() if t > since]
        if items:
            try:
                await asyncio.wait_for(self.store.save_observed(items), 3.0)
            except Exception:  # a timeout included: the next checkpoint catches up
                log.warning("observation-time checkpoint incomplete", events=len(items))

    async def _checkpoint_loop(self) -> None:
        slept = 0.0
        while True:
            await asyncio.sleep(5.0)
            slept += 5.0
            if self._gauges_dirty:
                self._gauges_dirty = False
                self.scheduler.publish_static_gauges()
            if slept >= CHECKPOINT_SECONDS:
                slept = 0.0
                await self._checkpoint()

    # -- watch sets: config plus API -------------------------------------------------------

    def watch_sets(self) -> list[tuple[WatchSet, str]]:
        """Every watch set with its origin (the runtime API lists these)."""
        return self.registry.listing()

    def _use_catalog(self, catalog: Catalog) -> None:
        stretched_before = self.catalog.plan.stretched if self.catalog.plan else ()
        self.eventinfo.apply(catalog)
        self.catalog = catalog
        self.eventinfo.schedule_all()
        if catalog.plan is not None and catalog.plan.stretched != stretched_before:
            self._log_plan()
        self.live.recount(catalog)
        self.scheduler.publish_static_gauges()
        self.metrics.keep_only("watch_set", catalog.sets)
        self.scheduler.reschedule()
        for spec in catalog.sets.values():
            watch_set_series(self.metrics, spec.name, spec.track_unknown)

    # -- reload ----------------------------------------------------------------------------

    def reload(self) -> bool:
        """Re-read the config file (SIGHUP). An invalid file keeps the old config running."""
        self.systemd.reloading()
        try:
            return self._reload()
        finally:
            self.systemd.ready(self._status_line())

    def _reload(self) -> bool:
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
            for section in ("upstream", "state", "server", "log", "partner", "cluster")
            if getattr(new, section) != getattr(self.config, section)
        ]
        if ignored:
            log.warning("these sections change only on restart", sections=ignored)
        n_old, n_new = self.config.notifications, new.notifications
        if (n_old.retry_schedule, n_old.timeout_seconds, n_old.deny_private_networks) != (
            n_new.retry_schedule,
            n_new.timeout_seconds,
            n_new.deny_private_networks,
        ) or n_old.alertmanager != n_new.alertmanager:
            log.warning(
                "retry schedule, timeouts, the private-network guard and alertmanager change "
                "only on restart; webhooks are reloaded"
            )
        watch_sets, files_changed = self._keep_event_strings(new)
        self.config = self.config.model_copy(
            update={
                "maintenance": new.maintenance,
                "venues": new.venues,
                "watch_sets": watch_sets,
                "notifications": n_old.model_copy(update={"webhooks": n_new.webhooks}),
                "actions": new.actions,
            }
        )
        self.secret_values.set(self._secrets_owner, secrets_in(self.config))
        if new.marketplace != self.config.marketplace:
            log.warning("the marketplace section changes only on restart; rules are reloaded")
        self._use_catalog(build_catalog(self.registry.effective()))
        watched = self.catalog.profiles
        if files_changed:
            self.live.adopt_keys(watched)  # the file's IDs were read anew: one string each
        for eid in [e for e in self.live.observed_at if e not in watched]:
            del self.live.observed_at[eid]  # unwatched: the store keeps its state
        task = asyncio.get_running_loop().create_task(self._reload_targets(new))
        self._background.add(task)  # a strong reference until it is done
        task.add_done_callback(self._background.discard)
        task.add_done_callback(lambda _: self.outbox.wake())
        self.metrics.config_reloads_total.labels("ok").inc()
        log.info(
            "config reloaded", watch_sets=len(self.catalog.sets), events=len(self.catalog.events)
        )
        return True

    def _keep_event_strings(self, new: Config) -> tuple[list[WatchSet], bool]:
        """The new config's watch sets, where each events file read the same as before keeps
        the ID strings read before (so that each event ID stays one string object), and
        whether some events file changed."""
        before = {ws.name: ws.events for ws in self.config.watch_sets}
        sets: list[WatchSet] = []
        changed = False
        for ws in new.watch_sets:
            events, old = ws.events, before.get(ws.name)
            if not isinstance(events, ListedEvents):
                sets.append(ws)
                continue
            if isinstance(old, ListedEvents) and events.file_ids == old.file_ids:
                kept = ListedEvents(events.listed, old.file_ids, events.attributed)
                ws = ws.model_copy(update={"events": kept})
            else:
                changed = True
            sets.append(ws)
        return sets, changed

    async def _reload_targets(self, new: Config) -> None:
        # API-made objects are re-read too: with several replicas, another one may have made
        # them since.
        await self.subscriptions.load(new.notifications.webhooks)
        await self.actions.load(new.actions)
        self._known_series()
        await self.registry.load()
        self._use_catalog(build_catalog(self.registry.effective()))

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

"""When each watch set is due: APScheduler interval jobs feeding the dispatcher.

A run never overlaps the previous run of its set (max_instances=1) and missed runs are
coalesced. Events whose venue is in its maintenance window are left out before they are queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from monitor.clock import Clock, SystemClock, utc_datetime
from monitor.config.catalog import Catalog
from monitor.core.batching import Split
from monitor.core.maintenance import in_window
from monitor.domain import STATUSES
from monitor.logs import get_logger
from monitor.metrics import Metrics
from monitor.poller.dispatcher import Dispatcher, Health, PollReport

log = get_logger("monitor.scheduler")


def _never(event_id: str, now: float) -> bool:
    return False


class MaintenanceView:
    """Which zones are in their maintenance window now, computed once per zone per second."""

    def __init__(
        self,
        catalog: Callable[[], Catalog],
        clock: Clock,
        retired: Callable[[str, float], bool] | None = None,
        mine: Callable[[str], bool] | None = None,
        retiring: Callable[[float], bool] | None = None,
    ) -> None:
        self._catalog = catalog
        self._clock = clock
        self.retired = retired or _never  # (event ID, now) -> is the event over?
        # (now) -> may any event be over by now? False lets whole batches skip the question.
        self.retiring = retiring or (lambda now: retired is not None)
        self.mine = mine  # with several replicas: is the event in one of our shards?
        self._stamp: tuple[int, int, int] | None = None
        self._flags: list[bool] = []

    def flags(self) -> list[bool]:
        """`flags[zone_index]` is True while that zone is in maintenance."""
        catalog = self._catalog()
        now = self._clock.wall()
        stamp = (int(now), id(catalog), len(catalog.zones))
        if stamp != self._stamp:
            at = utc_datetime(now)
            self._flags = [in_window(at, z.tz, z.window) for z in catalog.zones]
            self._stamp = stamp
        return self._flags

    def excluder(self) -> Callable[[str], bool]:
        """`excluded` as a closure with the time, the flags and the catalog looked up once."""
        profiles = self._catalog().profiles
        flags = self.flags()
        now = self._clock.wall()
        retired = self.retired
        mine = self.mine

        def excluded(event_id: str) -> bool:
            spec = profiles.get(event_id)
            if spec is None:
                return True
            if spec.zone >= 0 and flags[spec.zone]:
                return True
            if mine is not None and not mine(event_id):
                return True
            return retired(event_id, now)

        return excluded

    def splitter(self, all_watched: bool = False) -> Split | None:
        """`excluded` over a whole batch: (kept, dropped), in order. When no zone is in its
        window, there is one replica and no event is over, only unwatched events are dropped,
        and that is found a batch at a time; when the caller knows every event it holds is
        still watched (`all_watched`), there is nothing to drop: None."""
        if any(self.flags()) or self.mine is not None or self.retiring(self._clock.wall()):
            excluded = self.excluder()

            def split_each(ids: list[str]) -> tuple[list[str], list[str]]:
                kept: list[str] = []
                dropped: list[str] = []
                for eid in ids:
                    (dropped if excluded(eid) else kept).append(eid)
                return kept, dropped

            return split_each
        if all_watched:
            return None
        events = self._catalog().profiles

        def split(ids: list[str]) -> tuple[list[str], list[str]]:
            if all(map(events.__contains__, ids)):
                return ids, []
            return [e for e in ids if e in events], [e for e in ids if e not in events]

        return split

    def excluded(self, event_id: str) -> bool:
        """Whether an event must not be requested now: not watched any more, in maintenance,
        or over (retired)."""
        spec = self._catalog().profiles.get(event_id)
        if spec is None:
            return True
        if spec.zone >= 0 and self.flags()[spec.zone]:
            return True
        if self.mine is not None and not self.mine(event_id):
            return True
        return self.retired(event_id, self._clock.wall())


class PollScheduler:
    """Runs each watch set's poll at its interval; `run_once` polls sets now (tests, tools)."""

    def __init__(
        self,
        *,
        dispatcher: Dispatcher,
        catalog: Callable[[], Catalog],
        maintenance: MaintenanceView,
        metrics: Metrics,
        health: Health,
        status_counts: Callable[[str], dict[str, int]],
        clock: Clock | None = None,
        observed_at: Callable[[str], float | None] = lambda eid: None,
        status: Callable[[str], str | None] = lambda eid: None,
    ) -> None:
        self._observed_at = observed_at
        self._status = status
        self._dispatcher = dispatcher
        self._status_counts = status_counts
        self._catalog = catalog
        self._maintenance = maintenance
        self._metrics = metrics
        self._health = health
        self._clock = clock or SystemClock()
        self._scheduler: AsyncIOScheduler | None = None
        self._intervals: dict[str, float] = {}
        self._published: set[str] = set()
        self.run_seconds: dict[str, float] = {}  # how long each set's last run took
        self._settling: set[asyncio.Task[PollReport]] = set()
        self._region_cache: dict[str, tuple[Catalog, dict[str, str] | None]] = {}
        self._oldest_cache: dict[str, tuple[float, float]] = {}
        self.progress = 0  # bumps every time a run completes: the watchdog reads it
        self.last_progress = self._clock.monotonic()

    def publish_static_gauges(self) -> None:
        """Gauges that change only with the config; series of removed sets are dropped."""
        catalog = self._catalog()
        m = self._metrics
        m.events_watched.clear()
        m.events_without_time_zone.clear()
        m.events_in_maintenance.clear()
        for gone in self._published - set(catalog.sets):
            for status in STATUSES:
                with contextlib.suppress(KeyError):
                    m.events_by_status.remove(gone, status)
            with contextlib.suppress(KeyError):
                m.last_successful_poll_timestamp_seconds.remove(gone)
            with contextlib.suppress(KeyError):
                m.watch_set_interval_seconds.remove(gone)
            with contextlib.suppress(KeyError):
                m.oldest_observation_age_seconds.remove(gone)
        self._published = set(catalog.sets)
        self._health.nothing_to_poll = not catalog.profiles
        plan = catalog.plan
        if plan is not None:
            m.quota_calls_needed_per_day.set(plan.needed_per_day)
            m.quota_calls_planned_per_day.set(plan.planned_per_day)
            if plan.quota is not None:
                m.quota_calls_allowed_per_day.set(plan.quota)
        for name, spec in catalog.sets.items():
            m.events_watched.labels(name).set(len(spec.event_ids))
            no_tz = catalog.without_time_zone(spec.event_ids)
            m.events_without_time_zone.labels(name).set(no_tz)
            m.events_in_maintenance.labels(name).set(0)
            m.watch_set_interval_seconds.labels(name).set(spec.interval_seconds)
            m.oldest_observation_age_seconds.labels(name).set_function(
                functools.partial(self.oldest_observation_age, name)
            )

    def _regions(self, catalog: Catalog, name: str) -> dict[str, str] | None:
        """The set's events that have a region (None when none has: the common case), kept
        per catalog."""
        cached = self._region_cache.get(name)
        if cached is not None and cached[0] is catalog:
            return cached[1]
        regions: dict[str, str] = {}
        if catalog.has_regions():
            profiles = catalog.profiles
            regions = {
                e: r for e in catalog.sets[name].event_ids if (r := profiles[e].region) is not None
            }
        self._region_cache[name] = (catalog, regions or None)
        return regions or None

    def _pollable(
        self, catalog: Catalog, ids: Sequence[str], now: float
    ) -> tuple[Sequence[str], int, int]:
        """The events that may be polled now: ours, not in their maintenance window, not over;
        and how many were left out for maintenance and for being over. Each step is one pass
        over the IDs, skipped when it cannot drop anything."""
        mine = self._maintenance.mine
        if mine is not None:
            ids = [e for e in ids if mine(e)]  # the other replicas' shards are theirs
        in_maintenance = 0
        flags = self._maintenance.flags()
        if any(flags):
            profiles = catalog.profiles
            count = len(ids)
            ids = [e for e in ids if (z := profiles[e].zone) < 0 or not flags[z]]
            in_maintenance = count - len(ids)
        n_retired = 0
        if self._maintenance.retiring(now):
            retired = self._maintenance.retired
            count = len(ids)
            ids = [e for e in ids if not retired(e, now)]
            n_retired = count - len(ids)
        return ids, in_maintenance, n_retired

    def _due(self, name: str) -> tuple[dict[str | None, list[str]], int]:
        """The set's events due now, by region, and how many are in their maintenance window.

        This runs every tick over every event of the set: each step is one pass over the IDs
        (a comprehension or a C-level map), and steps that cannot drop anything are skipped.
        """
        catalog = self._catalog()
        spec = catalog.sets[name]
        now = self._clock.wall()
        seen = self._observed_at
        ids, in_maintenance, n_retired = self._pollable(catalog, spec.event_ids, now)
        if spec.status_intervals:
            # Status-aware: an event is due when its own interval (by its confirmed status) has
            # passed since it was last observed; half a tick of slack keeps it from slipping
            # a whole tick late.
            slack = spec.tick_seconds / 2
            status = self._status
            interval_for = spec.interval_for
            ids = [
                e
                for e in ids
                if not (last := seen(e)) or now - last >= interval_for(status(e)) - slack
            ]
        self._metrics.events_retired.labels(name).set(n_retired)
        regions = self._regions(catalog, name)
        if regions is None:
            return {None: list(ids)}, in_maintenance
        groups: dict[str | None, list[str]] = {}
        for eid in ids:
            region = regions.get(eid)
            group = groups.get(region)
            if group is None:
                group = groups[region] = []
            group.append(eid)
        return groups, in_maintenance

    def oldest_observation_age(self, name: str) -> float:
        """Seconds since the least recently observed event of a set was observed, among those
        that may be polled now (not in maintenance, not over, ours); 0 before any is.

        Worked out when /metrics is read (at most once a second per set), not on every run:
        it is a pass over every event of the set.
        """
        now = self._clock.wall()
        cached = self._oldest_cache.get(name)
        if cached is not None and 0 <= now - cached[0] < 1.0:
            return cached[1]
        catalog = self._catalog()
        spec = catalog.sets.get(name)
        if spec is None:
            return 0.0
        ids, _in_maintenance, _retired = self._pollable(catalog, spec.event_ids, now)
        # filter(None, ...) leaves out events never observed (None)
        oldest = min(filter(None, map(self._observed_at, ids)), default=now)
        age = max(0.0, now - oldest)
        self._oldest_cache[name] = (now, age)
        return age

    async def run_set(self, name: str, *, hand_over: bool = False) -> PollReport:
        """One poll run of one watch set: queue its due events and wait for them.

        With `hand_over` (scheduled runs), the run returns as soon as its last events have
        left the pool, so the next run can queue behind them and the budget never idles
        between rounds; its outcome is recorded when the requests complete.
        """
        if name not in self._catalog().sets:
            return PollReport()
        started = self._clock.monotonic()
        due, in_maintenance = self._due(name)
        m = self._metrics
        m.events_in_maintenance.labels(name).set(in_maintenance)
        sub = self._dispatcher.enqueue_groups(due)
        if hand_over:
            await self._dispatcher.wait_taken(sub)
        self.run_seconds[name] = self._clock.monotonic() - started
        if not sub.done.is_set():
            task = asyncio.create_task(self._settle(name, sub.done, sub.report, in_maintenance))
            self._settling.add(task)
            task.add_done_callback(self._settling.discard)
            if not hand_over:
                return await task
            return sub.report
        return self._record_run(name, sub.report, in_maintenance)

    async def scheduled_run(self, name: str) -> None:
        """The job of a set: a run, and while runs take longer than the interval (more work
        than budget), the next one at once, in the same job, so no round waits for a tick."""
        while True:
            await self.run_set(name, hand_over=True)
            spec = self._catalog().sets.get(name)
            if (
                spec is None
                or self._scheduler is None
                or self.run_seconds.get(name, 0.0) < spec.tick_seconds
            ):
                return

    async def _settle(
        self, name: str, done: asyncio.Event, report: PollReport, in_maintenance: int
    ) -> PollReport:
        await done.wait()
        return self._record_run(name, report, in_maintenance)

    def _record_run(self, name: str, report: PollReport, in_maintenance: int) -> PollReport:
        m = self._metrics
        report.skipped += in_maintenance
        outcome = "ok" if not report.failed else ("failed" if not report.ok else "partial")
        m.poll_runs_total.labels(name, outcome).inc()
        if not report.failed:
            m.last_successful_poll_timestamp_seconds.labels(name).set(self._clock.wall())
        self._publish_counts(name)
        self._health.readiness()  # keeps the gauge current
        self.progress += 1
        self.last_progress = self._clock.monotonic()
        return report

    def _publish_counts(self, name: str) -> None:
        live_counts = self._status_counts(name)
        for status, n in live_counts.items():
            self._metrics.events_by_status.labels(name, status).set(n)

    async def run_once(self, names: Iterable[str] | None = None) -> dict[str, PollReport]:
        """Poll the named sets (all by default) now, together, and wait for them."""
        chosen = list(names) if names is not None else list(self._catalog().sets)
        reports = await asyncio.gather(*(self.run_set(n) for n in chosen))
        return dict(zip(chosen, reports, strict=True))

    # -- the scheduler ---------------------------------------------------------------------

    def start(self) -> None:
        """Schedule every set, first runs now."""
        sched = AsyncIOScheduler(timezone=UTC)
        sched.add_listener(self._on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)
        sched.start()
        self._scheduler = sched
        self.reschedule()

    def reschedule(self) -> None:
        """Match the jobs to the current catalog (after a reload): add, remove, re-time."""
        sched = self._scheduler
        if sched is None:
            return
        sets = self._catalog().sets
        for name in list(self._intervals):
            if name not in sets:
                sched.remove_job(f"poll:{name}")
                del self._intervals[name]
        for name, spec in sets.items():
            tick = spec.tick_seconds
            if self._intervals.get(name) == tick:
                continue
            if name in self._intervals:
                sched.reschedule_job(f"poll:{name}", trigger="interval", seconds=tick)
                self._intervals[name] = tick
                continue
            sched.add_job(
                self.scheduled_run,
                "interval",
                seconds=tick,
                args=[name],
                id=f"poll:{name}",
                name=name,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=None,
                next_run_time=datetime.now(UTC),
            )
            self._intervals[name] = tick

    def _on_event(self, event: JobEvent) -> None:
        name = event.job_id.removeprefix("poll:")
        if event.code == EVENT_JOB_MAX_INSTANCES:
            self._metrics.poll_runs_total.labels(name, "skipped").inc()
        elif event.code == EVENT_JOB_ERROR:
            exc = getattr(event, "exception", None)
            log.error("poll run failed", watch_set=name, error=repr(exc))

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Stop scheduling, let runs in progress finish their requests, then shut down."""
        if self._scheduler is None:
            return
        self._scheduler.pause()
        await self._dispatcher.stop(drain_seconds)
        await asyncio.sleep(0)  # let the runs whose events just finished return
        if self._settling:
            await asyncio.wait(self._settling, timeout=1.0)
        self._scheduler.shutdown(wait=False)
        self._scheduler = None
        self._intervals.clear()

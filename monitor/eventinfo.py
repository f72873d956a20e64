"""Event details from the Partner API: venue time zones, names, dates; fetched in the background.

For every watched event the daemon asks the Partner API for its details, events without a
configured time zone first. A time zone found there puts the event under its venue's
maintenance window; names and dates enrich transitions; a past event date (or offsale) retires
the event. Details are kept in the store (a restart asks nothing again), refreshed on a slow
schedule, never dropped by a failed refresh; a 404 is remembered for a while. Nothing here ever
delays a poll: polling reads what is known, this fills it in.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from monitor.clock import Clock, SystemClock, iso_utc
from monitor.config.catalog import Catalog
from monitor.config.models import Partner
from monitor.logs import get_logger
from monitor.metrics import Metrics
from monitor.store.base import Store
from monitor.upstream.partner import (
    EventDetails,
    EventNotFound,
    PartnerAuthError,
    PartnerClient,
    PartnerError,
)

log = get_logger("monitor.eventinfo")

KIND = "event_details"
HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Known:
    """What the store remembers of one event's details."""

    status: str  # ok | not_found
    fetched_at: float
    details: EventDetails | None = None

    def to_spec(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "status": self.status,
            "fetched_at": self.fetched_at,
            "details": asdict(self.details) if self.details else None,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Known:
        """The inverse of `to_spec`."""
        raw = spec.get("details")
        return cls(
            spec.get("status", "ok"),
            float(spec.get("fetched_at", 0.0)),
            EventDetails(**raw) if isinstance(raw, dict) else None,
        )


def retire_at(details: EventDetails | None) -> float | None:
    """When an event is over: its date, or its offsale time if that comes first."""
    if details is None:
        return None
    times = [t for t in (details.event_date, details.offsale) if t is not None]
    return min(times) if times else None


def enrichment(details: EventDetails | None) -> dict[str, Any]:
    """The optional transition fields details give (only those known)."""
    if details is None:
        return {}
    out: dict[str, Any] = {
        "event_name": details.name,
        "venue_name": details.venue_name,
        "event_date": iso_utc(details.event_date) if details.event_date else None,
        "time_zone": details.time_zone,
    }
    return {k: v for k, v in out.items() if v is not None}


class EventInfo:
    """Known details per event, and the background task that keeps them current."""

    def __init__(
        self,
        *,
        store: Store,
        catalog: Callable[[], Catalog],
        metrics: Metrics,
        config: Partner | None,
        client: PartnerClient | None,
        clock: Clock | None = None,
        on_resolved: Callable[[], None] = lambda: None,
        mine: Callable[[str], bool] | None = None,
    ) -> None:
        self.mine = mine  # several replicas: each asks about its own shards' events
        self._store = store
        self._catalog = catalog
        self._metrics = metrics
        self.config = config
        self._client = client
        self._clock = clock or SystemClock()
        self._on_resolved = on_resolved
        self.known: dict[str, Known] = {}
        self._retire_at: dict[str, float] = {}
        self._earliest_retire: float | None = None  # min of _retire_at; None: to work out
        self._due: list[tuple[float, str]] = []
        self._scheduled: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._paused_until = 0.0

    # -- what is known ---------------------------------------------------------------------

    async def load(self) -> None:
        """Read remembered details from the store and apply their time zones."""
        for eid, spec in (await self._store.load_objects(KIND)).items():
            known = Known.from_spec(spec)
            self.known[eid] = known
            at = retire_at(known.details)
            if at is not None:
                self._retire_at[eid] = at
                self._earliest_retire = None
        self.apply(self._catalog())

    def apply(self, catalog: Catalog) -> int:
        """Give the catalog's events the time zones known for them; returns how many changed."""
        changed = 0
        for eid, known in self.known.items():
            d = known.details
            if d is not None and d.time_zone and eid in catalog.events:
                changed += catalog.resolve(eid, d.time_zone, d.venue_id)
        return changed

    def details(self, event_id: str) -> EventDetails | None:
        """The known details of an event."""
        known = self.known.get(event_id)
        return known.details if known else None

    def enrich(self, event_id: str) -> dict[str, Any]:
        """Optional transition fields for an event."""
        return enrichment(self.details(event_id))

    def retiring(self, now: float) -> bool:
        """Whether any event may be over by `now` (and retiring is on): when not, nobody need
        ask `retired` event by event."""
        if self.config is None or not self.config.retire_past_events or not self._retire_at:
            return False
        if self._earliest_retire is None:
            self._earliest_retire = min(self._retire_at.values())
        return self._earliest_retire <= now

    def retired(self, event_id: str, now: float) -> bool:
        """Whether an event is over (and retiring is on)."""
        if self.config is None or not self.config.retire_past_events:
            return False
        at = self._retire_at.get(event_id)
        return at is not None and at <= now

    # -- the background fetcher ------------------------------------------------------------

    def start(self) -> None:
        """Start fetching (no-op without a Partner API client)."""
        if self._client is not None and self._task is None:
            self.schedule_all()
            self._task = asyncio.create_task(self._loop(), name="eventinfo")

    async def stop(self) -> None:
        """Stop fetching."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def schedule_all(self) -> None:
        """Queue every watched event: unknown ones now (no zone first), known ones when due."""
        if self.config is None:
            return
        now = self._clock.wall()
        refresh = self.config.refresh_hours * HOUR
        retry_404 = self.config.not_found_retry_hours * HOUR
        for eid, spec in self._catalog().events.items():
            if self.mine is not None and not self.mine(eid):
                continue
            known = self.known.get(eid)
            if known is None:
                # Events that need a time zone go before those that only want names and dates.
                when = now - (1.0 if spec.zone < 0 else 0.0)
            elif known.status == "not_found":
                when = known.fetched_at + retry_404
            else:
                when = known.fetched_at + refresh
            self._push(eid, when)
        self._wake.set()

    def _push(self, eid: str, when: float) -> None:
        if self._scheduled.get(eid) == when:
            return
        self._scheduled[eid] = when
        heapq.heappush(self._due, (when, eid))

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock.wall()
            wait = 60.0
            if self._paused_until > now:
                wait = self._paused_until - now
            else:
                batch: list[str] = []
                while self._due and self._due[0][0] <= now and len(batch) < 4:
                    when, eid = heapq.heappop(self._due)
                    if self._scheduled.get(eid) != when or eid not in self._catalog().events:
                        continue
                    if self.mine is not None and not self.mine(eid):
                        del self._scheduled[eid]
                        continue
                    del self._scheduled[eid]
                    batch.append(eid)
                if batch:
                    await asyncio.gather(*(self.fetch(eid) for eid in batch))
                    continue
                if self._due:
                    wait = min(wait, max(0.05, self._due[0][0] - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def fetch(self, event_id: str) -> None:
        """Ask the Partner API about one event and remember the answer."""
        assert self._client is not None
        assert self.config is not None
        spec = self._catalog().events.get(event_id)
        if spec is None:
            return
        now = self._clock.wall()
        try:
            details = await self._client.get_event(spec.partner_event_id)
        except EventNotFound:
            known = Known("not_found", now)
            self._push(event_id, now + self.config.not_found_retry_hours * HOUR)
            self._failures.pop(event_id, None)
            log.info("partner API does not know this event", event_id=event_id)
            await self._remember(event_id, known)
            return
        except PartnerAuthError as exc:
            self._paused_until = now + 600
            self._push(event_id, now + 600)
            log.error("partner API refused the credentials; pausing 10 min", error=str(exc))
            return
        except PartnerError as exc:
            n = self._failures[event_id] = self._failures.get(event_id, 0) + 1
            retry = exc.retry_after or min(60.0 * 2 ** (n - 1), HOUR)
            self._push(event_id, now + retry)
            log.warning(
                "partner API lookup failed; keeping what is known",
                event_id=event_id,
                outcome=exc.outcome,
                retry_seconds=retry,
            )
            return
        self._failures.pop(event_id, None)
        self._push(event_id, now + self.config.refresh_hours * HOUR)
        await self._remember(event_id, Known("ok", now, details))
        at = retire_at(details)
        if at is not None:
            self._retire_at[event_id] = at
            self._earliest_retire = None
        else:
            self._retire_at.pop(event_id, None)
            self._earliest_retire = None
        if details.time_zone and self._catalog().resolve(
            event_id, details.time_zone, details.venue_id
        ):
            log.info("time zone resolved", event_id=event_id, time_zone=details.time_zone)
            self._on_resolved()

    async def _remember(self, event_id: str, known: Known) -> None:
        old = self.known.get(event_id)
        if known.status == "not_found" and old is not None and old.details is not None:
            # A 404 after good answers: keep the details (and the zone) we had.
            known = Known("not_found", known.fetched_at, old.details)
        self.known[event_id] = known
        await self._store.save_object(KIND, event_id, known.to_spec())

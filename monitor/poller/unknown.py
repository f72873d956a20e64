"""Events the upstream has answered UNKNOWN for a long time (a typo in an ID, a cancelled
event): when each began to, and how many per watch set have for `long_unknown_seconds`.

The answer's own word counts (`status: UNKNOWN`), not an event left out of an answer. Kept in
memory for the events watched: the count starts again after a restart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from itertools import compress

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.config.catalog import Catalog
from monitor.domain import UNKNOWN
from monitor.metrics import PREFIX

METRIC = PREFIX + "events_long_unknown"


class UnknownSince:
    """Since when (wall time) each event has answered UNKNOWN without a break."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._since)

    def since(self, event_id: str) -> float | None:
        """When the event began to answer UNKNOWN, or None when its last answer was not."""
        return self._since.get(event_id)

    def observe(self, ids: Sequence[str], statuses: Sequence[str | None], now: float) -> None:
        """Take one answer's statuses (in columns) observed at `now`."""
        since = self._since
        if UNKNOWN in statuses:
            unknown = [s == UNKNOWN for s in statuses]
            for eid in compress(ids, unknown):
                since.setdefault(eid, now)
            if since:
                for eid in compress(ids, [not u for u in unknown]):
                    since.pop(eid, None)
        elif since and not since.keys().isdisjoint(ids):
            for eid in ids:
                since.pop(eid, None)

    def long_unknown(self, now: float, age: float) -> Iterable[str]:
        """Events that have answered UNKNOWN for at least `age` seconds."""
        cutoff = now - age
        return (eid for eid, t in self._since.items() if t <= cutoff)

    def keep_only(self, watched: Callable[[str], bool]) -> None:
        """Forget events no longer watched."""
        gone = [eid for eid in self._since if not watched(eid)]
        for eid in gone:
            del self._since[eid]


class LongUnknownCollector(Collector):
    """`events_long_unknown{watch_set}`, counted when scraped (never an event ID as a label)."""

    def __init__(
        self,
        tracker: UnknownSince,
        catalog: Callable[[], Catalog],
        now: Callable[[], float],
        age: float,
    ) -> None:
        self._tracker = tracker
        self._catalog = catalog
        self._now = now
        self._age = age

    def collect(self) -> Iterable[GaugeMetricFamily]:
        """One sample per watch set (0 where none)."""
        catalog = self._catalog()
        self._tracker.keep_only(catalog.events.__contains__)
        counts = dict.fromkeys(catalog.sets, 0)
        for eid in self._tracker.long_unknown(self._now(), self._age):
            for name in catalog.events[eid].watch_sets:
                counts[name] = counts.get(name, 0) + 1
        family = GaugeMetricFamily(
            METRIC,
            f"Events that have answered UNKNOWN for at least {self._age:g} s "
            "(upstream.long_unknown_seconds): a wrong ID or a cancelled event.",
            labels=["watch_set"],
        )
        for name, n in sorted(counts.items()):
            family.add_metric([name], n)
        yield family

    def register(self, registry: CollectorRegistry) -> None:
        """Export on `registry`."""
        registry.register(self)

"""The in-memory view of every watched event: remembered state, last observation, status counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from monitor.config.catalog import Catalog
from monitor.core.transitions import EMPTY_STATE, EventState, noise_of, steady_states
from monitor.domain import STATUSES, UNKNOWN
from monitor.store.base import StoredState


class LiveState:
    """What the daemon knows right now. The store is the durable copy; this is the fast one.

    Status counts per watch set are kept up to date incrementally, so gauges cost nothing per
    event.
    """

    def __init__(self) -> None:
        self.states: dict[str, EventState] = {}
        self.observed_at: dict[str, float] = {}
        self.counts: dict[str, Counter[str]] = {}
        # Most events share one of a few states: keep one copy of each (a big memory saving
        # at a million events).
        self._intern: dict[EventState, EventState] = {}
        self.steady = steady_states(self._intern)
        self.noise = noise_of(self.steady)

    def load(self, stored: Mapping[str, StoredState]) -> None:
        """Take the states a store remembered."""
        intern = self._intern
        for eid, st in stored.items():
            state = st.state
            self.states[eid] = intern.setdefault(state, state)
            self.observed_at[eid] = st.observed_at

    def status(self, event_id: str) -> str | None:
        """The confirmed status, or None before the first observation."""
        return self.states.get(event_id, EMPTY_STATE).status[0]

    def resale_status(self, event_id: str) -> str | None:
        """The confirmed resale status, or None."""
        return self.states.get(event_id, EMPTY_STATE).resale[0]

    def recount(self, catalog: Catalog) -> None:
        """Rebuild the per-set status counts (at start and after a reload)."""
        counts: dict[str, Counter[str]] = {name: Counter() for name in catalog.sets}
        for name, spec in catalog.sets.items():
            c = counts[name]
            for eid in spec.event_ids:
                c[self.status(eid) or UNKNOWN] += 1
        self.counts = counts

    def apply(self, catalog: Catalog, changed: Mapping[str, EventState]) -> None:
        """Take changed states (already stored) and move the status counts along."""
        intern = self._intern
        for eid, new in changed.items():
            old = self.states.get(eid, EMPTY_STATE)
            self.states[eid] = intern.setdefault(new, new)
            before, after = old.status[0] or UNKNOWN, new.status[0] or UNKNOWN
            if before != after:
                spec = catalog.events.get(eid)
                for name in spec.watch_sets if spec else ():
                    c = self.counts.get(name)
                    if c is not None:
                        c[before] -= 1
                        c[after] += 1

    def status_counts(self, watch_set: str) -> dict[str, int]:
        """Events of a set by confirmed status (UNKNOWN includes "not yet known")."""
        c = self.counts.get(watch_set, Counter())
        return {s: c.get(s, 0) for s in STATUSES}

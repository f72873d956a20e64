"""The in-memory view of every watched event: remembered state, last observation, status counts."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterable, Iterable, Mapping
from itertools import repeat
from operator import itemgetter
from typing import cast

from monitor.config.catalog import Catalog
from monitor.core.transitions import EMPTY_STATE, EventState, noise_of, steady_states
from monitor.domain import STATUSES, UNKNOWN
from monitor.store.base import StateChunk, StoredState

_first = itemgetter(0)


def _with_unknown(confirmed: Counter[str | None]) -> Counter[str]:
    """Counts by confirmed status, "not yet known" (None) counted as UNKNOWN."""
    unknown = confirmed.pop(None, 0)
    counts = cast(Counter[str], confirmed)
    if unknown:
        counts[UNKNOWN] += unknown
    return +counts  # without zero counts


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

    def take(self, chunk: StateChunk) -> None:
        """Take a chunk of remembered states (`Store.iter_states`)."""
        intern = self._intern
        ours = {s: intern.setdefault(s, s) for s in chunk.tally}
        states = chunk.states
        if any(mine is not theirs for theirs, mine in ours.items()):
            states = list(map(ours.__getitem__, states))
        self.states.update(zip(chunk.event_ids, states, strict=True))
        self.observed_at.update(zip(chunk.event_ids, chunk.observed_at, strict=True))

    async def load_all(self, chunks: AsyncIterable[StateChunk], catalog: Catalog) -> int:
        """Take every state a store remembered, chunk by chunk, and count the statuses of each
        watch set (as `recount`); returns how many states were taken.

        Into an empty LiveState, the dicts start from the catalog's keys: an event's entries
        then use the catalog's own ID string, and a million IDs are a million strings rather
        than two million. Watched events the store does not know are left out again at the
        end. The empty dicts are replaced by new ones: take references to `states` and
        `observed_at` (or their methods) only after this.
        """
        watched = catalog.profiles
        loaded = 0
        if self.states or self.observed_at or not watched:
            async for chunk in chunks:
                self.take(chunk)
                loaded += len(chunk.event_ids)
            self.recount(catalog)
            return loaded
        unwatched = 0
        confirmed: Counter[str | None] = Counter()
        async for chunk in chunks:
            if not chunk.event_ids:
                continue
            if not loaded:
                # Placeholders that the chunks overwrite: a dict keeps its first key object.
                self.states = cast(dict[str, EventState], dict.fromkeys(watched))
                self.observed_at = cast(dict[str, float], self.states.copy())
            size = len(self.states)
            self.take(chunk)
            unwatched += len(self.states) - size
            loaded += len(chunk.event_ids)
            for state, n in chunk.tally.items():
                confirmed[state.status[0]] += n
        remembered = loaded - unwatched
        if loaded and remembered < len(watched):
            for eid in [eid for eid, state in self.states.items() if state is None]:
                del self.states[eid]
                del self.observed_at[eid]
        only = next(iter(catalog.sets.values())) if len(catalog.sets) == 1 else None
        if only is None or unwatched or len(only.event_ids) != len(watched):
            self.recount(catalog)  # several sets, or states of events no set watches
            return loaded
        # One set that holds every event, and every state taken is one of its events: the
        # chunks' tallies are its counts.
        confirmed[None] += len(watched) - remembered
        self.counts = {only.name: _with_unknown(confirmed)}
        return loaded

    def replace(self, event_ids: Iterable[str], chunks: Iterable[StateChunk]) -> None:
        """Replace what is known of these events by what the chunks hold; events the chunks do
        not name are forgotten. New entries are keyed with the given ID strings (pass the
        catalog's)."""
        states: dict[str, EventState] = {}
        times: dict[str, float] = {}
        for chunk in chunks:
            states.update(zip(chunk.event_ids, chunk.states, strict=True))
            times.update(zip(chunk.event_ids, chunk.observed_at, strict=True))
        intern = self._intern
        for eid in event_ids:
            state = states.get(eid)
            if state is None:
                self.states.pop(eid, None)
                self.observed_at.pop(eid, None)
            else:
                self.states[eid] = intern.setdefault(state, state)
                self.observed_at[eid] = times[eid]

    def adopt_keys(self, watched: Mapping[str, object]) -> None:
        """Key the dicts with `watched`'s own ID strings (the catalog's, after a reload read
        the events anew), so that each ID is one string again. Entries stay as they are."""
        if not watched or not self.states:
            return
        # A dict keeps the key object it had first: start from the catalog's, then update.
        states: dict[str, EventState | None] = dict.fromkeys(watched)
        states.update(self.states)
        seen: dict[str, float | None] = dict.fromkeys(watched)
        seen.update(self.observed_at)
        for eid in [eid for eid, state in states.items() if state is None]:
            del states[eid]
        for eid in [eid for eid, at in seen.items() if at is None]:
            del seen[eid]
        # In place: the poller holds these dicts' methods.
        self.states.clear()
        self.states.update(cast(dict[str, EventState], states))
        self.observed_at.clear()
        self.observed_at.update(cast(dict[str, float], seen))

    def status(self, event_id: str) -> str | None:
        """The confirmed status, or None before the first observation."""
        return self.states.get(event_id, EMPTY_STATE).status[0]

    def resale_status(self, event_id: str) -> str | None:
        """The confirmed resale status, or None."""
        return self.states.get(event_id, EMPTY_STATE).resale[0]

    def recount(self, catalog: Catalog) -> None:
        """Rebuild the per-set status counts (at start and after a reload)."""
        get = self.states.get
        counts: dict[str, Counter[str]] = {}
        for name, spec in catalog.sets.items():
            # At C speed: state -> its status field -> the confirmed value, counted.
            ids = spec.event_ids
            confirmed = map(_first, map(_first, map(get, ids, repeat(EMPTY_STATE))))
            counts[name] = _with_unknown(Counter(confirmed))
        self.counts = counts

    def apply(self, catalog: Catalog, changed: Mapping[str, EventState]) -> None:
        """Take changed states (already stored) and move the status counts along."""
        intern = self._intern
        profiles = catalog.profiles
        for eid, new in changed.items():
            old = self.states.get(eid, EMPTY_STATE)
            self.states[eid] = intern.setdefault(new, new)
            before, after = old.status[0] or UNKNOWN, new.status[0] or UNKNOWN
            if before != after:
                profile = profiles.get(eid)
                for name in profile.watch_sets if profile else ():
                    c = self.counts.get(name)
                    if c is not None:
                        c[before] -= 1
                        c[after] += 1

    def status_counts(self, watch_set: str) -> dict[str, int]:
        """Events of a set by confirmed status (UNKNOWN includes "not yet known")."""
        c = self.counts.get(watch_set, Counter())
        return {s: c.get(s, 0) for s in STATUSES}

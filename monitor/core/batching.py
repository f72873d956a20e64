"""Packing due events into upstream batches: one region per batch, oldest first, each event once."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import count

MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Batch:
    """IDs for one upstream request; `region` is the request's region parameter (None: none)."""

    region: str | None
    event_ids: tuple[str, ...]


@dataclass(slots=True)
class Taken:
    """What `DuePool.take` hands back: a batch (possibly empty) and the events it dropped."""

    batch: Batch
    dropped: list[str] = field(default_factory=list)


class DuePool:
    """Events waiting for a request, ordered by a priority (lower first: the oldest observation).

    Holds each event at most once however many watch sets asked for it. No I/O, no clock:
    the dispatcher owns one and tests drive it directly.
    """

    def __init__(self) -> None:
        # Per region: a list sorted by (priority, seq) read from a cursor, plus what was added
        # since it was last sorted. Adds come in bursts (a watch set's run) and takes in between
        # read slices: one C-level sort per burst is far cheaper than a heap push and pop per
        # event. Superseded items (a lower priority re-added, an event discarded) stay in place
        # and are skipped when their sequence no longer matches the entry.
        self._sorted: dict[str | None, list[tuple[float, int, str]]] = {}
        self._cursor: dict[str | None, int] = {}
        self._added: dict[str | None, list[tuple[float, int, str]]] = {}
        self._entries: dict[str, tuple[float, int, str | None]] = {}
        self._seq = count()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._entries

    def add(self, event_id: str, region: str | None, priority: float) -> bool:
        """Queue an event; returns False if it was queued already (it keeps the lower priority)."""
        entry = self._entries.get(event_id)
        if entry is not None and entry[0] <= priority and entry[2] == region:
            return False
        seq = next(self._seq)
        self._entries[event_id] = (priority, seq, region)
        added = self._added.get(region)
        if added is None:
            added = self._added[region] = []
        added.append((priority, seq, event_id))
        return entry is None

    def discard(self, event_id: str) -> None:
        """Forget a queued event (its slot is skipped lazily)."""
        self._entries.pop(event_id, None)

    def _settle(self, region: str | None) -> list[tuple[float, int, str]]:
        """The region's items in order from its cursor, new ones merged in."""
        items = self._sorted.get(region, [])
        cursor = self._cursor.get(region, 0)
        added = self._added.pop(region, None)
        if added:
            items = items[cursor:] + added
            items.sort()
            cursor = 0
        elif cursor > 4096 and cursor * 2 > len(items):
            items = items[cursor:]  # let go of what was read
            cursor = 0
        entries = self._entries
        while cursor < len(items):
            _prio, seq, eid = items[cursor]
            entry = entries.get(eid)
            if entry is not None and entry[1] == seq:
                break
            cursor += 1
        self._sorted[region] = items
        self._cursor[region] = cursor
        return items

    def take(self, limit: int, drop: Callable[[str], bool] | None = None) -> Taken:
        """Take up to `limit` events of one region: the region whose oldest event is oldest.

        Events for which `drop` says True (in maintenance, quarantined) leave the pool without
        joining the batch, and are listed in `dropped`.
        """
        best: tuple[float, int] | None = None
        region: str | None = None
        for reg in {*self._sorted, *self._added}:
            items = self._settle(reg)
            cursor = self._cursor[reg]
            if cursor >= len(items):
                del self._sorted[reg], self._cursor[reg]
                continue
            head = items[cursor]
            if best is None or head[:2] < best:
                best, region = head[:2], reg
        taken = Taken(Batch(region, ()))
        if best is None:
            return taken
        items = self._sorted[region]
        i = self._cursor[region]
        end = len(items)
        entries = self._entries
        ids: list[str] = []
        dropped = taken.dropped
        while i < end and len(ids) < limit:
            _prio, seq, eid = items[i]
            i += 1
            entry = entries.get(eid)
            if entry is None or entry[1] != seq:
                continue
            del entries[eid]
            if drop is not None and drop(eid):
                dropped.append(eid)
            else:
                ids.append(eid)
        self._cursor[region] = i
        taken.batch = Batch(region, tuple(ids))
        return taken


def plan_batches(
    events: Iterable[tuple[str, str | None, float]], batch_size: int = MAX_BATCH
) -> list[Batch]:
    """Pack `(event_id, region, priority)` into batches: the whole plan at once, for one pass."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
    pool = DuePool()
    for eid, region, prio in events:
        pool.add(eid, region, prio)
    out = []
    while len(pool):
        out.append(pool.take(batch_size).batch)
    return out

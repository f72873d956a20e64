"""Packing due events into upstream batches: one region per batch, oldest first, each event once."""

from __future__ import annotations

import heapq
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
        self._heaps: dict[str | None, list[tuple[float, int, str]]] = {}
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
        heapq.heappush(self._heaps.setdefault(region, []), (priority, seq, event_id))
        return entry is None

    def discard(self, event_id: str) -> None:
        """Forget a queued event (its heap slot is skipped lazily)."""
        self._entries.pop(event_id, None)

    def _head(self, region: str | None) -> tuple[float, int, str] | None:
        heap = self._heaps.get(region)
        while heap:
            _prio, seq, eid = heap[0]
            entry = self._entries.get(eid)
            if entry is not None and entry[1] == seq:
                return heap[0]
            heapq.heappop(heap)
        return None

    def take(self, limit: int, drop: Callable[[str], bool] | None = None) -> Taken:
        """Take up to `limit` events of one region: the region whose oldest event is oldest.

        Events for which `drop` says True (in maintenance, quarantined) leave the pool without
        joining the batch, and are listed in `dropped`.
        """
        best: tuple[float, int] | None = None
        region: str | None = None
        for reg in list(self._heaps):
            head = self._head(reg)
            if head is None:
                del self._heaps[reg]
                continue
            if best is None or head[:2] < best:
                best, region = head[:2], reg
        taken = Taken(Batch(region, ()))
        if best is None:
            return taken
        heap = self._heaps[region]
        ids: list[str] = []
        while heap and len(ids) < limit:
            _prio, seq, eid = heapq.heappop(heap)
            entry = self._entries.get(eid)
            if entry is None or entry[1] != seq:
                continue
            del self._entries[eid]
            if drop is not None and drop(eid):
                taken.dropped.append(eid)
            else:
                ids.append(eid)
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

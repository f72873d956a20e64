"""Packing due events into upstream batches: one region per batch, oldest first, each event once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

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


Split = Callable[[list[str]], tuple[list[str], list[str]]]
"""Splits IDs into (kept, dropped), keeping their order: a whole batch at a time."""


class DuePool:
    """Events waiting for a request, ordered by a priority (lower first: the oldest observation).

    Holds each event at most once however many watch sets asked for it. No I/O, no clock:
    the dispatcher owns one and tests drive it directly.
    """

    def __init__(self) -> None:
        # Membership and priority in one dict; per region, a list of IDs sorted by priority and
        # read from a cursor, plus what was added since it was last sorted. Adds come in bursts
        # (a watch set's run) and takes read slices in between: a C-level sort per burst and
        # column-at-a-time reads, no object per queued event. A slot whose event was discarded,
        # taken through an earlier slot, or moved to another region is skipped when read.
        self._prio: dict[str, float] = {}
        self._region: dict[str, str] = {}  # only events queued under a region other than None
        self._sorted: dict[str | None, list[str]] = {}
        self._cursor: dict[str | None, int] = {}
        self._added: dict[str | None, list[str]] = {}
        # Dead or doubled slots may exist (a discard, a re-add, a move to another region):
        # until then every slot is live and unique, and settling needs no filtering pass.
        self._stale = False

    def __len__(self) -> int:
        return len(self._prio)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._prio

    def add(self, event_id: str, region: str | None, priority: float) -> bool:
        """Queue an event; returns False if it was queued already (it keeps the lower priority)."""
        return self.add_many([event_id], region, [priority]) == 1

    def add_many(self, ids: Sequence[str], region: str | None, priorities: Sequence[float]) -> int:
        """Queue distinct events of one region with their priorities; returns how many were not
        queued before. One already queued keeps the lower priority (and takes the new region)."""
        prio = self._prio
        regions = self._region
        new = len(ids)
        if not prio.keys().isdisjoint(ids):
            fresh: list[str] = []
            fresh_prio: list[float] = []
            for eid, p in zip(ids, priorities, strict=True):
                old = prio.get(eid)
                if old is not None:
                    new -= 1
                    if old <= p and regions.get(eid) == region:
                        continue
                fresh.append(eid)
                fresh_prio.append(p)
            ids, priorities = fresh, fresh_prio
            self._stale = True
        if not ids:
            return new
        prio.update(zip(ids, priorities, strict=True))
        if region is not None:
            regions.update(dict.fromkeys(ids, region))
        elif regions:
            for eid in ids:
                if regions.pop(eid, None) is not None:
                    self._stale = True
        added = self._added.get(region)
        if added is None:
            self._added[region] = list(ids)
        else:
            added.extend(ids)
        return new

    def discard(self, event_id: str) -> None:
        """Forget a queued event (its slot is skipped lazily)."""
        if self._prio.pop(event_id, None) is not None:
            self._stale = True
        self._region.pop(event_id, None)

    def _live(self, region: str | None, ids: list[str]) -> list[str]:
        """The IDs that still hold a slot of this region (queued, and under this region)."""
        prio = self._prio
        regions = self._region
        if region is None:
            if not regions:
                return [e for e in ids if e in prio]
            return [e for e in ids if e in prio and e not in regions]
        return [e for e in ids if regions.get(e) == region]

    def _settle(self, region: str | None) -> list[str]:
        """The region's IDs in order from its cursor, new ones merged in, dead heads skipped."""
        items = self._sorted.get(region, [])
        cursor = self._cursor.get(region, 0)
        added = self._added.pop(region, None)
        if added:
            items = items[cursor:] + added if cursor < len(items) else added
            if self._stale:
                # One slot per event (a re-added one may hold two), each still live here.
                items = self._live(region, list(dict.fromkeys(items)))
                if not self._sorted.keys() - {region} and not self._added:
                    self._stale = False  # the only list is clean now
            # Stable: among equal priorities, the earlier added goes first. An event re-added
            # with a lower priority may sit twice; the first slot read takes it.
            items.sort(key=self._prio.__getitem__)
            cursor = 0
        elif cursor > 4096 and cursor * 2 > len(items):
            items = items[cursor:]  # let go of what was read
            cursor = 0
        if cursor < len(items) and not self._live(region, [items[cursor]]):
            while cursor < len(items) and not self._live(region, items[cursor : cursor + 1]):
                cursor += 1
        self._sorted[region] = items
        self._cursor[region] = cursor
        return items

    def take(
        self,
        limit: int,
        drop: Callable[[str], bool] | None = None,
        *,
        split: Split | None = None,
    ) -> Taken:
        """Take up to `limit` events of one region: the region whose oldest event is oldest.

        Events that `drop` says True for, or that `split` puts on its dropped side (in
        maintenance, quarantined), leave the pool without joining the batch, and are listed in
        `dropped`; they use no room in the batch.
        """
        prio = self._prio
        best: float | None = None
        region: str | None = None
        for reg in dict.fromkeys([*self._sorted, *self._added]):
            items = self._settle(reg)
            cursor = self._cursor[reg]
            if cursor >= len(items):
                del self._sorted[reg], self._cursor[reg]
                continue
            head = prio[items[cursor]]
            if best is None or head < best:
                best, region = head, reg
        taken = Taken(Batch(region, ()))
        if best is None:
            return taken
        items = self._sorted[region]
        i = self._cursor[region]
        end = len(items)
        regions = self._region
        pop = prio.pop
        ids: list[str] = []
        dropped = taken.dropped
        while i < end and len(ids) < limit:
            chunk = items[i : i + limit - len(ids)]
            i += len(chunk)
            if region is not None or regions:
                chunk = self._live(region, chunk)
            # pop, not a membership test: an event in the chunk twice is taken once.
            popped = list(map(pop, chunk, repeat(None)))
            if None in popped:
                chunk = [e for e, p in zip(chunk, popped, strict=True) if p is not None]
            got = chunk
            if regions:
                for eid in got:
                    regions.pop(eid, None)
            if split is not None:
                kept, gone = split(got)
                ids += kept
                dropped += gone
            elif drop is not None:
                for eid in got:
                    (dropped if drop(eid) else ids).append(eid)
            else:
                ids += got
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

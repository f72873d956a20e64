"""Packing due events into upstream batches: one region per batch, oldest first, each event once."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import compress, islice
from operator import le, ne

MAX_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Batch:
    """IDs for one upstream request; `region` is the request's region parameter (None: none)."""

    region: str | None
    event_ids: tuple[str, ...]


@dataclass(slots=True)
class Taken:
    """What `DueQueue.take` hands back: a batch (possibly empty) and the events it dropped."""

    batch: Batch
    dropped: list[str] = field(default_factory=list)


Split = Callable[[list[str]], tuple[list[str], list[str]]]
"""Splits IDs into (kept, dropped), keeping their order: a whole batch at a time."""


def sort_by_priority(ids: list[str], prios: list[float]) -> tuple[list[str], list[float]]:
    """`ids` and `prios` in priority order, stable: among equal priorities, list order.

    Priorities usually come in runs of equal values (the events of one answer share their
    observation time, and a watch set's run queues them in catalog order): then whole runs are
    sorted, a few hundred keys instead of a hundred thousand. Otherwise, an argsort by list
    index (no hashing).
    """
    n = len(prios)
    if n < 2:
        return list(ids), list(prios)
    most = n // RUNS_PER_SORTED_EVENT + 1
    # Where a run starts, found at C speed; given up once there are too many runs.
    starts = [0, *islice(compress(range(1, n), map(ne, islice(prios, 1, None), prios)), most)]
    if len(starts) > most:
        order = sorted(range(n), key=prios.__getitem__)
        return list(map(ids.__getitem__, order)), list(map(prios.__getitem__, order))
    ends = [*starts[1:], n]
    out_ids: list[str] = []
    out_prios: list[float] = []
    for k in sorted(range(len(starts)), key=lambda k: prios[starts[k]]):
        out_ids += ids[starts[k] : ends[k]]
        out_prios += prios[starts[k] : ends[k]]
    return out_ids, out_prios


RUNS_PER_SORTED_EVENT = 16  # runs sorted as runs while there is at most one per this many events


class DueQueue:
    """Events waiting for a request, oldest observation first (lower priority value first).

    The caller keeps membership: an event is never added while it is still queued (the
    dispatcher knows every event queued or in flight, and shares those between watch sets).
    So the queue needs no per-event bookkeeping at all: per region, a list of IDs and a parallel
    list of priorities, sorted once per burst of adds (a watch set's run) and read from a cursor
    in slices. No I/O, no clock: the dispatcher owns one and tests drive it directly.
    """

    def __init__(self) -> None:
        self._ids: dict[str | None, list[str]] = {}
        self._prios: dict[str | None, list[float]] = {}
        self._cursor: dict[str | None, int] = {}
        self._added: dict[str | None, tuple[list[str], list[float]]] = {}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def add_many(self, ids: Sequence[str], region: str | None, priorities: Sequence[float]) -> None:
        """Queue events of one region (none of them queued now) with their priorities."""
        if len(ids) != len(priorities):
            raise ValueError("one priority per event")
        added = self._added.get(region)
        if added is None:
            self._added[region] = (list(ids), list(priorities))
        else:
            added[0].extend(ids)
            added[1].extend(priorities)
        self._len += len(ids)

    def _settle(self, region: str | None) -> int:
        """Merge what was added into the region's sorted lists; returns the cursor."""
        cursor = self._cursor.get(region, 0)
        added = self._added.pop(region, None)
        ids = self._ids.get(region, [])
        prios = self._prios.get(region, [])
        if added is not None:
            if cursor < len(ids):
                ids, prios = ids[cursor:] + added[0], prios[cursor:] + added[1]
            else:
                ids, prios = added
            if not all(map(le, prios, islice(prios, 1, None))):
                ids, prios = sort_by_priority(ids, prios)
            cursor = 0
        elif cursor > 4096 and cursor * 2 > len(ids):
            ids, prios, cursor = ids[cursor:], prios[cursor:], 0  # let go of what was read
        self._ids[region], self._prios[region], self._cursor[region] = ids, prios, cursor
        return cursor

    def take(
        self,
        limit: int,
        drop: Callable[[str], bool] | None = None,
        *,
        split: Split | None = None,
    ) -> Taken:
        """Take up to `limit` events of one region: the region whose oldest event is oldest.

        Events that `drop` says True for, or that `split` puts on its dropped side (in
        maintenance, quarantined), leave the queue without joining the batch, and are listed in
        `dropped`; they use no room in the batch.
        """
        best: float | None = None
        region: str | None = None
        for reg in dict.fromkeys([*self._ids, *self._added]):
            cursor = self._settle(reg)
            prios = self._prios[reg]
            if cursor >= len(prios):
                del self._ids[reg], self._prios[reg], self._cursor[reg]
                continue
            if best is None or prios[cursor] < best:
                best, region = prios[cursor], reg
        taken = Taken(Batch(region, ()))
        if best is None:
            return taken
        items = self._ids[region]
        i = self._cursor[region]
        end = len(items)
        ids: list[str] = []
        dropped = taken.dropped
        while i < end and len(ids) < limit:
            chunk = items[i : i + limit - len(ids)]
            i += len(chunk)
            if split is not None:
                kept, gone = split(chunk)
                ids += kept
                dropped += gone
            elif drop is not None:
                for eid in chunk:
                    (dropped if drop(eid) else ids).append(eid)
            else:
                ids += chunk
        self._len -= i - self._cursor[region]
        self._cursor[region] = i
        taken.batch = Batch(region, tuple(ids))
        return taken

    def drain(self) -> list[str]:
        """Empty the queue; returns what it held."""
        out: list[str] = []
        for reg in dict.fromkeys([*self._ids, *self._added]):
            cursor = self._settle(reg)
            out += self._ids[reg][cursor:]
        self._ids.clear()
        self._prios.clear()
        self._cursor.clear()
        self._len = 0
        return out


def plan_batches(
    events: Iterable[tuple[str, str | None, float]], batch_size: int = MAX_BATCH
) -> list[Batch]:
    """Pack `(event_id, region, priority)` into batches: the whole plan at once, for one pass.

    An event listed more than once is planned once: with its lowest priority, or with the last
    region given when that differs.
    """
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be 1..{MAX_BATCH}")
    best: dict[str, tuple[float, str | None]] = {}
    for eid, region, prio in events:
        old = best.get(eid)
        if old is not None:
            if old[0] <= prio and old[1] == region:
                continue
            del best[eid]  # re-listed: it goes behind the others of its priority
        best[eid] = (prio, region)
    by_region: dict[str | None, tuple[list[str], list[float]]] = {}
    for eid, (prio, region) in best.items():
        ids, prios = by_region.setdefault(region, ([], []))
        ids.append(eid)
        prios.append(prio)
    queue = DueQueue()
    for region, (ids, prios) in by_region.items():
        queue.add_many(ids, region, prios)
    out = []
    while len(queue):
        out.append(queue.take(batch_size).batch)
    return out

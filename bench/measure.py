"""Arithmetic on what was measured: percentiles, request-log windows, per-event poll gaps, and
the machine's own load while a scenario ran."""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank method; NaN when there are no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Windows:
    """How requests fell into sliding windows of `per_seconds`."""

    worst: int  # most requests in any window [t, t + per_seconds)
    over: int  # windows starting at a request that hold more than the limit
    requests: int


def sliding_windows(times: Iterable[float], per_seconds: float, limit: int) -> Windows:
    """Every window that starts at a request's arrival: the fullest, and how many exceed `limit`.

    (A window holding the most requests can always be slid to start at one of them.)
    """
    ts = sorted(times)
    worst = over = 0
    for i, start in enumerate(ts):
        n = bisect.bisect_left(ts, start + per_seconds, lo=i) - i
        worst = max(worst, n)
        over += n > limit
    return Windows(worst, over, len(ts))


@dataclass(frozen=True)
class Gaps:
    """Longest times between two polls of one event, within an observation window."""

    events: int  # events polled at least twice in the window
    longest: float  # longest gap between two polls of one event
    p99: float  # 99th percentile of each event's longest gap
    mean: float  # mean gap between polls, over all gaps
    never_twice: int  # events polled fewer than two times in the window
    longest_open: float  # longest time since an event's last poll, at the window's end


def poll_gaps(
    polls: Iterable[tuple[float, Sequence[str]]], watched: Sequence[str], end: float
) -> Gaps:
    """Gaps per event from (arrival time, IDs) of the answered requests of a window."""
    last: dict[str, float] = {}
    longest: dict[str, float] = {}
    total = 0.0
    count = 0
    for t, ids in sorted(polls, key=lambda p: p[0]):
        for eid in ids:
            before = last.get(eid)
            if before is not None:
                gap = t - before
                total += gap
                count += 1
                if gap > longest.get(eid, 0.0):
                    longest[eid] = gap
            last[eid] = t
    per_event = list(longest.values())
    open_gaps = [end - last.get(eid, -math.inf) for eid in watched]
    return Gaps(
        events=len(per_event),
        longest=max(per_event, default=math.nan),
        p99=percentile(per_event, 0.99),
        mean=total / count if count else math.nan,
        never_twice=len(watched) - len(per_event),
        longest_open=max(open_gaps, default=math.nan),
    )


# -- the machine's own load -----------------------------------------------------------------------


def _busy_seconds() -> float:
    """CPU seconds spent busy by the whole machine since boot, from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class LoadMeter:
    """CPU the whole machine spent during a stretch, to tell what *other* programs used."""

    def __init__(self) -> None:
        self.busy = _busy_seconds()

    def busy_since(self) -> float:
        return _busy_seconds() - self.busy

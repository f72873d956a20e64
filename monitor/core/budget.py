"""Daily quota planning: stretch watch-set intervals, lowest priority first, to fit the quota.

Pure: given what each set needs and the quota, returns the intervals to use.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

DAY = 86400.0


@dataclass(frozen=True, slots=True)
class SetDemand:
    """What one watch set asks for."""

    name: str
    interval_seconds: float
    events: int
    priority: int = 0


@dataclass(frozen=True, slots=True)
class QuotaPlan:
    """The outcome: calls per day needed and planned, and the interval each set gets."""

    needed_per_day: float
    planned_per_day: float
    quota: int | None
    intervals: dict[str, float] = field(default_factory=dict)
    stretched: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        """Whether the planned calls fit the quota (always, without a quota)."""
        return self.quota is None or self.planned_per_day <= self.quota + 1e-6


def calls_per_day(demand: SetDemand, batch_size: int, interval: float | None = None) -> float:
    """Requests per day for a set polled every `interval` (default: its own) in full batches."""
    every = demand.interval_seconds if interval is None else interval
    return math.ceil(demand.events / batch_size) * DAY / every


def plan_quota(demands: Sequence[SetDemand], batch_size: int, quota: int | None) -> QuotaPlan:
    """Fit the sets into `quota` calls a day by stretching intervals, lowest priority first.

    Within a priority level every set is stretched by the same factor. A set is never
    stretched beyond once a day; if the quota cannot hold even that, the plan says so
    (`fits` is False) and every set polls once a day.
    """
    intervals = {d.name: d.interval_seconds for d in demands}
    needed = sum(calls_per_day(d, batch_size) for d in demands)
    if quota is None or needed <= quota:
        return QuotaPlan(needed, needed, quota, intervals)
    stretched: list[str] = []
    excess = needed - quota
    for priority in sorted({d.priority for d in demands}):
        level = [d for d in demands if d.priority == priority and d.events]
        current = sum(calls_per_day(d, batch_size, intervals[d.name]) for d in level)
        floor = sum(calls_per_day(d, batch_size, DAY) for d in level)
        if current <= 0:
            continue
        target = max(current - excess, floor)
        factor = current / target
        for d in level:
            intervals[d.name] = min(DAY, intervals[d.name] * factor)
            stretched.append(d.name)
        excess -= current - sum(calls_per_day(d, batch_size, intervals[d.name]) for d in level)
        if excess <= 1e-9:
            break
    planned = sum(calls_per_day(d, batch_size, intervals[d.name]) for d in demands)
    return QuotaPlan(needed, planned, quota, intervals, tuple(stretched))

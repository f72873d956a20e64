"""Time as a dependency: wall time for timestamps and time zones, monotonic time for intervals."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What the daemon asks of time. Pass one in; never read the time directly."""

    def wall(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back, for intervals and backoff."""
        ...


class SystemClock:
    """The real clock."""

    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when told to: for tests of time-dependent logic."""

    def __init__(self, wall: float = 1_764_000_000.0, monotonic: float = 1000.0) -> None:
        self._wall = wall
        self._mono = monotonic

    def wall(self) -> float:
        return self._wall

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        """Move both clocks forward."""
        self._wall += seconds
        self._mono += seconds

    def set_wall(self, when: datetime | float) -> None:
        """Jump the wall clock (the monotonic clock does not move)."""
        self._wall = when.timestamp() if isinstance(when, datetime) else when


def utc_datetime(epoch: float) -> datetime:
    """An aware UTC datetime for an epoch timestamp."""
    return datetime.fromtimestamp(epoch, tz=UTC)


def iso_utc(epoch: float) -> str:
    """RFC 3339 UTC with milliseconds and a Z, as in transitions and payloads."""
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"

"""Nightly maintenance windows in venue-local wall-clock time.

Seed 004: the back-end systems "go into a nightly maintenance mode at 2AM local time". A window
is a local start and end time (it may cross midnight). On daylight-saving nights the wall clock
skips or repeats an hour, and this module decides conservatively, so that no event is polled
while its back end may be down:

* a start or end that falls in a skipped hour moves to the first instant after the gap (as cron
  does), and a window that would then be empty keeps its nominal length;
* a start that falls in a repeated hour takes the first occurrence, an end the second, so the
  window covers both passes through the repeated hour.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class Window:
    """A daily window in local wall-clock time, `[start, end)`; `start > end` crosses midnight."""

    start: time
    end: time

    @property
    def nominal(self) -> timedelta:
        """Length of the window on an ordinary day."""
        s = timedelta(hours=self.start.hour, minutes=self.start.minute)
        e = timedelta(hours=self.end.hour, minutes=self.end.minute)
        return (e - s) % _DAY

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


DEFAULT_WINDOW = Window(time(2, 0), time(3, 0))


def local_instant(day: date, clock_time: time, tz: ZoneInfo, *, later: bool) -> datetime:
    """The UTC instant of a local wall-clock time, with the DST rules of the module docstring.

    `later` picks the second occurrence of a repeated time (for window ends).
    """
    naive = datetime.combine(day, clock_time)
    first = naive.replace(tzinfo=tz, fold=0)
    second = naive.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.astimezone(UTC)
    u0 = first.astimezone(UTC)
    u1 = second.astimezone(UTC)
    if u0.astimezone(tz).replace(tzinfo=None) == naive:
        # Repeated (ambiguous) time: fold=0 is the earlier instant.
        return u1 if later else u0
    # Skipped time (in a gap): the first instant after the gap, where the wall clock jumps.
    # fold=1 reads the time with the offset after the gap (an instant before the jump), fold=0
    # with the offset before it (an instant after): search between them to the second.
    after = second.utcoffset()
    lo, hi = int(u1.timestamp()), int(u0.timestamp())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).utcoffset() == after:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def window_bounds(day: date, tz: ZoneInfo, window: Window) -> tuple[datetime, datetime]:
    """The UTC start and end of the window that starts on local date `day`."""
    start = local_instant(day, window.start, tz, later=False)
    end_day = day if window.end > window.start else day + _DAY
    end = local_instant(end_day, window.end, tz, later=True)
    if end <= start:
        end = start + window.nominal
    return start, end


def current_window(now: datetime, tz: ZoneInfo, window: Window) -> tuple[datetime, datetime] | None:
    """The window that contains `now` (an aware datetime), as UTC bounds, or None."""
    today = now.astimezone(tz).date()
    for day in (today - _DAY, today):
        start, end = window_bounds(day, tz, window)
        if start <= now < end:
            return start, end
    return None


def in_window(now: datetime, tz: ZoneInfo, window: Window) -> bool:
    """Whether `now` (an aware datetime) lies in the venue's maintenance window."""
    return current_window(now, tz, window) is not None

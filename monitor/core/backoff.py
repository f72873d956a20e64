"""Retry timing: exponential backoff with full jitter, and reading the upstream's "wait" headers."""

from __future__ import annotations

from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def full_jitter(attempt: int, base: float, cap: float, rand: float) -> float:
    """Seconds to wait before retry number `attempt` (0-based); `rand` is uniform in [0, 1)."""
    return rand * min(cap, base * (2.0**attempt))


def retry_after_seconds(headers: Mapping[str, str], now_epoch: float) -> float | None:
    """How long the upstream asked us to wait, from `Retry-After` or `Rate-Limit-Reset`.

    `Retry-After` is delta-seconds or an HTTP date; `Rate-Limit-Reset` (Ticketmaster) is the
    epoch in milliseconds when the quota resets. When both are given the later one wins, so we
    never come back early. None when neither says anything usable.
    """
    waits: list[float] = []
    raw = headers.get("Retry-After")
    if raw:
        raw = raw.strip()
        try:
            waits.append(max(0.0, float(raw)))
        except ValueError:
            try:
                waits.append(max(0.0, parsedate_to_datetime(raw).timestamp() - now_epoch))
            except (TypeError, ValueError, IndexError):
                pass
    reset = headers.get("Rate-Limit-Reset")
    if reset:
        try:
            waits.append(max(0.0, float(reset) / 1000.0 - now_epoch))
        except ValueError:
            pass
    return max(waits) if waits else None

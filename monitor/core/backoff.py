"""Retry timing: exponential backoff with full jitter, and reading the upstream's "wait" headers."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def full_jitter(attempt: int, base: float, cap: float, rand: float) -> float:
    """Seconds to wait before retry number `attempt` (0-based); `rand` is uniform in [0, 1)."""
    # Capping the exponent first keeps 2**attempt from overflowing on a long outage.
    return rand * min(cap, base * (2.0 ** min(attempt, 64)))


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
            seconds = float(raw)
            if math.isfinite(seconds):
                waits.append(max(0.0, seconds))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                waits.append(max(0.0, parsedate_to_datetime(raw).timestamp() - now_epoch))
    reset = headers.get("Rate-Limit-Reset")
    if reset:
        try:
            epoch_ms = float(reset)
            if math.isfinite(epoch_ms):
                waits.append(max(0.0, epoch_ms / 1000.0 - now_epoch))
        except ValueError:
            pass
    return max(waits) if waits else None

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

    `Retry-After` is delta-seconds or an HTTP date. `Rate-Limit-Reset` (Ticketmaster) is the
    epoch in milliseconds when the *quota* resets, hours away, and it rides on every answer; it
    counts only when the quota is spent (`Rate-Limit-Available: 0`), or when it is all the
    answer says. A short spike-arrest 429 therefore never parks the daemon until the quota
    resets. None when nothing usable is given.
    """
    retry_after: float | None = None
    raw = headers.get("Retry-After")
    if raw:
        raw = raw.strip()
        try:
            seconds = float(raw)
            if math.isfinite(seconds):
                retry_after = max(0.0, seconds)
        except ValueError:
            with contextlib.suppress(TypeError, ValueError, IndexError):
                retry_after = max(0.0, parsedate_to_datetime(raw).timestamp() - now_epoch)
    reset_wait: float | None = None
    reset = headers.get("Rate-Limit-Reset")
    if reset:
        try:
            epoch_ms = float(reset)
            if math.isfinite(epoch_ms):
                reset_wait = max(0.0, epoch_ms / 1000.0 - now_epoch)
        except ValueError:
            pass
    available = headers.get("Rate-Limit-Available")
    spent = available is not None and available.strip() in ("0", "-0")
    if spent and reset_wait is not None:
        return max(reset_wait, retry_after or 0.0)
    if retry_after is not None:
        return retry_after
    if available is None:
        return reset_wait
    return None

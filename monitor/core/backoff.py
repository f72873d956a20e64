"""Retry timing: exponential backoff with full jitter, and reading the upstream's "wait" headers."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime


def full_jitter(attempt: int, base: float, cap: float, rand: float) -> float:
    """Seconds to wait before retry number `attempt` (0-based); `rand` is uniform in [0, 1)."""
    # Capping the exponent first keeps 2**attempt from overflowing on a long outage.
    return rand * min(cap, base * (2.0 ** min(attempt, 64)))


MAX_RETRY_AFTER = 300.0
"""The longest `Retry-After` honoured by default: a few minutes. A server that asks for more
(or for 10**20 seconds) is waited out for this long and then asked again."""

QUOTA_PERIOD = 86400.0
"""The longest wait for a quota reset (`Rate-Limit-Reset`): Ticketmaster's quota is per day, so
a reset further away than that is not a reset time anyone can mean."""


@dataclass(frozen=True, slots=True)
class ServerWait:
    """How long the upstream asked us to wait, and how long we will.

    `source` is `retry_after` or `quota_reset`; `asked` is what the header said (inf for a
    value too large to read as a number); `seconds` is that, capped.
    """

    seconds: float
    asked: float
    source: str

    @property
    def capped(self) -> bool:
        """Whether the upstream asked for more than we wait."""
        return self.asked > self.seconds


def _number(raw: str | None) -> float | None:
    """A header value as a number: None when not a number, NaN, or the word inf; a string of
    digits too long to represent is inf (to be capped), never an error."""
    if not raw:
        return None
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        return None
    if math.isnan(value) or (math.isinf(value) and not text.lstrip("+-").isdigit()):
        return None
    return value


def _retry_after(raw: str | None, now_epoch: float) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date; None when unusable."""
    seconds = _number(raw)
    if seconds is not None:
        return max(0.0, seconds)
    if not raw:
        return None
    with contextlib.suppress(TypeError, ValueError, IndexError, OverflowError):
        return max(0.0, parsedate_to_datetime(raw.strip()).timestamp() - now_epoch)
    return None


def server_wait(
    headers: Mapping[str, str],
    now_epoch: float,
    *,
    max_retry_after: float = MAX_RETRY_AFTER,
    max_reset: float = QUOTA_PERIOD,
) -> ServerWait | None:
    """How long the upstream asked us to wait, from `Retry-After` or `Rate-Limit-Reset`, capped.

    `Retry-After` is delta-seconds or an HTTP date, capped at `max_retry_after`.
    `Rate-Limit-Reset` (Ticketmaster) is the epoch in milliseconds when the *quota* resets,
    hours away, and it rides on every answer; it counts only when the quota is spent
    (`Rate-Limit-Available: 0`), or when it is all the answer says, and is capped at
    `max_reset` (the quota period). A short spike-arrest 429 therefore never parks the daemon
    until the quota resets. None when nothing usable is given.
    """
    retry_after = _retry_after(headers.get("Retry-After"), now_epoch)
    reset_ms = _number(headers.get("Rate-Limit-Reset"))
    reset_wait = None if reset_ms is None else max(0.0, reset_ms / 1000.0 - now_epoch)
    available = headers.get("Rate-Limit-Available")
    spent = available is not None and available.strip() in ("0", "-0")
    if reset_wait is not None and (spent or (retry_after is None and available is None)):
        if spent and retry_after is not None and retry_after > reset_wait:
            return ServerWait(min(retry_after, max_retry_after), retry_after, "retry_after")
        return ServerWait(min(reset_wait, max_reset), reset_wait, "quota_reset")
    if retry_after is not None:
        return ServerWait(min(retry_after, max_retry_after), retry_after, "retry_after")
    return None


def retry_after_seconds(
    headers: Mapping[str, str],
    now_epoch: float,
    *,
    max_retry_after: float = MAX_RETRY_AFTER,
    max_reset: float = QUOTA_PERIOD,
) -> float | None:
    """`server_wait(...)` in seconds (capped), or None when nothing usable is given."""
    wait = server_wait(headers, now_epoch, max_retry_after=max_retry_after, max_reset=max_reset)
    return None if wait is None else wait.seconds

"""One request budget per API key, shared by every watch set.

Two gates, both "at most `requests` in any `per_seconds`":

1. asyncio-throttle decides when a request may *start*;
2. a ledger of *send times* lets a slot go only `per_seconds` after its request actually left
   (its headers were written), and counts a request that has started but not left yet as
   occupying its slot. The first gate alone counts decisions: when the event loop lags, or
   connections take a while to open, requests decided at different times leave together, and
   the upstream, which counts arrivals, sees more than the limit in one window.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from asyncio_throttle.throttler import Throttler

from monitor.core.backoff import QUOTA_PERIOD


class Slot:
    """One request's place in the budget; `sent()` when its headers are written."""

    __slots__ = ("at", "reserved")

    #: A slot nobody marked sent within this long counts as sent when it was reserved.
    STALE_SECONDS = 60.0

    def __init__(self) -> None:
        self.at: float | None = None  # monotonic send time; None while not sent yet
        self.reserved = time.monotonic()

    def sent(self) -> None:
        """The request left now (idempotent: the first call counts)."""
        if self.at is None:
            self.at = time.monotonic()


class RateBudget:
    """The shared budget, plus pauses the upstream asks for and quota pacing."""

    def __init__(
        self,
        requests: int,
        per_seconds: float,
        *,
        margin: float = 0.01,
        max_pause: float = QUOTA_PERIOD,
    ) -> None:
        self.requests = requests
        self.max_pause = max_pause
        self.per_seconds = per_seconds
        self._period = per_seconds * (1.0 + margin)
        # Requests go out evenly spaced (Apigee-style spike arrest counts "5 per second" as
        # one per 200 ms), reserved atomically so concurrent workers never share a turn.
        self._gap = self._period / requests
        self._next_turn = 0.0
        self._throttler = Throttler(rate_limit=requests, period=self._period, retry_interval=0.005)
        self._ledger: deque[Slot] = deque()
        self._paused_until = 0.0
        self._pause_started = 0.0
        self._pause_reason = ""
        self._spacing = 0.0  # minimum seconds between requests while the quota runs low
        self._last_sent = 0.0

    def resize(self, requests: int) -> None:
        """Change the requests allowed per window (a replica's share of the key's budget).

        0 blocks every request until a share is given.
        """
        self.requests = requests
        self._throttler.rate_limit = max(1, requests)
        self._gap = self._period / requests if requests else self._period

    def pause_for(self, seconds: float, reason: str = "") -> float:
        """Hold every request back for `seconds` (a 429's Retry-After, an auth back-off), at
        most `max_pause`; `reason` says why (for readiness and logs).

        Returns by how much the pause grew (concurrent 429s extend one pause, not add up).
        """
        seconds = min(max(0.0, seconds), self.max_pause)  # NaN and absurd values included
        now = time.monotonic()
        before = max(self._paused_until, now)
        until = now + seconds
        if until > self._paused_until:
            if self._paused_until <= now:
                self._pause_started = now
            self._paused_until = until
            if reason:
                self._pause_reason = reason
        return self._paused_until - before

    def observe_quota(
        self, available: int | None, reset_epoch: float | None, now_epoch: float
    ) -> float:
        """Pace requests so the quota the upstream reports lasts until it resets.

        With `available` calls left until `reset_epoch`, requests are spaced at least
        (time left) / (calls left - a small reserve) apart whenever that is slower than the
        configured rate; at the reserve, requests pause until the reset (never longer than
        `max_pause`, whatever the reset says). Without both numbers nothing changes. Returns by
        how much a pause grew (0 when none began).
        """
        if available is None or reset_epoch is None:
            return 0.0
        left = min(reset_epoch - now_epoch, self.max_pause)
        if not left > 0:  # NaN too
            self._spacing = 0.0
            return 0.0
        reserve = max(1, available // 100)
        if available <= reserve:
            self._spacing = 0.0
            return self.pause_for(left, "the upstream quota is spent until it resets")
        spacing = left / (available - reserve)
        self._spacing = spacing if spacing > self.per_seconds / max(1, self.requests) else 0.0
        return 0.0

    @property
    def spacing(self) -> float:
        """The current quota pacing (0 when the configured rate applies)."""
        return self._spacing

    @property
    def pause_reason(self) -> str:
        """Why the current (or last) pause began."""
        return self._pause_reason

    @property
    def pause_length(self) -> float:
        """How long the current pause lasts from its start to its end (0 when not paused)."""
        if self._paused_until <= time.monotonic():
            return 0.0
        return self._paused_until - self._pause_started

    @property
    def paused_for(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - time.monotonic())

    def _ledger_wait(self) -> float:
        """0 when a slot is free now, else how long to wait before looking again."""
        now = time.monotonic()
        ledger = self._ledger
        for slot in ledger:
            if slot.at is None and now - slot.reserved > Slot.STALE_SECONDS:
                slot.at = slot.reserved  # its owner never said: assume it left at once
        while ledger and ledger[0].at is not None and ledger[0].at <= now - self._period:
            ledger.popleft()
        busy = 0
        earliest = None
        for slot in ledger:
            if slot.at is None or slot.at > now - self._period:
                busy += 1
                if slot.at is not None and (earliest is None or slot.at < earliest):
                    earliest = slot.at
        if busy < self.requests:
            return 0.0
        if earliest is None:
            return 0.005  # every slot is a request still on its way out
        return max(0.001, earliest + self._period - now)

    async def acquire(self) -> Slot:
        """Wait until a request may be sent; returns its slot (call `sent()` when it left)."""
        while True:
            if self.requests <= 0:
                await asyncio.sleep(0.2)  # no share of the budget (yet)
                continue
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            now = time.monotonic()
            gap = max(self._gap, self._spacing)
            turn = max(now, self._next_turn, self._last_sent + self._spacing)
            self._next_turn = turn + gap
            if turn > now:
                await asyncio.sleep(turn - now)
            await self._throttler.acquire()  # type: ignore[no-untyped-call]
            while (wait := self._ledger_wait()) > 0:  # noqa: ASYNC110 - a time-based wait
                await asyncio.sleep(wait)
            if self._paused_until > time.monotonic():
                continue  # a pause began while we waited: the throttle slot is spent, wait
            self._last_sent = time.monotonic()
            slot = Slot()
            self._ledger.append(slot)
            return slot

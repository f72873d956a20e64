"""One request budget per API key, shared by every watch set (asyncio-throttle underneath)."""

from __future__ import annotations

import asyncio
import time

from asyncio_throttle.throttler import Throttler


class RateBudget:
    """At most `requests` requests in any `per_seconds` window, plus pauses the upstream asks for.

    The window is widened by `margin` (a fraction) so that small differences between when we
    send and when the upstream counts never put `requests + 1` requests into its window.
    """

    def __init__(self, requests: int, per_seconds: float, *, margin: float = 0.01) -> None:
        self.requests = requests
        self.per_seconds = per_seconds
        self._throttler = Throttler(
            rate_limit=requests, period=per_seconds * (1.0 + margin), retry_interval=0.005
        )
        self._paused_until = 0.0

    def pause_for(self, seconds: float) -> float:
        """Hold every request back for `seconds` (a 429's Retry-After, an auth back-off).

        Returns by how much the pause grew (concurrent 429s extend one pause, not add up).
        """
        before = max(self._paused_until, time.monotonic())
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        return self._paused_until - before

    @property
    def paused_for(self) -> float:
        """Seconds left in the current pause (0 when not paused)."""
        return max(0.0, self._paused_until - time.monotonic())

    async def acquire(self) -> None:
        """Wait until a request may be sent, then count it."""
        while True:
            wait = self._paused_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            await self._throttler.acquire()  # type: ignore[no-untyped-call]
            if self._paused_until <= time.monotonic():
                return
            # A pause began while we waited for a slot: the slot is spent, wait out the pause.

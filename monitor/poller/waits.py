"""Waits the upstream asks for, and the log of failures that repeat.

Every wait has a ceiling (the client caps `Retry-After`, the budget caps any pause at one quota
period) and is logged with what was asked; a pause of `unready_after` seconds or more makes the
daemon unready with the reason. A failure that repeats gets a log line at once, then at most one
every `log_every` seconds with how many were held back (`monitor.core.summary`); the metrics
count every one.
"""

from __future__ import annotations

from collections.abc import Hashable

from monitor.clock import Clock
from monitor.core.summary import Summary
from monitor.logs import get_logger
from monitor.metrics import Metrics
from monitor.poller.budget import RateBudget
from monitor.upstream.errors import RateHeaders, UpstreamError

log = get_logger("monitor.dispatcher")


class UpstreamWaits:
    """Pauses of the shared budget as the upstream asks, and summarised failure lines."""

    def __init__(
        self,
        *,
        budget: RateBudget,
        metrics: Metrics,
        clock: Clock,
        unready_after: float = 60.0,
        log_every: float = 60.0,
    ) -> None:
        self._budget = budget
        self._metrics = metrics
        self._clock = clock
        self._unready_after = unready_after
        self._summary = Summary(log_every, max_keys=256)
        self._failing: set[Hashable] = set()  # summary keys of failures since a success

    # -- logs ------------------------------------------------------------------------------

    def admit(self, key: Hashable) -> int | None:
        """Whether a failure gets a log line now: None to hold it back, else how many were
        held back since its last line. The run ends at the next success (`recovered`)."""
        self._failing.add(key)
        return self._summary.admit(key, self._clock.monotonic())

    def note(self, key: Hashable) -> int | None:
        """Like `admit`, for something odd that is not a failure (no run to end)."""
        return self._summary.admit(key, self._clock.monotonic())

    def log_failure(self, exc: UpstreamError, attempt: int, n_ids: int, region: str | None) -> None:
        """One failed Inventory Status request, summarised by outcome and status."""
        held = self.admit(("failed", exc.outcome, exc.status))
        if held is None:
            return
        log.warning(
            "upstream request failed",
            api="inventory",
            outcome=exc.outcome,
            status=exc.status,
            attempt=attempt,
            n_ids=n_ids,
            region=region,
            error=str(exc),
            not_logged=held,
        )

    def recovered(self) -> None:
        """A request succeeded: end the failure runs, saying how many lines were held back."""
        if not self._failing:
            return
        held = sum(self._summary.clear(key) for key in self._failing)
        self._failing.clear()
        if held:
            log.info("upstream requests succeed again", failures_not_logged=held)

    # -- pauses ----------------------------------------------------------------------------

    def pause(self, seconds: float, exc: UpstreamError, what: str) -> None:
        """Hold every request back as the upstream asked (already capped), counted and
        logged with what it asked for."""
        told = exc.wait
        added = self._budget.pause_for(seconds, f"the upstream answered {what}")
        self._metrics.upstream_rate_limited_seconds_total.inc(added)
        if added <= 0:
            return  # a concurrent answer asked for the same pause
        held = self.admit(("pause", what))
        if held is not None:
            log.warning(
                "upstream asked to wait: requests paused",
                answer=what,
                pause_seconds=round(seconds, 3),
                asked_seconds=None if told is None else told.asked,
                capped=told is not None and told.capped,
                not_logged=held,
            )

    def observe_quota(self, rate: RateHeaders | None) -> None:
        """Take an answer's quota headers: pacing, and a pause once the quota is spent."""
        if rate is None:
            return
        if rate.available is not None:
            self._metrics.upstream_quota_remaining.set(rate.available)
        now = self._clock.wall()
        added = self._budget.observe_quota(rate.available, rate.reset_epoch, now)
        if added <= 0:
            return
        self._metrics.upstream_rate_limited_seconds_total.inc(added)
        asked = (rate.reset_epoch or now) - now
        held = self.admit(("pause", "quota"))
        if held is not None:
            log.warning(
                "upstream quota spent: requests paused until it resets",
                pause_seconds=round(self._budget.paused_for, 3),
                reset_in_seconds=round(asked, 3),
                capped=asked > self._budget.max_pause,
                not_logged=held,
            )

    def pause_reason(self) -> str | None:
        """Why requests are held back, while a pause of `unready_after` seconds or more
        lasts (readiness reports it); None otherwise."""
        left = self._budget.paused_for
        if left <= 0 or self._budget.pause_length < self._unready_after:
            return None
        return f"upstream requests paused for {left:.0f} s more: {self._budget.pause_reason}"

"""What an attempt's outcome means for its delivery: delivered, retried on the schedule (a
`Retry-After` honoured), a dead letter, or its target disabled (a 410 Gone)."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Protocol

from monitor.clock import Clock
from monitor.core.filters import TransitionLike
from monitor.logs import get_logger
from monitor.metrics import Metrics
from monitor.notify.base import AttemptResult, Target
from monitor.notify.subscriptions import Subscriptions
from monitor.notify.webhook import WebhookTarget
from monitor.store.base import Delivery, Store

log = get_logger("monitor.outbox")

MAX_RETRY_AFTER = 86400.0


def next_delay(schedule: Sequence[float], attempts: int, rand: float) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones, ±10% jitter; None = dead.

    `schedule[i]` is the delay before attempt i (0-based), so a schedule of n entries allows n
    attempts in all.
    """
    if attempts >= len(schedule):
        return None
    return schedule[attempts] * (0.9 + 0.2 * rand)


class ExtraTargets(Protocol):
    """More outbox targets beside the webhooks (the marketplace action rules)."""

    def targets(self) -> list[Target]:
        """Every target."""
        ...

    def route_all(self, transitions: Sequence[TransitionLike]) -> list[list[str]]:
        """Target names per transition."""
        ...

    async def disable(self, name: str, reason: str) -> None:
        """Stop attempting a target (its deliveries stay)."""
        ...


class Outcomes:
    """Records attempts: metrics, logs, and the store's rows (a success goes to `delivered`,
    which writes it in batches; anything else is written before `settle` returns)."""

    def __init__(
        self,
        *,
        store: Store,
        subscriptions: Subscriptions,
        metrics: Metrics,
        schedule: Sequence[float],
        clock: Clock,
        rng: random.Random,
        extra: ExtraTargets | None,
        delivered: Callable[[str], None],
    ) -> None:
        self._store = store
        self._subs = subscriptions
        self._metrics = metrics
        self._schedule = list(schedule)
        self._clock = clock
        self._rng = rng
        self._extra = extra
        self._delivered = delivered

    async def settle(
        self, target: Target, delivery: Delivery, result: AttemptResult
    ) -> float | None:
        """Record how an attempt went. None: delivered. Otherwise it is not (yet): when its
        next attempt is due, or 0.0 when none is planned (a dead letter, a disabled target)."""
        m = self._metrics
        name = target.name
        webhook = isinstance(target, WebhookTarget)
        now = self._clock.wall()
        attempts = delivery.attempts + 1
        if webhook:
            m.webhook_deliveries_total.labels(name, result.outcome).inc()
        if result.outcome == "success":
            if result.result is None:
                self._delivered(delivery.id)
            else:
                await self._store.delivery_done(delivery.id, result.result, now)
            if webhook:
                m.webhook_delivery_latency_seconds.labels(name).observe(
                    max(0.0, now - delivery.created_at)
                )
            return None
        log.warning(
            "delivery failed" if not webhook else "webhook delivery failed",
            subscription=name,
            delivery_id=delivery.id,
            attempt=attempts,
            outcome=result.outcome,
            status=result.status,
            error=result.error,
        )
        if result.outcome == "gone":
            await self._store.delivery_retry(delivery.id, attempts, now, result.error)
            reason = result.error or "the endpoint answered 410 Gone"
            if webhook:
                await self._subs.set_enabled(name, False, reason)
                m.webhook_subscription_enabled.labels(name).set(0)
            elif self._extra is not None:
                await self._extra.disable(name, reason)
            log.error("target disabled", subscription=name, reason=reason)
            return 0.0
        delay = next_delay(self._schedule, attempts, self._rng.random())
        if delay is None or result.outcome == "dead":
            await self._store.delivery_dead(delivery.id, attempts, result.error, now)
            if webhook:
                m.webhook_deliveries_total.labels(name, "dead").inc()
            log.error(
                "delivery is a dead letter",
                subscription=name,
                delivery_id=delivery.id,
                attempts=attempts,
                why="not retried" if result.outcome == "dead" else "retry schedule spent",
            )
            return 0.0
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, MAX_RETRY_AFTER))
        await self._store.delivery_retry(delivery.id, attempts, now + delay, result.error)
        return now + delay

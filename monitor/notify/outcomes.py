"""What an attempt's outcome means for its delivery: delivered, retried on the schedule (a
`Retry-After` honoured), a dead letter, or its target disabled (a 410 Gone)."""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

from monitor.clock import Clock
from monitor.core.filters import TransitionLike
from monitor.core.summary import Summary
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


class DeliveryLog:
    """Delivery failures as an operator can read them during an outage.

    A receiver that is down fails every attempt, hundreds a second: per target and kind of
    failure (outcome and status), the first is logged at once, then one line every `every`
    seconds with how many were held back; a line when the target succeeds again. The metrics
    count every attempt. At most `max_targets` targets are remembered (oldest forgotten).
    """

    def __init__(self, clock: Clock, every: float = 60.0, max_targets: int = 4096) -> None:
        self._clock = clock
        self._summary = Summary(every, max_keys=max_targets * 4)
        self._failing: OrderedDict[str, set[Hashable]] = OrderedDict()
        self._max = max_targets

    def failed(self, target: str, kind: Hashable, level: str, event: str, **fields: Any) -> None:
        """An attempt of `target` failed this way: log it, or count it for the next line."""
        kinds = self._failing.get(target)
        if kinds is None:
            kinds = self._failing[target] = set()
            if len(self._failing) > self._max:
                self._failing.popitem(last=False)
        self._failing.move_to_end(target)
        key = (target, kind)
        kinds.add(key)
        held = self._summary.admit(key, self._clock.monotonic())
        if held is None:
            return
        if held:
            fields["repeated"] = held  # like this one since the last line, not logged
        getattr(log, level)(event, **fields)

    def succeeded(self, target: str) -> None:
        """`target` took a delivery: end its runs of failures, with a line if there were any."""
        kinds = self._failing.pop(target, None)
        if not kinds:
            return
        held = sum(self._summary.clear(key) for key in kinds)
        log.info("deliveries succeed again", subscription=target, failures_not_logged=held)


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
        log_every: float = 60.0,
    ) -> None:
        self._store = store
        self._subs = subscriptions
        self._metrics = metrics
        self._schedule = list(schedule)
        self._clock = clock
        self._rng = rng
        self._extra = extra
        self._delivered = delivered
        self.log = DeliveryLog(clock, log_every)

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
            self.log.succeeded(name)
            if result.result is None:
                self._delivered(delivery.id)
            else:
                await self._store.delivery_done(delivery.id, result.result, now)
            if webhook:
                m.webhook_delivery_latency_seconds.labels(name).observe(
                    max(0.0, now - delivery.created_at)
                )
            return None
        self.log.failed(
            name,
            (result.outcome, result.status),
            "warning",
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
            self.log.failed(
                name,
                "dead",
                "error",
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

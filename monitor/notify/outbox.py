"""The delivery worker: sends what the outbox holds, retries on a schedule, keeps dead letters.

The outbox lives in the store (written in the same transaction as the transitions), so a crash
loses nothing: after a restart every pending delivery is sent again, with the same webhook-id.
Each subscription has its own concurrency limit, and only the earliest pending delivery of an
event is ever sent to a subscriber, so one event's transitions arrive in order and a slow or dead
endpoint holds back nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from typing import Protocol

from monitor.clock import Clock, SystemClock
from monitor.core.filters import TransitionLike
from monitor.domain import Transition
from monitor.logs import get_logger
from monitor.metrics import Metrics
from monitor.notify.base import AttemptResult, Target
from monitor.notify.subscriptions import Subscriptions
from monitor.notify.webhook import WebhookSender, WebhookTarget
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


class OutboxWorker:
    """Pumps due deliveries to their targets. Also a Notifier: new transitions wake it."""

    def __init__(
        self,
        *,
        store: Store,
        subscriptions: Subscriptions,
        sender: WebhookSender,
        metrics: Metrics,
        schedule: Sequence[float],
        clock: Clock | None = None,
        rng: random.Random | None = None,
        idle_seconds: float = 5.0,
        extra: ExtraTargets | None = None,
        claimer: str | None = None,
        claim_seconds: float = 60.0,
    ) -> None:
        self._claimer = claimer
        self._claim_seconds = claim_seconds
        self._store = store
        self._subs = subscriptions
        self._sender = sender
        self.extra = extra
        self._metrics = metrics
        self._schedule = list(schedule)
        self._clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._idle = idle_seconds
        self._wake = asyncio.Event()
        self._done: list[str] = []
        self._done_ready = asyncio.Event()
        self._flushed = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._in_flight: dict[str, set[str]] = {}  # subscription -> delivery ids
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._last_counts = -1.0

    @property
    def first_delay(self) -> float:
        """Delay before the first attempt of a new delivery."""
        return self._schedule[0]

    def route_all(self, transitions: Sequence[TransitionLike]) -> list[list[str]]:
        """Which targets get each transition (the processor stores these rows with it)."""
        routes = self._subs.route_all(transitions)
        if self.extra is not None:
            for names, more in zip(routes, self.extra.route_all(transitions), strict=True):
                names.extend(more)
        return routes

    def targets(self) -> list[Target]:
        """Webhook subscriptions, then the extra targets."""
        out: list[Target] = [WebhookTarget(s, self._sender) for s in self._subs.all()]
        if self.extra is not None:
            out += self.extra.targets()
        return out

    async def notify(self, transitions: Sequence[Transition]) -> None:
        """New transitions (and their deliveries) are stored: look at the outbox now."""
        self._wake.set()

    def wake(self) -> None:
        """Look at the outbox now (after a replay, an enable, a new subscription)."""
        self._wake.set()

    def start(self) -> None:
        """Start the pump loop."""
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._loop(), name="outbox")

    def _ensure_flusher(self) -> None:
        if self._loop_task is None and self._flusher is not None:
            return  # stopped (or never started): no new background task
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_loop(), name="outbox-done")

    async def _flush_loop(self) -> None:
        while True:
            await self._done_ready.wait()
            await asyncio.sleep(0.005)  # let the successes of this moment gather
            self._done_ready.clear()
            batch, self._done = self._done, []
            flushed, self._flushed = self._flushed, asyncio.Event()
            try:
                await self._store.deliveries_done(batch)
            except Exception:
                log.exception("could not record delivered messages; they will be sent again")
            finally:
                flushed.set()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking new work; give attempts in flight up to `timeout` to finish."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
            if self._done:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._store.deliveries_done(self._done), 2.0)
                self._done = []
            self._flushed.set()  # nobody waits for a flush that will not come

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                started = await self.pump()
                wait = self._idle
                next_at = await self._store.next_delivery_at()
                now = self._clock.wall()
                # An overdue delivery that could not start (its target is disabled or busy)
                # must not turn this into a busy loop: then wait for a wake-up or the idle time.
                if next_at is not None and (next_at > now or started):
                    wait = min(wait, max(0.0, next_at - now))
            except Exception:
                log.exception("outbox pump failed; trying again shortly")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.01))

    async def pump(self) -> int:
        """Start attempts for every due delivery there is room for; returns how many started."""
        started = 0
        now = self._clock.wall()
        for target in self.targets():
            if not target.enabled:
                continue
            busy = self._in_flight.setdefault(target.name, set())
            room = target.max_in_flight - len(busy)
            if room <= 0:
                continue
            due = await self._store.due_deliveries(
                target.name, now, room + len(busy), self._claimer, self._claim_seconds
            )
            for delivery in due:
                if room <= 0:
                    break
                if delivery.id in busy:
                    continue
                busy.add(delivery.id)
                room -= 1
                started += 1
                task = asyncio.create_task(self._attempt(target, delivery))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        await self._refresh_counts()
        return started

    async def drain(self, timeout: float = 10.0) -> None:
        """Pump until nothing is due or in flight (for tests and tools)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            started = await self.pump()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=max(0.0, deadline - loop.time()))
            elif not started:
                return

    async def _attempt(self, target: Target, delivery: Delivery) -> None:
        self._ensure_flusher()
        try:
            result = await target.attempt(delivery)
            await self._settle(target, delivery, result)
        except Exception:
            log.exception("delivery attempt crashed", delivery_id=delivery.id)
        finally:
            self._in_flight.get(target.name, set()).discard(delivery.id)
            self._wake.set()  # the next delivery of this event may go now

    async def _settle(self, target: Target, delivery: Delivery, result: AttemptResult) -> None:
        m = self._metrics
        name = target.name
        webhook = isinstance(target, WebhookTarget)
        now = self._clock.wall()
        attempts = delivery.attempts + 1
        if webhook:
            m.webhook_deliveries_total.labels(name, result.outcome).inc()
        if result.outcome == "success":
            if result.result is None:
                # Successes are written in batches: one transaction (one fsync) for many.
                # Until the batch is written the row stays pending, so nothing later of the
                # same event overtakes it; a crash in between means a duplicate, same id.
                self._done.append(delivery.id)
                self._done_ready.set()
                self._ensure_flusher()
                # Bounded: should the flusher be gone (shutting down), the row simply stays
                # pending and is sent again later, with the same webhook-id.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flushed.wait(), 5.0)
            else:
                await self._store.delivery_done(delivery.id, result.result, now)
            if webhook:
                m.webhook_delivery_latency_seconds.labels(name).observe(
                    max(0.0, now - delivery.created_at)
                )
            return
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
            elif self.extra is not None:
                await self.extra.disable(name, reason)
            log.error("target disabled", subscription=name, reason=reason)
            return
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
            return
        if result.retry_after is not None:
            delay = max(delay, min(result.retry_after, MAX_RETRY_AFTER))
        await self._store.delivery_retry(delivery.id, attempts, now + delay, result.error)

    async def refresh_counts(self) -> None:
        """Publish pending and dead-letter gauges now."""
        self._last_counts = -1.0
        await self._refresh_counts()

    async def _refresh_counts(self) -> None:
        now = self._clock.monotonic()
        if now - self._last_counts < 1.0:
            return
        self._last_counts = now
        counts = await self._store.outbox_counts()
        m = self._metrics
        for sub in self._subs.all():
            pending, dead = counts.get(sub.name, (0, 0))
            m.webhook_pending.labels(sub.name).set(pending)
            m.webhook_dead_letters.labels(sub.name).set(dead)
            m.webhook_subscription_enabled.labels(sub.name).set(1 if sub.enabled else 0)

"""The delivery worker: sends what the outbox holds, retries on a schedule, keeps dead letters.

The outbox lives in the store (written in the same transaction as the transitions), so a crash
loses nothing: after a restart every pending delivery is sent again, with the same webhook-id.

Two ways in, one way out. Freshly stored deliveries are handed over in memory: the processor
calls `stored` right after their transaction, and they go straight to a `Lane` (per target, per
event in sequence order) when the lane knows that no earlier row of their event waits in the
store; otherwise one store read per batch settles it. Everything else (retries, replays, what a
restart left, events with an earlier row the lane does not know, other replicas' rows) comes
from the store pump, which reads due rows as before and hands them to the same lanes. Only the
earliest pending delivery of an event is ever in flight, each target has its own concurrency
limit (a slow or dead endpoint holds back nobody else), a 2xx frees the slot at once, and
successes are written in batches in the background (`AckWriter`); a failed attempt is written
before its event goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
from collections import deque
from collections.abc import Sequence

from monitor.clock import Clock, SystemClock
from monitor.core.filters import TransitionLike
from monitor.core.summary import Summary
from monitor.domain import Transition
from monitor.logs import get_logger
from monitor.metrics import Metrics
from monitor.notify.acks import AckWriter
from monitor.notify.base import Target
from monitor.notify.lanes import Lane
from monitor.notify.outcomes import ExtraTargets, Outcomes, next_delay
from monitor.notify.subscriptions import Subscriptions
from monitor.notify.webhook import WebhookSender, WebhookTarget
from monitor.store.base import Delivery, PendingDelivery, Store

log = get_logger("monitor.outbox")

__all__ = ["ExtraTargets", "OutboxWorker", "next_delay"]

#: Fresh deliveries by (subscription, event), each list in sequence order.
_Groups = dict[tuple[str, str], list[Delivery]]

#: Deliveries one target may hold in memory; beyond that the store pump sends the rest.
LANE_CAPACITY = 20_000
#: Rows the pump reads past the ones the lanes already hold, at most.
PUMP_LOOKAHEAD = 1000
#: A lane is checked against the store (to hand over without reads) only below this backlog.
CHECK_LIMIT = 5000


class OutboxWorker:
    """Sends the outbox to its targets. Also a Notifier: new transitions are handed over."""

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
        ack_linger: float = 0.05,
        lane_capacity: int = LANE_CAPACITY,
        log_every: float = 60.0,
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
        self._idle = idle_seconds
        self._capacity = lane_capacity
        # In memory only where nothing else may attempt the rows (several replicas claim them
        # in the store) and where the first attempt is due at once.
        self._hand_off = claimer is None and self._schedule[0] <= 0
        self._wake = asyncio.Event()
        self._lanes: dict[str, Lane] = {}
        self._hooks: dict[str, WebhookTarget] = {}
        self._others: dict[str, Target] = {}
        self._inbox: deque[_Groups] = deque()
        self._inbox_ready = asyncio.Event()
        self._intake_lock = asyncio.Lock()
        self._intake: asyncio.Task[None] | None = None
        self._acked: set[str] = set()  # delivered; the acknowledgement is not written yet
        self._reads = 0  # store reads under way whose answers may still list those rows
        self._acked_while_reading: set[str] = set()
        self._look_after_ack = False
        self._acks = AckWriter(
            store.deliveries_done,
            self._ack_written,
            linger=ack_linger,
            clock=self._clock,
            log_every=log_every,
        )
        self._outcomes = Outcomes(
            store=store,
            subscriptions=subscriptions,
            metrics=metrics,
            schedule=self._schedule,
            clock=self._clock,
            rng=rng or random.Random(),
            extra=extra,
            delivered=self._delivered,
            log_every=log_every,
        )
        self._crashes = Summary(log_every)  # of attempts and pump rounds, per target
        self._retries: list[float] = []  # when retries this worker wrote fall due (a heap)
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopped = False
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
        out: list[Target] = [
            self._hook(s.name) or WebhookTarget(s, self._sender) for s in self._subs.all()
        ]
        if self.extra is not None:
            out += self.extra.targets()
        return out

    def stored(
        self, transitions: Sequence[Transition], routes: Sequence[Sequence[str]], due_at: float
    ) -> None:
        """The transitions and their outbox rows (`routes[i]` for `transitions[i]`, first
        attempt due at `due_at`) were just committed: send them from memory."""
        if self._stopped or not self._hand_off:
            return  # the rows are in the store: the pump (woken by notify) or a restart sends
        groups = self._group(transitions, routes, due_at)
        if not groups:
            return
        if self._inbox or self._intake_lock.locked():
            self._queue(groups)  # behind what waits for the store: order per event
            return
        try:
            ask = self._take_known(groups)
        except Exception:
            self._hand_over_failed()
            return
        if ask:
            self._queue({key: groups[key] for key in ask})

    def _queue(self, groups: _Groups) -> None:
        self._inbox.append(groups)
        self._inbox_ready.set()
        if self._intake is None or self._intake.done():
            self._intake = asyncio.create_task(self._intake_loop(), name="outbox-intake")

    async def notify(self, transitions: Sequence[Transition]) -> None:
        """New transitions are durable: without the hand-off, the pump looks at the outbox."""
        if not self._hand_off and not self._stopped:
            self._wake.set()

    def wake(self) -> None:
        """Look at the outbox now (after a replay, an enable, a new subscription): the store may
        hold rows the lanes do not know, so they ask it again before handing over."""
        for lane in self._lanes.values():
            lane.unclean()
        self._last_counts = -1.0  # and publish the counts as they are now
        self._wake.set()

    def start(self) -> None:
        """Start the pump loop."""
        if self._loop_task is None and not self._stopped:
            self._loop_task = asyncio.create_task(self._loop(), name="outbox")

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop taking new work; give attempts in flight up to `timeout` to finish, then write
        the acknowledgements still waiting (bounded too)."""
        self._stopped = True
        for task in (self._loop_task, self._intake):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._loop_task = self._intake = None
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=timeout)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self._acks.close(min(timeout, 2.0))

    # -- the store pump ------------------------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.pump()
                wait = self._idle
                next_at = await self._store.next_delivery_at()
                now = self._clock.wall()
                # Rows due now that could not start (held in memory, target disabled or busy)
                # must not turn this into a busy loop: an attempt that ends wakes it up.
                if next_at is not None and next_at > now:
                    wait = min(wait, next_at - now)
                while self._retries and self._retries[0] <= now:
                    heapq.heappop(self._retries)
                if self._retries:
                    wait = min(wait, self._retries[0] - now)
            except Exception:
                if self._crashes.admit("pump", self._clock.monotonic()) is not None:
                    log.exception("outbox pump failed; trying again shortly")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(wait, 0.01))

    async def pump(self) -> int:
        """Read due rows from the store into the lanes and start what there is room for;
        returns how many attempts started."""
        started = 0
        now = self._clock.wall()
        targets = self.targets()
        self._others = {t.name: t for t in targets if not isinstance(t, WebhookTarget)}
        for target in targets:
            lane = self._lane(target.name)
            if not target.enabled:
                lane.drop_waiting()
                continue
            want = target.max_in_flight - lane.borrowed
            if want > 0:
                # Read past the rows the lanes hold (they come first when just as due).
                limit = want + min(lane.held + len(self._acked), PUMP_LOOKAHEAD)
                self._reads += 1
                try:
                    due = await self._store.due_deliveries(
                        target.name, now, limit, self._claimer, self._claim_seconds
                    )
                    done = self._done()
                    for delivery in due:
                        lane.offer(delivery, done, target.max_in_flight)
                finally:
                    self._read_over()
            started += self._dispatch(lane)
            if self._hand_off and not lane.clean and isinstance(target, WebhookTarget):
                await self._check(lane)
        for name in [n for n, lane in self._lanes.items() if lane.idle()]:
            if self._target(name) is None:
                del self._lanes[name]
        await self._refresh_counts()
        return started

    async def _check(self, lane: Lane) -> None:
        """Compare the lane with the store's pending rows, so that it can hand over fresh
        deliveries without asking the store each time."""
        epoch = lane.epoch
        self._reads += 1
        try:
            rows = await self._store.pending_rows(lane.name, CHECK_LIMIT + 1)
            if len(rows) <= CHECK_LIMIT:
                lane.checked(epoch, rows, self._done())
        finally:
            self._read_over()

    async def drain(self, timeout: float = 10.0) -> None:
        """Send until nothing is due, in flight or unacknowledged (for tests and tools)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            await self._take_in()
            started = await self.pump()
            if self._tasks:
                await asyncio.wait(self._tasks, timeout=max(0.0, deadline - loop.time()))
                continue
            waiting = len(self._acks)
            await self._acks.flush()
            if not started and not waiting and not self._inbox:
                return

    # -- the in-memory hand-off ------------------------------------------------------------------

    async def _intake_loop(self) -> None:
        while True:
            await self._inbox_ready.wait()
            self._inbox_ready.clear()
            await self._take_in()

    async def _take_in(self) -> None:
        async with self._intake_lock:
            while self._inbox:
                groups: _Groups = {}
                while self._inbox:  # later batches after earlier ones, per event
                    for key, fresh in self._inbox.popleft().items():
                        groups.setdefault(key, []).extend(fresh)
                try:
                    ask = self._take_known(groups)
                    if ask and await self._ask_store(groups, ask):
                        self._wake.set()
                except Exception:
                    self._hand_over_failed()

    def _hand_over_failed(self) -> None:
        log.exception("could not hand new deliveries over; the store pump sends them")
        for lane in self._lanes.values():
            lane.unclean()
        self._wake.set()

    def _group(
        self, transitions: Sequence[Transition], routes: Sequence[Sequence[str]], due_at: float
    ) -> _Groups:
        """The committed rows for enabled webhook subscriptions, by subscription and event."""
        groups: _Groups = {}
        for t, names in zip(transitions, routes, strict=False):
            for name in names:
                hook = self._hook(name)
                if hook is None:
                    self._wake.set()  # not a webhook (an action rule): the store pump sends it
                elif hook.enabled:
                    did = self._store.delivery_id(t.sequence, name)
                    d = Delivery(did, name, t, 0, due_at, due_at, "pending")
                    groups.setdefault((name, t.event_id), []).append(d)
        return groups

    def _take_known(self, groups: _Groups) -> list[tuple[str, str]]:
        """Hand over (and start) the deliveries of events their lane has no doubt about;
        returns the others, for which the store must be asked."""
        done = self._done()
        ask: list[tuple[str, str]] = []
        touched: dict[str, Lane] = {}
        for (name, event_id), fresh in groups.items():
            lane = touched[name] = touched.get(name) or self._lane(name)
            if lane.knows_all(event_id):
                lane.take_fresh(event_id, (), fresh, done)
            else:
                ask.append((name, event_id))
        for lane in touched.values():
            self._dispatch(lane)
        return ask

    async def _ask_store(self, groups: _Groups, ask: Sequence[tuple[str, str]]) -> bool:
        """Hand over fresh deliveries of events the lanes are unsure about: the store says
        whether an earlier row of the event still waits. Returns whether the pump has work."""
        names = list(dict.fromkeys(name for name, _ in ask))
        events = list(dict.fromkeys(event_id for _, event_id in ask))
        last = max(d.transition.sequence for key in ask for d in groups[key])
        self._reads += 1
        try:
            rows = await self._store.pending_deliveries(names, events, last)
            by_key: dict[tuple[str, str], list[PendingDelivery]] = {}
            for row in rows:
                by_key.setdefault((row.subscription, row.event_id), []).append(row)
            done = self._done()
            pump = False
            touched: dict[str, Lane] = {}
            for name, event_id in ask:
                lane = touched[name] = self._lane(name)
                pump |= not lane.take_fresh(
                    event_id, by_key.get((name, event_id), ()), groups[(name, event_id)], done
                )
        finally:
            self._read_over()
        for lane in touched.values():
            self._dispatch(lane)
        return pump

    # -- attempts --------------------------------------------------------------------------------

    def _dispatch(self, lane: Lane) -> int:
        """Start as many of the lane's ready deliveries as its target allows."""
        if self._stopped:
            return 0
        target = self._target(lane.name)
        if target is None or not target.enabled:
            lane.drop_waiting()
            return 0
        started = 0
        while lane.in_flight < target.max_in_flight:
            delivery = lane.start_next()
            if delivery is None:
                break
            task = asyncio.create_task(self._attempt(lane, target, delivery))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started += 1
        return started

    async def _attempt(self, lane: Lane, target: Target, delivery: Delivery) -> None:
        delivered = False
        try:
            result = await target.attempt(delivery)
            retry_at = await self._outcomes.settle(target, delivery, result)
            delivered = retry_at is None
            if retry_at:
                heapq.heappush(self._retries, retry_at)
        except Exception:
            # A store that cannot write fails every attempt's bookkeeping: summarised.
            held = self._crashes.admit(("attempt", target.name), self._clock.monotonic())
            if held is not None:
                log.exception(
                    "delivery attempt crashed",
                    delivery_id=delivery.id,
                    **({"repeated": held} if held else {}),
                )
        finally:
            look = lane.finish(delivery, delivered)
            self._dispatch(lane)  # the slot is free: the next one goes now
            if look:
                # An event of the store's: what comes next is for the pump to read; after a
                # success, once the acknowledgement is written (until then the row blocks).
                self._wake.set()
                self._look_after_ack = self._look_after_ack or delivered

    def _delivered(self, delivery_id: str) -> None:
        # Written in batches, in the background: the slot is free at once. Until the batch is
        # written the row stays pending (a crash means a duplicate, with the same webhook-id).
        self._acked.add(delivery_id)
        self._acks.add(delivery_id)

    def _ack_written(self, ids: Sequence[str]) -> None:
        self._acked.difference_update(ids)
        if self._reads:
            self._acked_while_reading.update(ids)
        if self._look_after_ack:
            self._look_after_ack = False
            self._wake.set()

    def _done(self) -> _Done:
        return _Done(self._acked, self._acked_while_reading)

    def _read_over(self) -> None:
        self._reads -= 1
        if not self._reads:
            self._acked_while_reading.clear()

    def _lane(self, name: str) -> Lane:
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(name, self._capacity)
        return lane

    def _hook(self, name: str) -> WebhookTarget | None:
        """The current webhook target of a subscription (its settings may have changed)."""
        sub = self._subs.get(name)
        if sub is None:
            self._hooks.pop(name, None)
            return None
        hook = self._hooks.get(name)
        if hook is None or hook.sub is not sub:
            if hook is not None and name in self._lanes:
                # Changed, re-created or re-enabled: what the lane holds may be stale, and the
                # store may hold rows it does not know. The store says again what to send.
                self._lanes[name].drop_waiting()
            hook = self._hooks[name] = WebhookTarget(sub, self._sender)
        return hook

    def _target(self, name: str) -> Target | None:
        return self._hook(name) or self._others.get(name)

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
        subs = self._subs.all()
        for sub in subs:
            pending, dead = counts.get(sub.name, (0, 0))
            m.webhook_pending.labels(sub.name).set(pending)
            m.webhook_dead_letters.labels(sub.name).set(dead)
            m.webhook_subscription_enabled.labels(sub.name).set(1 if sub.enabled else 0)
        # Deleted subscriptions leave no series behind (an attempt still in flight when one
        # was deleted may have made some again since the last round).
        m.keep_only("subscription", {sub.name for sub in subs})


class _Done:
    """IDs delivered whose rows a store answer may still list as pending: the acknowledgements
    not yet written, and those written while the answer was being read."""

    __slots__ = ("_a", "_b")

    def __init__(self, acked: set[str], written_meanwhile: set[str]) -> None:
        self._a = acked
        self._b = written_meanwhile

    def __contains__(self, item: object) -> bool:
        return item in self._a or item in self._b

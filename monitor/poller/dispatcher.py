"""One dispatcher per API key: packs due events of every watch set into batches and sends them.

Watch sets only say *when* their events are due. The dispatcher keeps one pool of due events
(each event once, oldest observation first), takes a batch of one region when a worker is free,
sends it within the shared rate budget, retries what is worth retrying, bisects a 400 to find
the offending IDs, and hands answers to the processor.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat

from monitor.clock import Clock, SystemClock
from monitor.config.catalog import EventSpec
from monitor.core.backoff import MAX_RETRY_AFTER, full_jitter
from monitor.core.batching import DueQueue, Split
from monitor.logs import get_logger
from monitor.metrics import Metrics
from monitor.poller.budget import RateBudget
from monitor.poller.health import Health

__all__ = ["FAILED", "OK", "SKIPPED", "Dispatcher", "Health", "PollReport", "RetryPolicy"]
from monitor.poller.processor import Processor
from monitor.poller.sizing import RequestSizer
from monitor.poller.unknown import UnknownSince
from monitor.poller.waits import UpstreamWaits
from monitor.store.base import LeaseLost
from monitor.upstream.errors import (
    AuthFailed,
    BadRequest,
    RateLimited,
    RequestTooLarge,
    UpstreamError,
)
from monitor.upstream.inventory import InventoryAnswer, InventoryClient

log = get_logger("monitor.dispatcher")

OK, FAILED, SKIPPED = "ok", "failed", "skipped"


@dataclass(slots=True)
class PollReport:
    """How a submitted set of events fared."""

    ok: int = 0
    failed: int = 0
    skipped: int = 0


@dataclass(slots=True, eq=False)  # compared by identity: a batch's waiters are counted at once
class _Submission:
    remaining: int
    report: PollReport = field(default_factory=PollReport)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def count(self, outcome: str, n: int = 1) -> None:
        if outcome == OK:
            self.report.ok += n
        elif outcome == FAILED:
            self.report.failed += n
        else:
            self.report.skipped += n
        self.remaining -= n
        if self.remaining <= 0:
            self.done.set()


@dataclass(slots=True)
class _BisectBudget:
    """Bounds the requests one 400 may cost: a few bad IDs are found, a refused batch is not."""

    left: int
    max_quarantine: int
    quarantined: int = 0

    @classmethod
    def for_batch(cls, n: int) -> _BisectBudget:
        depth = max(1, (n - 1).bit_length())
        return cls(left=4 * depth + 2, max_quarantine=4)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How failed requests are retried."""

    max_retries: int = 4
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    auth_backoff_seconds: float = 60.0
    quarantine_seconds: float = 3600.0
    default_rate_limit_wait: float = 1.0
    max_rate_limit_wait: float = 86400.0
    max_retry_after: float = MAX_RETRY_AFTER
    pause_unready_seconds: float = 60.0  # a pause at least this long makes the daemon unready
    log_every_seconds: float = 60.0  # a repeated failure is logged at most this often


class Dispatcher:
    """Sends due events to the upstream in full batches within the rate budget."""

    def __init__(
        self,
        *,
        client: InventoryClient,
        processor: Processor,
        budget: RateBudget,
        metrics: Metrics,
        health: Health,
        observed_at: Mapping[str, float],
        splitter: Callable[[bool], Split | None] | None = None,
        generation: Callable[[], object] | None = None,
        clock: Clock | None = None,
        batch_size: int = 1000,
        max_in_flight: int = 4,
        retry: RetryPolicy | None = None,
        linger_seconds: float = 0.02,
        rng: random.Random | None = None,
        max_request_bytes: int | None = None,
        unknown: UnknownSince | None = None,
    ) -> None:
        self._client = client
        self._processor = processor
        self._budget = budget
        self._metrics = metrics
        self._health = health
        self._observed_at = observed_at.get
        self._splitter = splitter
        # What the watched events were taken from (the catalog): while everything queued or in
        # flight came from the current one, no batch needs checking for events since unwatched.
        self._generation = generation
        self._queued_from: object = None
        self._mixed = False
        self._clock = clock or SystemClock()
        self._batch_size = batch_size
        self._max_in_flight = max_in_flight
        self._retry = retry or RetryPolicy()
        self._linger = linger_seconds
        self._rng = rng or random.Random()
        self._pool = DueQueue()
        # event -> the submission waiting for it, or a list when several sets share it
        self._waiters: dict[str, _Submission | list[_Submission]] = {}
        self._work = asyncio.Event()
        self._drained = asyncio.Event()
        self._pool_empty = asyncio.Event()
        self._workers: list[asyncio.Task[None]] = []
        self._auth_failures = 0
        self._closed = False
        self._waits = UpstreamWaits(
            budget=budget,
            metrics=metrics,
            clock=self._clock,
            unready_after=self._retry.pause_unready_seconds,
            log_every=self._retry.log_every_seconds,
        )
        health.upstream_pause = self._waits.pause_reason
        metrics.upstream_pause_remaining_seconds.set_function(lambda: budget.paused_for)
        self.last_progress = self._clock.monotonic()  # when a request last completed
        self.quarantined: dict[str, float] = {}  # event ID -> monotonic time it may return
        self._sizer = RequestSizer(
            fixed_bytes=client.fixed_bytes,
            sized=client.sized,
            batch_size=batch_size,
            limit=max_request_bytes,
            metrics=metrics,
        )
        self._unknown = unknown

    @property
    def request_limit(self) -> int | None:
        """The size a request's URL (or form body) may have now (None: no limit)."""
        return self._sizer.limit

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers."""
        if not self._workers:
            self._workers = [
                asyncio.create_task(self._worker(), name=f"dispatcher-{i}")
                for i in range(self._max_in_flight)
            ]

    async def stop(self, timeout: float = 5.0) -> None:
        """Let batches in flight finish (up to `timeout`), then stop; unsent events fail."""
        self._closed = True
        self._finish_all(self._pool.drain(), FAILED)
        if self._workers:
            idle = [w for w in self._workers if not w.done()]
            if self._waiters:
                self._drained.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drained.wait(), timeout)
            for w in idle:
                w.cancel()
            await asyncio.gather(*idle, return_exceptions=True)
            self._workers = []
        for eid in list(self._waiters):
            self._finish(eid, FAILED)

    # -- submitting ------------------------------------------------------------------------

    @property
    def queued(self) -> int:
        """Events waiting for a request."""
        return len(self._pool)

    async def submit(self, events: Iterable[EventSpec]) -> PollReport:
        """Queue events and wait until each was observed, failed or was dropped."""
        sub = self.enqueue(events)
        await sub.done.wait()
        return sub.report

    async def wait_taken(self, sub: _Submission) -> None:
        """Wait until the submission is done or nothing is left waiting in the pool (its last
        events are on their way): a run may hand over to the next one then, so the budget
        never idles between two rounds."""
        if sub.done.is_set():
            return
        done = asyncio.ensure_future(sub.done.wait())
        empty = asyncio.ensure_future(self._pool_empty.wait())
        try:
            await asyncio.wait({done, empty}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()
            empty.cancel()

    def enqueue(self, events: Iterable[EventSpec]) -> _Submission:
        """Queue events; the returned submission's `done` is set when each was observed,
        failed or was dropped."""
        groups: dict[str | None, dict[str, None]] = {}
        for spec in events:
            group = groups.get(spec.region)
            if group is None:
                group = groups[spec.region] = {}
            group[spec.event_id] = None
        return self.enqueue_groups({region: list(ids) for region, ids in groups.items()})

    def enqueue_groups(self, groups: Mapping[str | None, Sequence[str]]) -> _Submission:
        """Queue events by region (each ID once in all); the returned submission's `done` is set
        when each was observed, failed or was dropped."""
        sub = _Submission(sum(map(len, groups.values())))
        if not sub.remaining:
            sub.done.set()
            return sub
        if self._closed:
            sub.report.failed = sub.remaining
            sub.done.set()
            return sub
        waiters = self._waiters
        seen = self._observed_at
        if self._generation is not None:
            current = self._generation()
            if not waiters:
                self._mixed = False
            elif current is not self._queued_from:
                self._mixed = True
            self._queued_from = current
        for region, group in groups.items():
            ids = group
            if waiters and not waiters.keys().isdisjoint(ids):
                fresh: list[str] = []
                for eid in ids:
                    waiting = waiters.get(eid)
                    if waiting is None:
                        fresh.append(eid)
                    elif isinstance(waiting, list):
                        waiting.append(sub)  # queued or in flight already: share that request
                    else:
                        waiters[eid] = [waiting, sub]
                ids = fresh
            if not ids:
                continue
            waiters.update(dict.fromkeys(ids, sub))
            self._pool.add_many(ids, region, list(map(seen, ids, repeat(0.0, len(ids)))))
        if len(self._pool):
            self._pool_empty.clear()
        self._work.set()
        return sub

    def _finish(self, event_id: str, outcome: str) -> None:
        waiting = self._waiters.pop(event_id, None)
        if isinstance(waiting, list):
            for sub in waiting:
                sub.count(outcome)
        elif waiting is not None:
            waiting.count(outcome)
        if not self._waiters:
            self._drained.set()

    def _finish_all(self, event_ids: Iterable[str], outcome: str) -> None:
        waiters = self._waiters
        pop = waiters.pop
        got = list(map(pop, event_ids, repeat(None)))
        first = got[0] if got else None
        if isinstance(first, _Submission) and got.count(first) == len(got):
            first.count(outcome, len(got))  # the usual batch: one run waits for all of it
        else:
            for waiting in got:
                if isinstance(waiting, list):
                    for sub in waiting:
                        sub.count(outcome)
                elif waiting is not None:
                    waiting.count(outcome)
        if not waiters:
            waiters.clear()  # an emptied dict keeps its table (30 MB at a million) until cleared
            self._drained.set()

    def _split(self) -> Split | None:
        """Which events must leave the pool unrequested (quarantined, in maintenance, not ours,
        over), as one function over a batch; None when none can be."""
        all_watched = (
            self._generation is not None
            and not self._mixed
            and self._generation() is self._queued_from
        )
        base = self._splitter(all_watched) if self._splitter is not None else None
        quarantined = self.quarantined
        if not quarantined:
            return base
        now = self._clock.monotonic()
        metrics = self._metrics

        def split(ids: list[str]) -> tuple[list[str], list[str]]:
            kept: list[str] = []
            dropped: list[str] = []
            for eid in ids:
                until = quarantined.get(eid)
                if until is not None:
                    if until > now:
                        dropped.append(eid)
                        continue
                    del quarantined[eid]
                    metrics.events_quarantined.set(len(quarantined))
                kept.append(eid)
            if base is not None:
                kept, more = base(kept)
                dropped += more
            return kept, dropped

        return split

    # -- sending ---------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            await self._work.wait()
            if not len(self._pool):
                self._work.clear()
                continue
            size = self._sizer.batch_ids()
            if len(self._pool) < size and self._linger > 0:
                # Sets that fire together arrive a moment apart: let them share a batch.
                await asyncio.sleep(self._linger)
            taken = self._pool.take(self._sizer.batch_ids(), split=self._split())
            batch = self._fit(taken.batch.region, list(taken.batch.event_ids))
            if not len(self._pool):
                self._pool_empty.set()
            self._finish_all(taken.dropped, SKIPPED)
            if batch:
                try:
                    await self._send(taken.batch.region, batch)
                except asyncio.CancelledError:
                    self._finish_all(taken.batch.event_ids, FAILED)
                    raise
                except Exception as exc:
                    held = self._waits.admit(("unexpected", type(exc).__name__))
                    if held is not None:
                        log.exception(
                            "batch failed unexpectedly",
                            n_ids=len(taken.batch.event_ids),
                            not_logged=held,
                        )
                    self._finish_all(taken.batch.event_ids, FAILED)

    # -- request size ----------------------------------------------------------------------

    def _fit(self, region: str | None, ids: list[str]) -> list[str]:
        """The leading IDs that fit in one request; the rest go back to the pool as they were."""
        kept, rest = self._sizer.fit(region, ids)
        if rest:
            self._put_back(region, rest)
        return kept

    def _put_back(self, region: str | None, ids: list[str]) -> None:
        """Queue taken IDs again (they are still waited for), at their old place."""
        self._pool.add_many(ids, region, list(map(self._observed_at, ids, repeat(0.0, len(ids)))))
        self._pool_empty.clear()
        self._work.set()

    def _too_large(self, region: str | None, ids: Sequence[str], exc: RequestTooLarge) -> None:
        """The upstream refused a request as too large: queue its IDs again, to go out in
        requests of the smaller size the sizer now keeps; one ID alone cannot be split."""
        if self._sizer.refused(region, ids, exc.status):
            self._put_back(region, list(ids))
        else:
            self._finish_all(ids, FAILED)

    async def _send(
        self, region: str | None, ids: Sequence[str], bisect: _BisectBudget | None = None
    ) -> str | None:
        """One batch, with retries; bisects on 400. Every ID is finished on return, except
        within a bisection (`bisect` given): a 400 is then returned (its message), its IDs left
        for the caller to judge."""
        m = self._metrics
        policy = self._retry
        attempt = 0
        checked_at = self._clock.wall()
        while True:
            slot = await self._budget.acquire()
            kept = ids
            if abs(self._clock.wall() - checked_at) >= 1.0:
                # The wait was long (a 429 pause, backoff, a queue for the budget): an event
                # whose maintenance window began meanwhile must not be requested.
                split = self._split()
                if split is not None:
                    kept, dropped = split(list(ids))
                    self._finish_all(dropped, SKIPPED)
                checked_at = self._clock.wall()
            if len(kept) < len(ids):
                ids = kept
                if not ids:
                    slot.sent()  # spent all the same: the ledger must not wait for it
                    return None
            started = self._clock.monotonic()
            try:
                request = list(ids)
                processor = self._processor
                answer = await self._client.fetch(
                    request,
                    region,
                    slot,
                    processor.known_answers(region, request),
                    processor.last_layout(region, request),
                )
            except UpstreamError as exc:
                self.last_progress = self._clock.monotonic()
                self._waits.observe_quota(exc.rate)
                m.upstream_request_duration_seconds.labels("inventory").observe(
                    self._clock.monotonic() - started
                )
                m.upstream_requests_total.labels("inventory", exc.outcome).inc()
                m.upstream_batch_size.observe(len(ids))
                attempt += 1
                self._waits.log_failure(exc, attempt, len(ids), region)
                if isinstance(exc, AuthFailed):
                    self._on_auth_failure(str(exc))
                    self._finish_all(ids, FAILED)
                    return None
                if isinstance(exc, BadRequest):
                    if bisect is not None:
                        return str(exc)
                    await self._bisect(region, ids, str(exc), _BisectBudget.for_batch(len(ids)))
                    return None
                if isinstance(exc, RequestTooLarge):
                    self._too_large(region, ids, exc)
                    return None
                if not exc.retry and not isinstance(exc, RateLimited):
                    self._finish_all(ids, FAILED)
                    return None
                if isinstance(exc, RateLimited):
                    wait = exc.retry_after
                    if wait is None:
                        wait = policy.default_rate_limit_wait
                    self._waits.pause(min(wait, policy.max_rate_limit_wait), exc, "429")
                elif exc.wait is not None:
                    # A 503 with Retry-After: the upstream as a whole asked for a break.
                    self._waits.pause(exc.wait.seconds, exc, f"{exc.status} with Retry-After")
                if attempt > policy.max_retries:
                    held = self._waits.admit(("give_up", exc.outcome))
                    if held is not None:
                        log.error(
                            "giving up on batch until its next poll",
                            n_ids=len(ids),
                            attempts=attempt,
                            outcome=exc.outcome,
                            not_logged=held,
                        )
                    self._finish_all(ids, FAILED)
                    return None
                if isinstance(exc, RateLimited):
                    continue  # the budget holds every request back for the pause
                backoff = full_jitter(
                    attempt - 1, policy.base_seconds, policy.max_seconds, self._rng.random()
                )
                await asyncio.sleep(backoff)
                continue
            m.upstream_request_duration_seconds.labels("inventory").observe(
                self._clock.monotonic() - started
            )
            m.upstream_requests_total.labels("inventory", "ok").inc()
            m.upstream_batch_size.observe(len(ids))
            self.last_progress = self._clock.monotonic()
            self._waits.observe_quota(answer.rate)
            self._auth_failures = 0
            self._health.key_accepted()
            self._waits.recovered()
            await self._deliver(region, request, answer)
            return None

    async def _deliver(self, region: str | None, ids: list[str], answer: InventoryAnswer) -> None:
        try:
            await self._processor.process_answer(region, ids, answer, self._clock.wall())
        except LeaseLost as exc:
            # Another replica owns these events now: it polls them; we store nothing.
            self._metrics.cluster_fenced_writes_total.inc()
            log.warning("write refused: shard lease moved on", error=str(exc))
            self._finish_all(ids, SKIPPED)
            return
        except Exception:
            self._metrics.state_write_errors_total.inc()
            log.exception("could not store a batch; it will be judged again next poll")
            self._finish_all(ids, FAILED)
            return
        else:
            # A repeated answer has no columns (nothing changed): the tracker stays as it is.
            if self._unknown is not None and len(answer.statuses) == len(answer.ids):
                self._unknown.observe(answer.ids, answer.statuses, self._clock.wall())
        finally:
            # After judging: a repeated answer's counts are known only then.
            if answer.unknown_statuses:
                self._metrics.upstream_unknown_status_total.inc(answer.unknown_statuses)
            if answer.missing:
                held = self._waits.note(("missing",))
                if held is not None:
                    log.info(
                        "upstream answer lacks some events",
                        n_missing=len(answer.missing),
                        not_logged=held,
                    )
            if answer.conflicting:
                self._metrics.upstream_conflicting_events_total.inc(len(answer.conflicting))
                held = self._waits.note(("conflicting",))
                if held is not None:
                    log.warning(
                        "upstream answer names events twice with different statuses; "
                        "no observation of them from it",
                        n_events=len(answer.conflicting),
                        not_logged=held,
                    )
        self._finish_all(ids, OK)

    async def _bisect(
        self, region: str | None, ids: Sequence[str], why: str, budget: _BisectBudget
    ) -> None:
        """Find the IDs that make the upstream answer 400 by asking about halves. When both
        halves are refused the same way, the request as a whole is refused (a parameter the
        upstream does not take, such as a region): no ID is to blame and none is quarantined."""
        if budget.left < 2 or (len(ids) == 1 and budget.quarantined >= budget.max_quarantine):
            # 400s all the way down: the request as a whole is refused (a bad region, an API
            # change), not a few IDs. Fail the rest without quarantining them.
            log.error(
                "upstream refuses the batch as a whole; not bisecting further",
                n_ids=len(ids),
                error=why,
            )
            self._finish_all(ids, FAILED)
            return
        if len(ids) == 1:
            budget.quarantined += 1
            eid = ids[0]
            self.quarantined[eid] = self._clock.monotonic() + self._retry.quarantine_seconds
            self._metrics.events_quarantined.set(len(self.quarantined))
            log.error(
                "upstream refuses this event ID; left out for a while",
                event_id=eid,
                quarantine_seconds=self._retry.quarantine_seconds,
                error=why,
            )
            self._finish(eid, FAILED)
            return
        mid = len(ids) // 2
        budget.left -= 2
        halves = (ids[:mid], ids[mid:])
        refused = [await self._send(region, half, budget) for half in halves]
        if refused[0] is not None and refused[0] == refused[1]:
            self._metrics.upstream_refused_batches_total.inc()
            held = self._waits.note(("refused_batch",))
            if held is not None:
                log.error(
                    "upstream refuses the request itself, not an event ID: both halves of the "
                    "batch got the same 400; no ID quarantined",
                    n_ids=len(ids),
                    region=region,
                    error=refused[0],
                    not_logged=held,
                )
            self._finish_all(ids, FAILED)
            return
        for half, message in zip(halves, refused, strict=True):
            if message is not None:
                await self._bisect(region, half, message, budget)

    def _on_auth_failure(self, why: str) -> None:
        already = self._health.key_status == "refused" and self._budget.paused_for > 0
        self._health.key_refused(why)
        if already:
            return  # other batches in flight hit the same refusal: one incident, one step
        self._auth_failures += 1
        pause = min(self._retry.auth_backoff_seconds * 2 ** (self._auth_failures - 1), 3600.0)
        self._budget.pause_for(pause, "the upstream refused the API key")
        log.error(
            "upstream refused the API key; backing off",
            pause_seconds=pause,
            consecutive_failures=self._auth_failures,
        )

"""From an upstream answer to stored transitions: detect, store, then apply and tell."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, Protocol

from monitor.clock import Clock, SystemClock, iso_utc
from monitor.config.catalog import Catalog
from monitor.core.batching import MAX_BATCH
from monitor.core.transitions import EMPTY_STATE, Candidate, Detection, detect_columns
from monitor.domain import UNKNOWN, Observation, Transition
from monitor.logs import get_logger, is_enabled
from monitor.metrics import Metrics
from monitor.notify.base import Notifier
from monitor.poller.live import LiveState
from monitor.poller.repeats import RepeatMemo, Seen
from monitor.store.base import Fence, NewTransition, Store
from monitor.upstream.delta import Layout
from monitor.upstream.inventory import InventoryAnswer, parse_answer

log = get_logger("monitor.processor")


class Router(Protocol):
    """Decides, before a transition is stored, which outbox rows go with it."""

    def route_all(self, transitions: Sequence[NewTransition]) -> list[list[str]]:
        """Subscription names per transition."""
        ...

    @property
    def first_delay(self) -> float:
        """Seconds from now until a new delivery's first attempt."""
        ...

    def stored(
        self, transitions: Sequence[Transition], routes: Sequence[Sequence[str]], due_at: float
    ) -> None:
        """The transitions and their outbox rows were just committed (must return at once)."""
        ...


class Processor:
    """Judges a batch of observations and makes its transitions durable before anyone hears.

    Order matters: detect (pure) → store (one transaction) → apply to memory → metrics, log,
    notifiers. If the store fails, memory is left as it was, so the next poll finds the same
    change again and nothing is lost.
    """

    def __init__(
        self,
        *,
        store: Store,
        live: LiveState,
        catalog: Callable[[], Catalog],
        metrics: Metrics,
        notifiers: Sequence[Notifier] = (),
        router: Router | None = None,
        clock: Clock | None = None,
        enrich: Callable[[str], Mapping[str, Any]] | None = None,
        fence: Callable[[Iterable[str]], Fence] | None = None,
    ) -> None:
        self._enrich = enrich
        self._fence = fence
        self._store = store
        self.router = router
        self._clock = clock or SystemClock()
        self._live = live
        self._catalog = catalog
        self._metrics = metrics
        self.notifiers: list[Notifier] = list(notifiers)
        self._repeats = RepeatMemo()
        self._sized_for: Catalog | None = None  # the catalog the memo's bounds were set for

    def _watch_sets(self, catalog: Catalog, cand: Candidate) -> tuple[str, ...]:
        spec = catalog.profiles.get(cand.event_id)
        if spec is None:
            return ()
        if UNKNOWN in (cand.previous, cand.current):
            # Only the sets that asked for UNKNOWN as a value hear about it.
            return tuple(s for s in spec.watch_sets if catalog.sets[s].track_unknown)
        return spec.watch_sets

    async def process(
        self, observations: Sequence[Observation], observed_at: float
    ) -> list[Transition]:
        """Judge, store and publish one batch; returns the stored transitions."""
        return await self.process_columns(
            [o.event_id for o in observations],
            [o.status for o in observations],
            [o.resale_status for o in observations],
            observed_at,
        )

    def known_answers(self, region: str | None, ids: list[str]) -> Callable[[bytes], bool]:
        """For the upstream client: whether an answer to this request with this digest was
        judged before and changed nothing (it then need not be decoded)."""
        recall = self._repeats.recall
        return lambda digest: recall(region, ids, digest) is not None

    def last_layout(self, region: str | None, ids: list[str]) -> Layout | None:
        """For the upstream client: the layout of the last answer to this request, to decode
        the next one as a delta."""
        return self._repeats.layout(region, ids)

    async def process_answer(
        self, region: str | None, request: list[str], answer: InventoryAnswer, observed_at: float
    ) -> list[Transition]:
        """Judge, store and publish one upstream answer to `request`; a repeat of an answer
        that changed nothing costs almost nothing (see `monitor.poller.repeats`)."""
        catalog = self._catalog()
        if catalog is not self._sized_for:
            self._sized_for = catalog
            self._repeats.limit_ids(2 * len(catalog.profiles) + MAX_BATCH)
        live = self._live
        if answer.repeat is not None:
            seen = self._repeats.recall(region, request, answer.digest or b"")
            if seen is not None and seen.rules_from is catalog:
                now = list(map(live.states.get, request, repeat(EMPTY_STATE, len(request))))
                if now == seen.states:
                    answer.unknown_statuses, answer.missing = seen.unknown_statuses, seen.missing
                    live.observed_at.update(zip(request, repeat(observed_at)))
                    self._metrics.observations_total.inc(len(request))
                    self._metrics.upstream_repeated_answers_total.inc()
                    return []
            # The events' states moved since (another batch, a reload): judge it after all.
            decoded = parse_answer(answer.repeat, request, keep_layout=True)
            answer.ids, answer.statuses, answer.resales = (
                decoded.ids,
                decoded.statuses,
                decoded.resales,
            )
            answer.unknown_statuses, answer.ignored = decoded.unknown_statuses, decoded.ignored
            answer.missing, answer.repeat = decoded.missing, None
            answer.layout = decoded.layout
        if answer.digest is not None:
            # The next answer to this request is decoded against this one (None: in full).
            self._repeats.keep_layout(region, request, answer.layout)
        detection, stored = await self._judge(
            catalog, answer.ids, answer.statuses, answer.resales, observed_at
        )
        if (
            answer.digest is not None
            and detection.remembered is not None
            and not detection.changed
            and not detection.candidates
            and answer.ids == request
        ):
            self._repeats.remember(
                region,
                Seen(
                    request,
                    answer.digest,
                    detection.remembered,
                    catalog,
                    answer.unknown_statuses,
                    answer.missing,
                ),
            )
        return stored

    async def process_columns(
        self,
        ids: Sequence[str],
        statuses: Sequence[str | None],
        resales: Sequence[str | None],
        observed_at: float,
    ) -> list[Transition]:
        """`process` for a batch given as columns (as the upstream client decodes it)."""
        _detection, stored = await self._judge(self._catalog(), ids, statuses, resales, observed_at)
        return stored

    async def _judge(
        self,
        catalog: Catalog,
        ids: Sequence[str],
        statuses: Sequence[str | None],
        resales: Sequence[str | None],
        observed_at: float,
    ) -> tuple[Detection, list[Transition]]:
        live = self._live
        tracked = any(s.track_unknown for s in catalog.sets.values())
        detection = detect_columns(
            ids,
            statuses,
            resales,
            live.states,
            catalog.rules,
            live.steady,
            frozenset() if tracked else live.noise,
        )
        if not detection.changed and not detection.candidates:
            # The common batch: nothing to store, nobody to tell.
            live.observed_at.update(zip(ids, repeat(observed_at)))
            self._metrics.observations_total.inc(len(ids))
            return detection, []
        enrich = self._enrich
        new = [
            NewTransition(
                c.event_id,
                c.field,
                c.previous,
                c.current,
                sets,
                observed_at,
                enrich(c.event_id) if enrich is not None else {},
            )
            for c in detection.candidates
            if (sets := self._watch_sets(catalog, c))
        ]
        deliveries: list[list[str]] = []
        delivery_at = 0.0
        if new and self.router is not None:
            deliveries = self.router.route_all(new)
            delivery_at = self._clock.wall() + self.router.first_delay
        fence = None
        if self._fence is not None and (detection.changed or new):
            fence = self._fence([*detection.changed, *(t.event_id for t in new)])
        with self._metrics.state_write_seconds.time():
            stored = await self._store.record(
                detection.changed, new, observed_at, deliveries, delivery_at, fence
            )
        if deliveries and self.router is not None:
            self.router.stored(stored, deliveries, delivery_at)
        live.apply(catalog, detection.changed)
        live.observed_at.update(zip(ids, repeat(observed_at)))
        self._metrics.observations_total.inc(len(ids))
        # A log line per transition is built only when it is written: at a thousand a second,
        # building lines for a WARNING-level log costs more than judging the answer.
        log_them = bool(stored) and is_enabled(log, logging.INFO)
        for t in stored:
            for name in t.watch_sets:
                self._metrics.transitions_total.labels(name, t.field, t.previous, t.current).inc()
            if not log_them:
                continue
            log.info(
                "transition",
                sequence=t.sequence,
                event_id=t.event_id,
                watch_sets=list(t.watch_sets),
                field=t.field,
                previous=t.previous,
                current=t.current,
                observed_at=iso_utc(t.observed_at),
            )
        if stored:
            for notifier in self.notifiers:
                try:
                    await notifier.notify(stored)
                except Exception:
                    log.exception("notifier failed", notifier=type(notifier).__name__)
        return detection, stored

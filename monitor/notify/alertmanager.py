"""Alertmanager: an alert keeps firing while an event's status is in `alert_on`.

Alerts are re-sent well inside Alertmanager's resolve timeout, each with an `endsAt` a few
intervals ahead (so they resolve by themselves if this daemon dies), and resolved explicitly
(`endsAt` = now) when the status leaves the set or the event stops being watched.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from monitor.clock import Clock, SystemClock, iso_utc
from monitor.config.catalog import Catalog
from monitor.config.models import Alertmanager
from monitor.domain import FIELD_STATUS, Transition
from monitor.logs import get_logger, redact
from monitor.metrics import Metrics
from monitor.poller.live import LiveState

log = get_logger("monitor.alertmanager")

#: endsAt is this many resend intervals ahead (Prometheus uses 4 as well).
ENDS_AFTER_INTERVALS = 4
#: Resolved alerts are re-sent this many times, in case a push is lost.
RESOLVED_PUSHES = 3


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert's identity and content."""

    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...]
    starts_at: float


def firing_alerts(
    catalog: Catalog,
    statuses: Mapping[str, str | None],
    alert_on: Iterable[str],
    config_labels: Mapping[str, str],
    alertname: str,
    started: Mapping[str, float],
    previous: Mapping[str, str],
    now: float,
) -> dict[tuple[tuple[str, str], ...], Alert]:
    """Every alert that should be firing, by label set (pure). One per event and watch set."""
    wanted = frozenset(alert_on)
    out: dict[tuple[tuple[str, str], ...], Alert] = {}
    for eid, status in statuses.items():
        if status not in wanted:
            continue
        spec = catalog.events.get(eid)
        if spec is None:
            continue
        for ws in spec.watch_sets:
            labels = {
                **config_labels,
                "alertname": alertname,
                "event_id": eid,
                "watch_set": ws,
                "status": status,
            }
            notes = {
                "summary": f"Event {eid} is {status}",
                "description": f"The primary status of event {eid} (watch set {ws}) is {status}.",
            }
            if eid in previous:
                notes["previous_status"] = previous[eid]
            key = tuple(sorted(labels.items()))
            out[key] = Alert(key, tuple(sorted(notes.items())), started.get(eid, now))
    return out


def request_body(
    firing: Iterable[Alert], resolved: Iterable[Alert], now: float, resend_seconds: float
) -> bytes:
    """The JSON list for `POST /api/v2/alerts` (pure)."""
    ends = iso_utc(now + ENDS_AFTER_INTERVALS * resend_seconds)
    body: list[dict[str, Any]] = [
        {
            "labels": dict(a.labels),
            "annotations": dict(a.annotations),
            "startsAt": iso_utc(a.starts_at),
            "endsAt": ends,
        }
        for a in firing
    ]
    body += [
        {
            "labels": dict(a.labels),
            "annotations": dict(a.annotations),
            "startsAt": iso_utc(a.starts_at),
            "endsAt": iso_utc(now),
        }
        for a in resolved
    ]
    return orjson.dumps(body)


class AlertmanagerNotifier:
    """Keeps Alertmanager's view in line with the live statuses; a Notifier for quick updates."""

    def __init__(
        self,
        *,
        config: Alertmanager,
        session: aiohttp.ClientSession,
        live: LiveState,
        catalog: Callable[[], Catalog],
        metrics: Metrics,
        clock: Clock | None = None,
        mine: Callable[[str], bool] | None = None,
    ) -> None:
        self._mine = mine  # several replicas: only the shard owner sends an event's alerts
        self.config = config
        self._session = session
        self._live = live
        self._catalog = catalog
        self._metrics = metrics
        self._clock = clock or SystemClock()
        self._started: dict[str, float] = {}
        self._previous: dict[str, str] = {}
        self._firing: dict[tuple[tuple[str, str], ...], Alert] = {}
        self._resolved: dict[tuple[tuple[str, str], ...], tuple[Alert, int]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def notify(self, transitions: Sequence[Transition]) -> None:
        """Remember when statuses started and what they were before; push soon."""
        changed = False
        for t in transitions:
            if t.field != FIELD_STATUS:
                continue
            self._previous[t.event_id] = t.previous
            self._started[t.event_id] = t.observed_at
            changed = True
        if changed:
            self._wake.set()

    def start(self) -> None:
        """Start the push loop."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="alertmanager")

    async def stop(self) -> None:
        """Stop pushing (alerts resolve by themselves at their endsAt)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                ok = await self.push()
            except Exception:
                log.exception("alertmanager push crashed")
                ok = False
            # A down Alertmanager is tried again soon, not only at the next resend.
            wait = self.config.resend_seconds if ok else min(self.config.resend_seconds, 5.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)

    async def push(self) -> bool:
        """Send every firing alert and the recently resolved ones; returns success."""
        now = self._clock.wall()
        catalog = self._catalog()
        mine = self._mine
        statuses = {
            eid: st.status[0] for eid, st in self._live.states.items() if mine is None or mine(eid)
        }
        firing = firing_alerts(
            catalog,
            statuses,
            self.config.alert_on,
            self.config.labels,
            self.config.alertname,
            self._started,
            self._previous,
            now,
        )
        for key, alert in self._firing.items():
            if key not in firing:
                self._resolved[key] = (alert, RESOLVED_PUSHES)
        for key, alert in firing.items():
            self._resolved.pop(key, None)
            # Remember when an alert was first seen firing, so startsAt stays put.
            eid = dict(alert.labels)["event_id"]
            self._started.setdefault(eid, alert.starts_at)
        self._firing = firing
        self._metrics.alerts_firing.set(len(firing))
        if not firing and not self._resolved:
            return True
        body = request_body(
            firing.values(),
            [a for a, _ in self._resolved.values()],
            now,
            self.config.resend_seconds,
        )
        ok = await self._send(body)
        if ok:
            self._resolved = {k: (a, n - 1) for k, (a, n) in self._resolved.items() if n > 1}
        return ok

    async def _send(self, body: bytes) -> bool:
        url = f"{self.config.url}/api/v2/alerts"
        try:
            async with self._session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.config.timeout_seconds),
                allow_redirects=False,
            ) as resp:
                status = resp.status
                await resp.content.read(4096)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self._metrics.alertmanager_pushes_total.labels("error").inc()
            log.warning(
                "alertmanager push failed; retrying next interval",
                error=f"{type(exc).__name__}: {redact(str(exc))}",
            )
            return False
        if 200 <= status < 300:
            self._metrics.alertmanager_pushes_total.labels("ok").inc()
            return True
        self._metrics.alertmanager_pushes_total.labels("error").inc()
        log.warning("alertmanager push refused; retrying next interval", status=status)
        return False

"""Alertmanager: pure alert building, and pushes over real HTTP to a recording Alertmanager."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest

from monitor.clock import ManualClock, iso_utc
from monitor.config.catalog import Catalog, build_catalog
from monitor.config.loader import parse_config
from monitor.config.models import Alertmanager
from monitor.core.transitions import EventState
from monitor.domain import Transition
from monitor.metrics import Metrics
from monitor.notify.alertmanager import (
    ENDS_AFTER_INTERVALS,
    RESOLVED_PUSHES,
    Alert,
    AlertmanagerNotifier,
    firing_alerts,
    request_body,
)
from monitor.poller.live import LiveState

A, B, C = "ALMAAAAAAAAAAAA1", "ALMBBBBBBBBBBBB2", "ALMCCCCCCCCCCCC3"
FEW, AVAIL, GONE = "FEW_TICKETS_LEFT", "TICKETS_AVAILABLE", "TICKETS_NOT_AVAILABLE"
NOW = 1_764_000_000.0


def catalog_of(watch_sets: str) -> Catalog:
    text = "upstream:\n  api_key: KEY-alertmanager-test\n" + watch_sets
    return build_catalog(parse_config(text, env={}))


# A is in two sets, B in one; C is nowhere.
CATALOG_TEXT = (
    f"watch_sets:\n  - {{name: main, events: [{A}, {B}]}}\n  - {{name: side, events: [{A}]}}\n"
)


def state(status: str | None, resale: str | None = AVAIL) -> EventState:
    return EventState((status, None, 0), (resale, None, 0))


def labels_of(alert: Alert | dict[str, Any]) -> dict[str, str]:
    return dict(alert.labels) if isinstance(alert, Alert) else alert["labels"]


# -- pure: firing_alerts -----------------------------------------------------------------------


def test_one_alert_per_event_and_watch_set_with_all_labels():
    catalog = catalog_of(CATALOG_TEXT)
    out = firing_alerts(
        catalog,
        {A: FEW, B: AVAIL, C: FEW},
        [FEW],
        {"team": "ops", "severity": "page"},
        "TicketAvailability",
        {},
        {},
        NOW,
    )
    got = sorted((labels_of(a) for a in out.values()), key=lambda d: d["watch_set"])
    assert got == [
        {
            "alertname": "TicketAvailability",
            "event_id": A,
            "watch_set": "main",
            "status": FEW,
            "team": "ops",
            "severity": "page",
        },
        {
            "alertname": "TicketAvailability",
            "event_id": A,
            "watch_set": "side",
            "status": FEW,
            "team": "ops",
            "severity": "page",
        },
    ]
    for key, alert in out.items():
        assert key == alert.labels == tuple(sorted(alert.labels))
        assert alert.starts_at == NOW  # no known start: now
        assert "previous_status" not in dict(alert.annotations)


@pytest.mark.parametrize(
    ("statuses", "alert_on", "expected"),
    [
        ({A: AVAIL, B: AVAIL}, [FEW], set()),
        ({A: FEW, B: FEW}, [FEW], {(A, "main"), (A, "side"), (B, "main")}),
        ({A: GONE, B: FEW}, [FEW, GONE], {(A, "main"), (A, "side"), (B, "main")}),
        ({A: GONE, B: FEW}, [GONE], {(A, "main"), (A, "side")}),
        ({A: None, B: FEW}, [FEW], {(B, "main")}),  # no baseline yet: nothing
        ({C: FEW}, [FEW], set()),  # not watched: nothing
        ({A: FEW}, [], set()),
    ],
)
def test_which_events_fire(statuses, alert_on, expected):
    out = firing_alerts(catalog_of(CATALOG_TEXT), statuses, alert_on, {}, "X", {}, {}, NOW)
    got = {(labels_of(a)["event_id"], labels_of(a)["watch_set"]) for a in out.values()}
    assert got == expected
    for a in out.values():
        assert labels_of(a)["status"] == statuses[labels_of(a)["event_id"]]


def test_builtin_labels_win_over_configured_ones():
    out = firing_alerts(
        catalog_of(CATALOG_TEXT),
        {B: FEW},
        [FEW],
        {"status": "overridden?", "alertname": "nope", "env": "prod"},
        "TicketAvailability",
        {},
        {},
        NOW,
    )
    (alert,) = out.values()
    assert labels_of(alert) == {
        "alertname": "TicketAvailability",
        "event_id": B,
        "watch_set": "main",
        "status": FEW,
        "env": "prod",
    }


def test_previous_status_annotation_and_start_time():
    out = firing_alerts(
        catalog_of(CATALOG_TEXT), {B: FEW}, [FEW], {}, "X", {B: NOW - 60}, {B: AVAIL}, NOW
    )
    (alert,) = out.values()
    notes = dict(alert.annotations)
    assert notes["previous_status"] == AVAIL
    assert notes["summary"] and notes["description"]
    assert alert.starts_at == NOW - 60


def test_event_id_only_in_the_event_id_label():
    """The event ID names the alert through `event_id`; no other label carries it."""
    out = firing_alerts(
        catalog_of(CATALOG_TEXT), {A: FEW}, [FEW], {"team": "ops"}, "X", {}, {}, NOW
    )
    for alert in out.values():
        labels = labels_of(alert)
        assert [k for k, v in labels.items() if A in v] == ["event_id"]


# -- pure: request_body ------------------------------------------------------------------------


def test_request_body_firing_and_resolved():
    firing = Alert((("alertname", "X"), ("event_id", A)), (("summary", "s"),), NOW - 100)
    resolved = Alert((("alertname", "X"), ("event_id", B)), (("summary", "t"),), NOW - 200)
    body = orjson.loads(request_body([firing], [resolved], NOW, 60))
    assert body == [
        {
            "labels": {"alertname": "X", "event_id": A},
            "annotations": {"summary": "s"},
            "startsAt": iso_utc(NOW - 100),
            "endsAt": iso_utc(NOW + ENDS_AFTER_INTERVALS * 60),
        },
        {
            "labels": {"alertname": "X", "event_id": B},
            "annotations": {"summary": "t"},
            "startsAt": iso_utc(NOW - 200),
            "endsAt": iso_utc(NOW),
        },
    ]
    assert body[0]["endsAt"] > iso_utc(NOW)  # firing: in the future


def test_request_body_empty():
    assert orjson.loads(request_body([], [], NOW, 60)) == []


# -- over real HTTP ----------------------------------------------------------------------------


class FakeAlertmanager:
    """Records every POST /api/v2/alerts body; `status` is what it answers."""

    def __init__(self) -> None:
        self.bodies: list[list[dict[str, Any]]] = []
        self.status = 200
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def _alerts(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        self.bodies.append(await request.json())
        return web.json_response({}, status=self.status)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v2/alerts", self._alerts)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last(self) -> list[dict[str, Any]]:
        return self.bodies[-1]


class Rig:
    """A notifier on a recording Alertmanager, with its live state, catalog, clock and metrics."""

    def __init__(
        self, session: aiohttp.ClientSession, url: str, alert_on: list[str], resend: float
    ) -> None:
        self.live = LiveState()
        self.clock = ManualClock(wall=NOW)
        self.registry = CollectorRegistry()
        self.catalog = catalog_of(CATALOG_TEXT)
        self.notifier = AlertmanagerNotifier(
            config=Alertmanager(
                url=url,
                alert_on=alert_on,
                resend_seconds=resend,
                labels={"team": "ops"},
                timeout_seconds=2,
            ),
            session=session,
            live=self.live,
            catalog=lambda: self.catalog,
            metrics=Metrics(self.registry),
            clock=self.clock,
        )

    def pushes(self, outcome: str) -> float:
        value = self.registry.get_sample_value(
            "availability_monitor_alertmanager_pushes_total", {"outcome": outcome}
        )
        return value or 0.0


@pytest.fixture
async def am() -> AsyncIterator[FakeAlertmanager]:
    server = FakeAlertmanager()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def make_rig(am: FakeAlertmanager) -> AsyncIterator[Any]:
    """`make_rig(alert_on=[...], resend_seconds=...)`; notifiers are stopped afterwards."""
    rigs: list[Rig] = []
    async with aiohttp.ClientSession() as session:

        def _make(alert_on: list[str] | None = None, resend_seconds: float = 60) -> Rig:
            rig = Rig(session, am.url, alert_on or [FEW], resend_seconds)
            rigs.append(rig)
            return rig

        yield _make
        for rig in rigs:
            await rig.notifier.stop()


def keyed(body: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        (a["labels"]["event_id"], a["labels"]["watch_set"], a["labels"]["status"]): a for a in body
    }


def is_firing(alert: dict[str, Any], now: float) -> bool:
    return alert["endsAt"] > iso_utc(now)


def is_resolved(alert: dict[str, Any], now: float) -> bool:
    return alert["endsAt"] == iso_utc(now)


async def test_fires_and_is_resent_with_the_same_labels(am, make_rig):
    rig = make_rig()
    assert await rig.notifier.push() is True
    assert am.bodies == []  # nothing firing, nothing resolved: no request at all

    rig.live.states[A] = state(FEW)
    rig.live.states[B] = state(AVAIL)
    assert await rig.notifier.push() is True
    first = keyed(am.last())
    assert set(first) == {(A, "main", FEW), (A, "side", FEW)}
    for alert in first.values():
        assert alert["labels"]["alertname"] == "TicketAvailability"
        assert alert["labels"]["team"] == "ops"
        assert alert["endsAt"] == iso_utc(NOW + ENDS_AFTER_INTERVALS * 60)
    assert rig.registry.get_sample_value("availability_monitor_alerts_firing") == 2

    rig.clock.advance(60)
    assert await rig.notifier.push() is True
    second = keyed(am.last())
    assert set(second) == set(first)
    assert [a["labels"] for a in second.values()] == [a["labels"] for a in first.values()]
    assert all(is_firing(a, rig.clock.wall()) for a in second.values())
    assert rig.pushes("ok") == 2 and rig.pushes("error") == 0


async def test_resolved_when_status_leaves_the_set_then_dropped(am, make_rig):
    rig = make_rig()
    rig.live.states[B] = state(FEW)
    await rig.notifier.push()
    assert set(keyed(am.last())) == {(B, "main", FEW)}

    rig.live.states[B] = state(AVAIL)
    sent_before = len(am.bodies)
    for _ in range(RESOLVED_PUSHES):
        rig.clock.advance(10)
        assert await rig.notifier.push() is True
        (alert,) = am.last()
        assert alert["labels"]["event_id"] == B
        assert alert["labels"]["status"] == FEW  # the label set that fired
        assert is_resolved(alert, rig.clock.wall())
    assert len(am.bodies) == sent_before + RESOLVED_PUSHES
    assert RESOLVED_PUSHES >= 2  # "a few times"

    rig.clock.advance(10)
    assert await rig.notifier.push() is True
    assert len(am.bodies) == sent_before + RESOLVED_PUSHES  # dropped: nothing more is sent
    assert rig.registry.get_sample_value("availability_monitor_alerts_firing") == 0


async def test_status_change_within_the_set_resolves_the_old_label_set(am, make_rig):
    rig = make_rig(alert_on=[FEW, GONE])
    rig.live.states[B] = state(FEW)
    await rig.notifier.push()
    rig.live.states[B] = state(GONE)
    rig.clock.advance(5)
    await rig.notifier.push()
    body = keyed(am.last())
    assert set(body) == {(B, "main", FEW), (B, "main", GONE)}
    assert is_resolved(body[(B, "main", FEW)], rig.clock.wall())
    assert is_firing(body[(B, "main", GONE)], rig.clock.wall())


async def test_resolved_when_the_event_stops_being_watched(am, make_rig):
    rig = make_rig()
    rig.live.states[A] = state(FEW)
    rig.live.states[B] = state(FEW)
    await rig.notifier.push()
    assert len(am.last()) == 3

    rig.catalog = catalog_of(f"watch_sets:\n  - {{name: main, events: [{B}]}}\n")
    rig.clock.advance(30)
    await rig.notifier.push()
    body = keyed(am.last())
    assert set(body) == {(A, "main", FEW), (A, "side", FEW), (B, "main", FEW)}
    now = rig.clock.wall()
    assert is_resolved(body[(A, "main", FEW)], now) and is_resolved(body[(A, "side", FEW)], now)
    assert is_firing(body[(B, "main", FEW)], now)


async def test_returning_to_the_set_fires_again_and_cancels_the_resolve(am, make_rig):
    rig = make_rig()
    rig.live.states[B] = state(FEW)
    await rig.notifier.push()
    rig.live.states[B] = state(AVAIL)
    await rig.notifier.push()
    assert is_resolved(am.last()[0], rig.clock.wall())
    rig.live.states[B] = state(FEW)
    rig.clock.advance(1)
    await rig.notifier.push()
    (alert,) = am.last()
    assert is_firing(alert, rig.clock.wall())


async def test_alertmanager_answering_500_counts_an_error_and_retries(am, make_rig):
    rig = make_rig()
    rig.live.states[B] = state(FEW)
    am.status = 500
    assert await rig.notifier.push() is False
    assert rig.pushes("error") == 1 and rig.pushes("ok") == 0

    am.status = 200
    rig.clock.advance(5)
    assert await rig.notifier.push() is True
    assert rig.pushes("ok") == 1
    assert set(keyed(am.last())) == {(B, "main", FEW)}


async def test_alertmanager_down_counts_an_error_and_catches_up(am, make_rig):
    rig = make_rig()
    rig.live.states[B] = state(FEW)
    await rig.notifier.push()
    assert rig.pushes("ok") == 1

    await am.stop()
    rig.live.states[B] = state(AVAIL)  # resolves while Alertmanager is down
    rig.clock.advance(10)
    assert await rig.notifier.push() is False
    rig.clock.advance(10)
    assert await rig.notifier.push() is False
    assert rig.pushes("error") == 2

    await am.start()  # same port again
    rig.clock.advance(10)
    sent = len(am.bodies)
    # The failed pushes did not use up the resolved alert's re-sends.
    for _ in range(RESOLVED_PUSHES):
        assert await rig.notifier.push() is True
    assert len(am.bodies) == sent + RESOLVED_PUSHES
    (alert,) = am.last()
    assert alert["labels"]["event_id"] == B
    assert is_resolved(alert, rig.clock.wall())
    assert rig.pushes("ok") == 1 + RESOLVED_PUSHES


async def test_notify_records_previous_status_and_start(am, make_rig):
    rig = make_rig()
    observed = NOW - 42.5
    await rig.notifier.notify(
        [
            Transition(7, B, ("main",), "status", AVAIL, FEW, observed),
            Transition(8, B, ("main",), "resale_status", FEW, GONE, NOW),  # ignored
        ]
    )
    rig.live.states[B] = state(FEW, GONE)
    await rig.notifier.push()
    (alert,) = am.last()
    assert alert["annotations"]["previous_status"] == AVAIL
    assert alert["startsAt"] == iso_utc(observed)


async def test_metrics_carry_no_event_id(am, make_rig):
    rig = make_rig()
    rig.live.states[A] = state(FEW)
    await rig.notifier.push()
    text = generate_latest(rig.registry).decode()
    assert "alerts_firing" in text
    assert A not in text


async def test_push_loop_resends(am, make_rig):
    rig = make_rig(resend_seconds=1)
    rig.live.states[B] = state(FEW)
    rig.notifier.start()
    deadline = time.monotonic() + 2.5
    while len(am.bodies) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await rig.notifier.stop()
    assert len(am.bodies) >= 2
    assert all(set(keyed(b)) == {(B, "main", FEW)} for b in am.bodies)


async def test_notify_wakes_the_loop(am, make_rig):
    rig = make_rig(resend_seconds=60)
    rig.notifier.start()
    deadline = time.monotonic() + 2
    await asyncio.sleep(0.1)
    assert am.bodies == []  # nothing to say yet
    rig.live.states[B] = state(FEW)
    await rig.notifier.notify([Transition(1, B, ("main",), "status", AVAIL, FEW, NOW)])
    while not am.bodies and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    await rig.notifier.stop()
    assert len(am.bodies) == 1

"""Events that answer UNKNOWN for a day (a typo, a cancelled event) are counted per watch set and
shown in /v1/events/{id} as `unknown_since`."""

from __future__ import annotations

import aiohttp
import pytest

from monitor.clock import ManualClock, iso_utc
from monitor.poller.unknown import UnknownSince
from tests.conftest import make_config

A, B, C = "EVUAAAAAAAAAAAA1", "EVUBBBBBBBBBBBB2", "EVUCCCCCCCCCCCC3"
U, T = "UNKNOWN", "TICKETS_AVAILABLE"


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        pytest.param([([A], [U], 10.0)], {A: 10.0}, id="first-unknown"),
        pytest.param([([A], [U], 10.0), ([A], [U], 20.0)], {A: 10.0}, id="kept-from-the-first"),
        pytest.param([([A], [U], 10.0), ([A], [T], 20.0)], {A: None}, id="ended-by-a-status"),
        pytest.param(
            [([A, B], [U, T], 10.0), ([B], [T], 20.0)], {A: 10.0, B: None}, id="other-events-alone"
        ),
        pytest.param(
            [([A], [U], 10.0), ([A], [T], 20.0), ([A], [U], 30.0)], {A: 30.0}, id="starts-again"
        ),
        pytest.param([([A, B], [T, None], 10.0)], {A: None, B: None}, id="none-unknown"),
    ],
)
def test_unknown_since(answers, expected):
    tracker = UnknownSince()
    for ids, statuses, now in answers:
        tracker.observe(ids, statuses, now)
    assert {eid: tracker.since(eid) for eid in expected} == expected
    assert list(tracker.long_unknown(40.0, 25.0)) == [
        e for e, t in expected.items() if t is not None and t <= 15.0
    ]


def two_sets() -> str:
    return (
        "watch_sets:\n"
        f"  - {{name: one, events: [{A}, {B}]}}\n"
        f"  - {{name: two, events: [{A}, {C}]}}\n"
    )


async def _event(d, eid: str) -> dict:
    async with aiohttp.ClientSession() as s, s.get(f"{d.url}/v1/events/{eid}") as r:
        assert r.status == 200
        return await r.json()


async def test_a_day_of_unknown_is_reported_per_watch_set_and_per_event(
    sim, tmp_path, start_daemon
):
    clock = ManualClock()
    sim.world.set_status(A, status=U)
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", two_sets()), clock=clock)
    gauge = d.metrics.registry.get_sample_value
    name = "availability_monitor_events_long_unknown"
    started = clock.wall()
    await d.scheduler.run_once()
    assert (await _event(d, A))["unknown_since"] == iso_utc(started)
    assert (await _event(d, B))["unknown_since"] is None
    assert gauge(name, {"watch_set": "one"}) == 0  # not a day yet
    clock.advance(86400)
    await d.scheduler.run_once()
    assert (await _event(d, A))["unknown_since"] == iso_utc(started)  # still since the first
    assert gauge(name, {"watch_set": "one"}) == 1
    assert gauge(name, {"watch_set": "two"}) == 1
    sim.world.set_status(A, status=T)
    await d.scheduler.run_once()
    assert (await _event(d, A))["unknown_since"] is None
    assert gauge(name, {"watch_set": "one"}) == 0
    async with aiohttp.ClientSession() as s, s.get(d.url + "/metrics") as r:
        text = await r.text()
    assert 'events_long_unknown{watch_set="one"} 0.0' in text
    assert A not in text  # never an event ID as a label

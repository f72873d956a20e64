"""Partner API event details in the daemon: time zones, enrichment, lifecycle, persistence."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from monitor.clock import ManualClock
from tests.conftest import make_config

A, B = "EVIAAAAAAAAAAAA1", "EVIBBBBBBBBBBBB2"
CLIENT_SECRET = "partner-cl1ent-secret-xyz"


def partner_body(sim, *events: str, extra: str = "") -> str:
    return (
        f"watch_sets:\n  - {{name: main, events: [{', '.join(events)}]}}\n"
        f"partner: {{base_url: '{sim.partner_url}', api_key: partner-key-123, "
        f"client_secret: {CLIENT_SECRET}, rate_limit: {{requests: 50, per_seconds: 1}}{extra}}}\n"
    )


def polled(sim) -> set[str]:
    """Event IDs the inventory endpoint was asked about (the log holds partner calls too)."""
    return {eid for r in sim.log if r.api == "inventory" for eid in r.ids}


async def wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_a_resolved_zone_in_its_window_keeps_the_event_out(sim, tmp_path, start_daemon):
    clock = ManualClock()
    clock.set_wall(datetime(2026, 11, 25, 7, 30, tzinfo=UTC))  # 02:30 in New York
    sim.partner.set_event(A, time_zone="America/New_York")
    sim.partner.set_event(B, time_zone="Europe/Berlin")
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", partner_body(sim, A, B)), clock=clock
    )
    await wait_for(lambda: all(d.catalog.events[e].zone >= 0 for e in (A, B)))
    assert d.catalog.events[A].zone_source == "partner"
    report = (await d.scheduler.run_once())["main"]
    assert report.skipped == 1
    assert polled(sim) == {B}
    async with aiohttp.ClientSession() as s, s.get(f"{d.url}/v1/events/{A}") as r:
        body = await r.json()
    assert body["in_maintenance"] is True and body["time_zone"] == "America/New_York"
    assert body["time_zone_source"] == "partner" and body["details"]["event_name"]


async def test_zones_survive_a_restart_without_new_requests(sim, tmp_path, start_daemon):
    sim.partner.set_event(A, time_zone="Asia/Tokyo")
    path = tmp_path / "s.db"
    d1 = await start_daemon(make_config(sim.url, path, partner_body(sim, A)))
    await wait_for(lambda: d1.catalog.events[A].zone >= 0)
    await d1.stop()
    asked = sim.partner.details_requests + sim.partner.token_requests
    d2 = await start_daemon(make_config(sim.url, path, partner_body(sim, A)))
    assert d2.catalog.zone_of(A).name == "Asia/Tokyo"  # at once, from the store
    await asyncio.sleep(0.5)
    assert sim.partner.details_requests + sim.partner.token_requests == asked


async def test_the_partner_api_down_does_not_stop_polling(sim, tmp_path, start_daemon):
    sim.faults.add({"kind": "error", "status": 503, "api": "partner"})
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", partner_body(sim, A)))
    await asyncio.sleep(0.3)
    report = (await d.scheduler.run_once())["main"]
    assert report.ok == 1
    assert d.catalog.events[A].zone == -1
    assert (
        d.metrics.registry.get_sample_value(
            "availability_monitor_events_without_time_zone", {"watch_set": "main"}
        )
        == 1
    )


async def test_a_404_is_not_retried_in_a_loop(sim, tmp_path, start_daemon):
    sim.partner.set_event(A, found=False)
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", partner_body(sim, A)))
    await wait_for(lambda: A in d.eventinfo.known)
    assert d.eventinfo.known[A].status == "not_found"
    await asyncio.sleep(1.0)
    assert sim.partner.details_requests == 1


NOON = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # no venue in its window in UTC


async def test_a_past_event_stops_being_requested(sim, tmp_path, start_daemon):
    clock = ManualClock()
    clock.set_wall(NOON)
    sim.partner.set_event(A, event_date=NOON.timestamp() - 3600, time_zone="UTC")
    sim.partner.set_event(B, time_zone="UTC")
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", partner_body(sim, A, B)), clock=clock
    )
    await wait_for(lambda: A in d.eventinfo.known and B in d.eventinfo.known)
    await d.scheduler.run_once()
    assert polled(sim) == {B}
    assert (
        d.metrics.registry.get_sample_value(
            "availability_monitor_events_retired", {"watch_set": "main"}
        )
        == 1
    )
    async with aiohttp.ClientSession() as s, s.get(f"{d.url}/v1/events/{A}") as r:
        assert (await r.json())["retired"] is True


async def test_lifecycle_can_be_switched_off(sim, tmp_path, start_daemon):
    clock = ManualClock()
    clock.set_wall(NOON)
    sim.partner.set_event(A, event_date=NOON.timestamp() - 3600, time_zone="UTC")
    body = partner_body(sim, A, extra=", retire_past_events: false")
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body), clock=clock)
    await wait_for(lambda: A in d.eventinfo.known)
    await d.scheduler.run_once()
    assert polled(sim) == {A}


async def test_transitions_are_enriched(sim, tmp_path, start_daemon):
    clock = ManualClock()
    clock.set_wall(NOON)
    sim.partner.set_event(A, name="Sounders vs Earthquakes", time_zone="America/Los_Angeles")
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", partner_body(sim, A)), clock=clock
    )
    await wait_for(lambda: A in d.eventinfo.known)
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    [t] = await d.store.transitions_since(0, 10)
    data = t.to_json()
    assert data["event_name"] == "Sounders vs Earthquakes"
    assert data["time_zone"] == "America/Los_Angeles"
    assert data["event_date"].endswith("Z") and data["venue_name"]


async def test_partner_secrets_never_reach_the_logs(sim, tmp_path, start_daemon, log_stream):
    sim.faults.add({"kind": "error", "status": 500, "api": "partner.event", "count": 1})
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", partner_body(sim, A, B)))
    await wait_for(lambda: len(d.eventinfo.known) == 1, 10)
    text = log_stream.getvalue()
    assert "partner API lookup failed" in text
    assert CLIENT_SECRET not in text
    assert "partner-key-123" not in text
    for token in sim.partner.recent_tokens:
        assert token not in text

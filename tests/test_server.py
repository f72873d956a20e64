"""The HTTP server over real HTTP: health, readiness, events, transitions, metrics, the token."""

from __future__ import annotations

import aiohttp
import pytest

from monitor.secrets import Secret
from tests.conftest import API_KEY, make_config

A, B = "SRVAAAAAAAAAAAA1", "SRVBBBBBBBBBBBB2"
BODY = f"watch_sets:\n  - name: main\n    events: [{A}, {{id: {B}, time_zone: Asia/Kolkata}}]\n"


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, dict]:
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers) as r:
        text = await r.text()
        data = await r.json(content_type=None) if r.content_type == "application/json" else {}
        return r.status, text, data


async def test_health_and_readiness(sim, tmp_path, start_daemon):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", BODY))
    assert (await fetch(d.url + "/healthz"))[0] == 200
    status, _, body = await fetch(d.url + "/readyz")
    assert status == 503 and "first upstream answer" in body["reason"]
    await d.scheduler.run_once()
    status, _, body = await fetch(d.url + "/readyz")
    assert status == 200 and body["ready"] is True


async def test_event_and_transitions_endpoints(sim, tmp_path, start_daemon):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", BODY))
    await d.scheduler.run_once()
    status, _, ev = await fetch(f"{d.url}/v1/events/{B}")
    assert status == 200
    assert ev["event_id"] == B and ev["watch_sets"] == ["main"]
    assert ev["status"] == "TICKETS_AVAILABLE" and ev["resale_status"] == "TICKETS_AVAILABLE"
    assert ev["time_zone"] == "Asia/Kolkata" and ev["in_maintenance"] in (True, False)
    assert ev["observed_at"].endswith("Z")
    assert (await fetch(f"{d.url}/v1/events/NOTWATCHED"))[0] == 404

    for status_value in ("FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE", "TICKETS_AVAILABLE"):
        sim.world.set_status(A, status=status_value)
        await d.scheduler.run_once()
    status, _, page = await fetch(f"{d.url}/v1/transitions?since=0&limit=2")
    assert status == 200
    assert [t["sequence"] for t in page["transitions"]] == [1, 2] and page["next"] == 2
    first = page["transitions"][0]
    assert set(first) >= {
        "sequence",
        "event_id",
        "watch_sets",
        "field",
        "previous",
        "current",
        "observed_at",
    }
    _, _, page2 = await fetch(f"{d.url}/v1/transitions?since={page['next']}&limit=2")
    assert [t["sequence"] for t in page2["transitions"]] == [3] and page2["next"] == 3
    _, _, page3 = await fetch(f"{d.url}/v1/transitions?since=3")
    assert page3 == {"transitions": [], "next": 3}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("since=abc", "since"),
        ("since=-1", "since"),
        ("limit=0", "limit"),
        ("limit=x", "limit"),
        ("limit=100000", "limit"),
    ],
)
async def test_bad_transition_queries_are_400_naming_the_field(
    sim, tmp_path, start_daemon, query, field
):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", BODY))
    status, _, body = await fetch(f"{d.url}/v1/transitions?{query}")
    assert status == 400 and body["field"] == field


async def test_admin_token_guards_v1(sim, tmp_path, start_daemon):
    cfg = make_config(sim.url, tmp_path / "s.db", BODY)
    token = Secret("t0ken-abc")
    cfg = cfg.model_copy(update={"server": cfg.server.model_copy(update={"admin_token": token})})
    d = await start_daemon(cfg)
    assert (await fetch(f"{d.url}/v1/events/{A}"))[0] == 401
    assert (await fetch(f"{d.url}/v1/events/{A}", {"Authorization": "Bearer nope"}))[0] == 401
    assert (await fetch(f"{d.url}/v1/events/{A}", {"Authorization": "Bearer t0ken-abc"}))[0] == 200
    assert (await fetch(f"{d.url}/metrics"))[0] == 200  # metrics and health stay open
    assert (await fetch(f"{d.url}/healthz"))[0] == 200


async def test_metrics_exposes_the_contract_without_event_ids(sim, tmp_path, start_daemon):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", BODY))
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    status, text, _ = await fetch(d.url + "/metrics")
    assert status == 200
    for name in (
        "availability_monitor_events_watched",
        "availability_monitor_events_by_status",
        "availability_monitor_events_in_maintenance",
        "availability_monitor_transitions_total",
        "availability_monitor_upstream_requests_total",
        "availability_monitor_upstream_request_duration_seconds",
        "availability_monitor_last_successful_poll_timestamp_seconds",
    ):
        assert name in text, name
    assert (
        'availability_monitor_events_by_status{status="FEW_TICKETS_LEFT",watch_set="main"} 1.0'
        in text
    )
    assert (
        'availability_monitor_transitions_total{field="status",from="TICKETS_AVAILABLE",'
        'to="FEW_TICKETS_LEFT",watch_set="main"} 1.0'
    ) in text
    assert 'availability_monitor_upstream_requests_total{api="inventory",outcome="ok"} 2.0' in text
    assert A not in text and B not in text and API_KEY not in text

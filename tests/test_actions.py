"""Marketplace actions on transitions, against the simulator's marketplace over real HTTP."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import aiohttp
import pytest
import yaml

from monitor.config import ConfigError, parse_config
from monitor.simulator import Simulator
from monitor.simulator.marketplace import MarketplaceSim
from tests.conftest import API_KEY, make_config

A, B = "ACTAAAAAAAAAAAA1", "ACTBBBBBBBBBBBB2"
TOKEN = "mkt-t0ken-secret-value"


@pytest.fixture
async def world():
    sim = Simulator(seed=1, evolve=False, api_key=API_KEY, record_ids=True)
    market = MarketplaceSim(token=TOKEN)
    market.add_routes(sim.app())
    await sim.start()
    yield sim, market
    await sim.stop()


def actions_config(
    url: str,
    listings: dict[str, list[int]],
    *,
    dry_run: bool = False,
    update: dict | None = None,
    schedule: str = "[0, 1, 1, 1]",
) -> str:
    return (
        f"watch_sets:\n  - {{name: main, events: [{A}, {B}]}}\n"
        f"notifications: {{retry_schedule: {schedule}}}\n"
        f"marketplace: {{base_url: '{url}', api_token: {TOKEN}, rate_limit: {{requests: 100, per_seconds: 1}}}}\n"
        + yaml.safe_dump(
            {
                "actions": [
                    {
                        "name": "reprice-on-sellout",
                        "when": {"watch_sets": ["main"], "field": "status",
                                 "to": ["TICKETS_NOT_AVAILABLE"]},
                        "listings": listings,
                        "update": update or {"price": "150.00", "internal_notes": "primary sold out"},
                        "dry_run": dry_run,
                    }
                ]
            }
        )
    )  # fmt: skip


async def sell_out(d, sim, *events: str) -> None:
    await d.scheduler.run_once()
    for eid in events:
        sim.world.set_status(eid, status="TICKETS_NOT_AVAILABLE")
    await d.scheduler.run_once()
    await d.outbox.drain()


async def test_a_transition_triggers_exactly_the_configured_update(world, tmp_path, start_daemon):
    sim, market = world
    market.seed_listings([11, 12, 13, 99], price="100.00")
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", actions_config(sim.url, {A: [11, 12, 13]}))
    )
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")  # not a trigger
    await d.scheduler.run_once()
    await d.outbox.drain()
    assert market.requests == []
    await sell_out(d, sim, A)
    assert [(r.method, r.n_ids, r.status) for r in market.requests] == [("PATCH", 3, 200)]
    assert {i: market.listings[i]["price"] for i in (11, 12, 13, 99)} == {
        11: "150.00",
        12: "150.00",
        13: "150.00",
        99: "100.00",
    }
    assert market.listings[11]["internal_notes"] == "primary sold out"
    async with aiohttp.ClientSession() as s, s.get(d.url + "/v1/actions") as r:
        body = await r.json()
    [recent] = body["recent"]
    assert recent["outcome"] == "ok" and recent["event_id"] == A
    assert recent["result"]["updated"] == [11, 12, 13]
    assert body["rules"][0]["name"] == "reprice-on-sellout" and body["rules"][0]["pending"] == 0


async def test_1500_listings_become_two_requests(world, tmp_path, start_daemon):
    sim, market = world
    ids = list(range(1, 1501))
    market.seed_listings(ids, price="10.00")
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", actions_config(sim.url, {A: ids}))
    )
    await sell_out(d, sim, A)
    assert [r.n_ids for r in market.requests] == [1000, 500]
    assert all(market.listings[i]["price"] == "150.00" for i in ids)


async def test_partial_success_reports_the_missing_ids(world, tmp_path, start_daemon):
    sim, market = world
    market.seed_listings([1, 3], price="10.00")
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", actions_config(sim.url, {A: [1, 2, 3, 4]}))
    )
    await sell_out(d, sim, A)
    [done] = await d.store.recent_deliveries("action:", 10)
    assert done.result["outcome"] == "partial"
    assert done.result["missing"] == [2, 4]
    assert len(market.requests) == 1  # missing ones are reported, not retried


async def test_404_is_reported_not_retried(world, tmp_path, start_daemon):
    sim, market = world
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", actions_config(sim.url, {A: [7, 8]}))
    )
    await sell_out(d, sim, A)
    [done] = await d.store.recent_deliveries("action:", 10)
    assert done.state == "done" and done.result["outcome"] == "not_found"
    assert "Could not find record." in done.result["errors"][0]
    assert len(market.requests) == 1


async def test_400_is_dead_lettered_with_the_marketplace_message(world, tmp_path, start_daemon):
    sim, market = world
    market.seed_listings([5], price="10.00")
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", actions_config(sim.url, {A: [5]}))
    )
    market.fail_next(1, status=400, message="inventory[price] is invalid")
    await sell_out(d, sim, A)
    [dead] = await d.store.dead_letters("action:reprice-on-sellout", 10)
    assert "inventory[price] is invalid" in dead.last_error
    assert len(market.requests) == 1  # never retried blindly
    async with (
        aiohttp.ClientSession() as s,
        s.get(d.url + "/v1/actions/reprice-on-sellout/dead-letters") as r,
    ):
        assert (await r.json())["dead_letters"][0]["id"] == dead.id


async def test_500_is_retried_with_backoff(world, tmp_path, start_daemon):
    from monitor.clock import ManualClock

    sim, market = world
    market.seed_listings([5], price="10.00")
    clock = ManualClock(wall=time.time())
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", actions_config(sim.url, {A: [5]})), clock=clock
    )
    market.fail_next(2, status=500)
    await sell_out(d, sim, A)
    for _ in range(3):
        clock.advance(2)
        await d.outbox.drain()
    assert [r.status for r in market.requests] == [500, 500, 200]
    assert market.listings[5]["price"] == "150.00"


async def test_401_stops_the_rule_and_alerts(world, tmp_path, start_daemon):
    sim, market = world
    market.seed_listings([5], price="10.00")
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", actions_config(sim.url, {A: [5]}))
    )
    market.token = "rotated-elsewhere"
    await sell_out(d, sim, A)
    assert d.actions.get("reprice-on-sellout").enabled is False
    assert (
        d.metrics.registry.get_sample_value(
            "availability_monitor_action_rule_enabled", {"rule": "reprice-on-sellout"}
        )
        == 0
    )
    assert (await d.store.outbox_counts())["action:reprice-on-sellout"] == (1, 0)  # kept
    market.token = TOKEN
    await d.actions.set_enabled("reprice-on-sellout", True)
    await d.outbox.drain()
    assert market.listings[5]["price"] == "150.00"


async def test_dry_run_sends_nothing(world, tmp_path, start_daemon, log_stream):
    sim, market = world
    market.seed_listings([5], price="10.00")
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", actions_config(sim.url, {A: [5]}, dry_run=True))
    )
    await sell_out(d, sim, A)
    assert market.requests == [] and market.listings[5]["price"] == "10.00"
    assert "dry run: would update listings" in log_stream.getvalue()
    assert TOKEN not in log_stream.getvalue()
    [done] = await d.store.recent_deliveries("action:", 10)
    assert done.result["outcome"] == "dry_run"


@pytest.mark.parametrize(
    ("update", "path", "fragment"),
    [
        ({"price": "1000000.01"}, "actions[0].update.price", "1,000,000"),
        ({"price": "-1"}, "actions[0].update.price", "negative"),
        ({"discount": "100.5"}, "actions[0].update.discount", "100"),
        ({"format": "Carrier_pigeon"}, "actions[0].update.format", ""),
        ({"split_type": "SOMETIMES"}, "actions[0].update.split_type", ""),
        ({"type": "CONCERT"}, "actions[0].update.type", ""),
        ({"view_type": "Blurry"}, "actions[0].update.view_type", ""),
        ({"split_type": "CUSTOM"}, "actions[0].update.split_override", "required"),
        ({"in_hand": False}, "actions[0].update.in_hand_on", "required"),
        ({"internal_notes": "  "}, "actions[0].update.internal_notes", "blank"),
        ({"remote_id": "x1"}, "actions[0].update.remote_id", "unique"),
        ({"quantity": 2}, "actions[0].update.quantity", ""),
        ({"seats": [{"seat": 1}]}, "actions[0].update.seats", ""),
        ({"pricee": "1.00"}, "actions[0].update.pricee", ""),
    ],
)
def test_a_rule_that_would_send_an_invalid_body_is_a_config_error(update, path, fragment):
    text = "upstream: {api_key: k-123456}\n" + actions_config(
        "http://127.0.0.1:9", {A: [1]}, update=update
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    issues = {i.path: i.message for i in info.value.issues}
    assert path in issues, issues
    assert fragment.lower() in issues[path].lower()
    assert TOKEN not in str(info.value)


def test_listings_file_and_missing_marketplace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "links.csv").write_text(
        "event_id,listing_id\nACTAAAAAAAAAAAA1,5\nbad id,6\nACTBBBBBBBBBBBB2,x\n"
    )
    text = (
        "upstream: {api_key: k-123456}\n"
        "actions:\n  - {name: r, when: {to: [TICKETS_NOT_AVAILABLE]}, listings_file: links.csv,"
        " update: {price: '1.00'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    messages = [str(i) for i in info.value.issues]
    assert any(m.startswith("actions: actions need a marketplace") for m in messages)
    assert any("links.csv line 3, column event_id" in m for m in messages)
    assert any("links.csv line 4, column listing_id" in m for m in messages)


async def test_kill_9_between_transition_and_update_still_updates(world, tmp_path):
    sim, market = world
    market.seed_listings([21, 22], price="10.00")
    cfg_path = tmp_path / "monitor.yaml"
    cfg = make_config(sim.url, tmp_path / "s.db", actions_config(sim.url, {A: [21, 22]}))
    raw = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    raw["upstream"]["api_key"] = API_KEY
    raw["marketplace"]["api_token"] = TOKEN
    raw["watch_sets"][0]["interval_seconds"] = 1
    raw["log"] = {"format": "json"}
    cfg_path.write_text(yaml.safe_dump(raw))
    market.stall_next(1, seconds=30)  # the update hangs: the kill lands before it is done

    async def run() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "--config", str(cfg_path),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    proc = await run()
    try:
        await asyncio.sleep(2.5)  # baseline polls
        sim.world.set_status(A, status="TICKETS_NOT_AVAILABLE")
        assert proc.stderr is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(proc.stderr.readline(), 10)
            if b'"event": "transition"' in line or b'"event":"transition"' in line:
                break
        await asyncio.sleep(0.5)  # the action's request is out, and stalls
        assert market.listings[21]["price"] == "10.00"
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        market.clear_faults()
        proc = await run()
        deadline = time.monotonic() + 15
        while market.listings[21]["price"] != "150.00" and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        assert market.listings[21]["price"] == "150.00"
        assert market.listings[22]["price"] == "150.00"
    finally:
        proc.kill()
        await proc.wait()

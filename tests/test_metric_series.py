"""Labelled counters have a sample from the start (zero), so rate() and absent() behave."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metric_series import ACTION_OUTCOMES, DELIVERY_OUTCOMES, UPSTREAM_OUTCOMES
from monitor.notify.signing import new_secret
from monitor.secrets import Secret
from tests.conftest import make_config

TOKEN = "adm1n-t0ken-series"
SECRET = new_secret().reveal()
BODY = (
    "watch_sets:\n"
    "  - {name: main, events: [SER1]}\n"
    "  - {name: watchful, track_unknown: true, events: [SER2]}\n"
    "notifications:\n"
    f"  webhooks: [{{name: ops, url: 'http://127.0.0.1:9/x', secret: '{SECRET}'}}]\n"
    "marketplace: {base_url: 'http://127.0.0.1:9', api_token: mkt-t0ken-series}\n"
    "actions:\n"
    "  - {name: hold, listings: {SER1: [1]}, update: {price: '1.00'}, dry_run: true}\n"
)


async def samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(all_: dict, name: str, **labels: str) -> float | None:
    return all_.get((f"availability_monitor_{name}", tuple(sorted(labels.items()))))


@pytest.fixture
async def daemon(sim, tmp_path, start_daemon):
    cfg = make_config(sim.url, tmp_path / "s.db", BODY)
    server = cfg.server.model_copy(update={"admin_token": Secret(TOKEN)})
    return await start_daemon(cfg.model_copy(update={"server": server}))


async def test_counters_start_at_zero_for_what_exists(daemon):
    got = await samples(daemon.url)
    for outcome in ("ok", "partial", "failed", "skipped"):
        assert value(got, "poll_runs_total", watch_set="main", outcome=outcome) == 0
    change = {"watch_set": "main", "field": "resale_status"}
    assert value(got, "transitions_total", **change, **{"from": "TICKETS_AVAILABLE",
                 "to": "FEW_TICKETS_LEFT"}) == 0  # fmt: skip
    # UNKNOWN transitions exist only where UNKNOWN is tracked.
    to_unknown = {"field": "status", "from": "TICKETS_AVAILABLE", "to": "UNKNOWN"}
    assert value(got, "transitions_total", watch_set="watchful", **to_unknown) == 0
    assert value(got, "transitions_total", watch_set="main", **to_unknown) is None
    for api in ("inventory", "marketplace"):
        for outcome in UPSTREAM_OUTCOMES:
            assert value(got, "upstream_requests_total", api=api, outcome=outcome) == 0
    assert value(got, "upstream_requests_total", api="partner", outcome="ok") is None
    for outcome in DELIVERY_OUTCOMES:
        assert value(got, "webhook_deliveries_total", subscription="ops", outcome=outcome) == 0
    for outcome in ACTION_OUTCOMES:
        assert value(got, "actions_total", rule="hold", outcome=outcome) == 0
    for outcome in ("ok", "invalid"):
        assert value(got, "config_reloads_total", outcome=outcome) == 0


async def test_objects_made_later_get_their_series_at_once(daemon, sim):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        body = {"name": "late", "events": ["SER3"]}
        async with s.post(daemon.url + "/v1/watch-sets", json=body) as r:
            assert r.status == 201
        body = {"name": "desk", "url": "http://8.8.8.8/x"}
        async with s.post(daemon.url + "/v1/subscriptions", json=body) as r:
            assert r.status == 201
    got = await samples(daemon.url)
    assert value(got, "poll_runs_total", watch_set="late", outcome="failed") == 0
    assert value(got, "webhook_deliveries_total", subscription="desk", outcome="dead") == 0
    # A counter that existed at zero counts its first increment (rate() sees it).
    await daemon.scheduler.run_once(["main"])
    sim.world.set_status("SER1", status="FEW_TICKETS_LEFT")
    await daemon.scheduler.run_once(["main"])
    got = await samples(daemon.url)
    change = {"watch_set": "main", "field": "status", "from": "TICKETS_AVAILABLE"}
    assert value(got, "transitions_total", **change, to="FEW_TICKETS_LEFT") == 1
    assert value(got, "poll_runs_total", watch_set="main", outcome="ok") == 2

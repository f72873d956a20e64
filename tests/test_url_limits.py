"""Request size against a gateway's URL limit: the simulator refuses long request targets with
414 (8 KB by default), the daemon sizes its GET batches to fit from the start, and when a
stricter gateway refuses a request anyway it splits the batch and remembers a size that works.
Every event is still polled. Over real HTTP on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json

import aiohttp
import pytest

from monitor.simulator.app import Simulator, add_arguments, serve_from_args
from monitor.simulator.inventory import MAX_URL_BYTES, PATH
from tests.conftest import API_KEY, make_config

IDS = [f"P{i:015d}" for i in range(1000)]  # 16 characters each, as Partner-style IDs


def one_set(*ids: str) -> str:
    return (
        f"watch_sets:\n  - name: main\n    interval_seconds: 60\n    events: [{', '.join(ids)}]\n"
    )


def target(ids: list[str]) -> str:
    return f"{PATH}?apikey={API_KEY}&events={','.join(ids)}"


async def status_of(url: str, method: str = "GET", data: bytes | None = None) -> int:
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if data else {}
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, data=data, headers=headers) as r,
    ):
        return r.status


async def test_the_simulator_refuses_a_1000_id_get_by_default():
    async with Simulator(api_key=API_KEY) as sim:
        long = target(IDS)
        assert len(long) > 16_000
        assert await status_of(sim.url + long) == 414
        fits = IDS[: (MAX_URL_BYTES - len(target([]))) // 17]
        assert len(target(fits)) <= MAX_URL_BYTES
        assert await status_of(sim.url + target(fits)) == 200
        # The same thousand IDs in a form body are fine: the limit is on the URL.
        body = f"events={','.join(IDS)}".encode()
        assert await status_of(f"{sim.url}{PATH}?apikey={API_KEY}", "POST", body) == 200
        assert [r.status for r in sim.log] == [414, 200, 200]


async def test_the_url_limit_is_a_constructor_argument_and_a_flag(capsys):
    async with Simulator(api_key=API_KEY, max_url_bytes=None) as sim:
        assert await status_of(sim.url + target(IDS)) == 200
    async with Simulator(api_key=API_KEY, max_url_bytes=200) as sim:
        assert await status_of(sim.url + target(IDS[:3])) == 200
        assert await status_of(sim.url + target(IDS[:20])) == 414
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).max_url_bytes == MAX_URL_BYTES
    args = parser.parse_args(["--port", "0", "--api-key", API_KEY, "--max-url-bytes", "0"])
    server = asyncio.create_task(serve_from_args(args))
    url = ""
    for _ in range(200):
        await asyncio.sleep(0.01)
        url = capsys.readouterr().out.strip().rpartition(" ")[2]
        if url:
            break
    try:
        assert await status_of(url + target(IDS)) == 200  # 0: no limit
    finally:
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server


@pytest.mark.parametrize("method", ["GET", "POST_QUERY"])
async def test_a_default_config_polls_every_event_within_8kb_urls(
    tmp_path, start_daemon, log_stream, method
):
    async with Simulator(api_key=API_KEY, evolve=False, record_ids=True) as sim:
        cfg = make_config(sim.url, tmp_path / "s.db", one_set(*IDS), upstream=f"method: {method}\n")
        d = await start_daemon(cfg)
        report = (await d.scheduler.run_once())["main"]
        assert report.ok == 1000 and report.failed == 0
        assert all(r.status == 200 for r in sim.log)  # sized to fit from the start: no 414
        assert {r.method for r in sim.log} == {"GET" if method == "GET" else "POST"}
        assert sorted(i for r in sim.log for i in r.ids) == IDS
        assert len(sim.log) == 3  # 1000 IDs of 16 characters in 8 KB URLs
        assert "refuses requests this large" not in log_stream.getvalue()


async def test_post_sends_all_1000_ids_in_one_form_body(tmp_path, start_daemon):
    async with Simulator(api_key=API_KEY, evolve=False, record_ids=True) as sim:
        cfg = make_config(sim.url, tmp_path / "s.db", one_set(*IDS), upstream="method: POST\n")
        d = await start_daemon(cfg)
        assert (await d.scheduler.run_once())["main"].ok == 1000
        assert [(r.method, r.n_ids, r.status) for r in sim.log] == [("POST", 1000, 200)]


def _lines(stream, event: str) -> list[dict]:
    return [
        rec
        for rec in (json.loads(x) for x in stream.getvalue().splitlines() if x.startswith("{"))
        if rec.get("event") == event
    ]


async def test_a_stricter_gateway_is_learned_once_and_every_event_polled(
    tmp_path, start_daemon, log_stream
):
    async with Simulator(api_key=API_KEY, evolve=False, record_ids=True, max_url_bytes=3000) as sim:
        d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(*IDS)))
        report = (await d.scheduler.run_once())["main"]
        assert report.ok == 1000 and report.failed == 0
        assert sorted(i for r in sim.log if r.status == 200 for i in r.ids) == IDS
        refused = [r.status for r in sim.log].count(414)
        # Up to one refusal per request in flight at the old size, per halving (8 KB, 4 KB).
        assert 1 <= refused <= 2 * 4
        learned = _lines(
            log_stream, "upstream refuses requests this large; sending smaller ones from now on"
        )
        assert 1 <= len(learned) <= 2  # one line per size learned, not per refusal
        assert learned[-1]["status"] == 414 and learned[-1]["limit_bytes"] <= 3000
        assert d.dispatcher.request_limit == learned[-1]["limit_bytes"]
        metric = d.metrics.registry.get_sample_value
        assert (
            metric("availability_monitor_upstream_request_limit_bytes")
            == d.dispatcher.request_limit
        )
        assert metric("availability_monitor_upstream_request_splits_total") == refused
        sim.log.clear()
        assert (await d.scheduler.run_once())["main"].ok == 1000
        assert all(r.status == 200 for r in sim.log)  # remembered: no second 414


async def test_a_single_id_too_long_for_the_gateway_fails_alone(tmp_path, start_daemon):
    long_id = "L" * 64
    async with Simulator(api_key=API_KEY, evolve=False, record_ids=True, max_url_bytes=120) as sim:
        cfg = make_config(
            sim.url, tmp_path / "s.db", one_set("SHORT1", long_id), upstream="max_url_bytes: 1024\n"
        )
        d = await start_daemon(cfg)
        report = (await d.scheduler.run_once())["main"]
        assert report.failed >= 1
        assert len(sim.log) < 10  # halving stops at one ID: no endless loop

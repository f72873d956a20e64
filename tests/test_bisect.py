"""A 400 is bisected to find refused event IDs, but a 400 for the request itself (a parameter
the upstream does not take) quarantines nobody: both halves are refused the same way."""

from __future__ import annotations

import orjson
from aiohttp import web

from tests.conftest import make_config
from tests.hostile import Hostile

IDS = [f"Q{i:015d}" for i in range(16)]


def one_set(*ids: str) -> str:
    return (
        f"watch_sets:\n  - name: main\n    interval_seconds: 60\n    events: [{', '.join(ids)}]\n"
    )


def refused_batches(d) -> float:
    return d.metrics.registry.get_sample_value(
        "availability_monitor_upstream_refused_batches_total"
    )


async def test_a_request_level_400_quarantines_no_id(sim, tmp_path, start_daemon, log_stream):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(*IDS)))
    sim.faults.add({"kind": "error", "status": 400})  # the same answer, whatever is asked
    report = (await d.scheduler.run_once())["main"]
    assert report.failed == 16
    assert d.dispatcher.quarantined == {}
    assert len(sim.log) == 3  # the batch and its two halves, nothing deeper
    assert refused_batches(d) == 1
    assert "not an event ID" in log_stream.getvalue()
    sim.faults.clear()
    assert (await d.scheduler.run_once())["main"].ok == 16  # nobody was left out


async def test_two_bad_ids_in_different_halves_are_both_found(sim, tmp_path, start_daemon):
    bad = {IDS[2], IDS[13]}
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(*IDS)))
    sim.faults.add({"kind": "bad_ids", "ids": sorted(bad)})
    report = (await d.scheduler.run_once())["main"]
    assert (report.ok, report.failed) == (14, 2)
    assert set(d.dispatcher.quarantined) == bad
    assert refused_batches(d) == 0


async def _no_region(request: web.Request, ids: list[str]) -> web.StreamResponse:
    body = orjson.dumps(
        {"errors": [{"code": "invalid_params", "message": "region: parameter not supported"}]}
    )
    return web.Response(status=400, body=body, content_type="application/json")


async def test_an_unsupported_region_parameter_is_not_blamed_on_the_ids(tmp_path, start_daemon):
    uk = [f"U{i:015d}" for i in range(8)]
    plain = [f"P{i:015d}" for i in range(4)]
    events = ", ".join([*plain, *(f"{{id: {e}, region: UK}}" for e in uk)])
    body = f"watch_sets:\n  - name: main\n    interval_seconds: 60\n    events: [{events}]\n"
    async with Hostile() as up:
        # Every request naming a region is refused alike; the others are answered.
        up.rule = lambda request: _no_region if "region" in request.query else None
        d = await start_daemon(make_config(up.url, tmp_path / "s.db", body))
        report = (await d.scheduler.run_once())["main"]
        assert (report.ok, report.failed) == (4, 8)
        assert d.dispatcher.quarantined == {}
        assert len([s for s in up.seen if s.region == "UK"]) == 3

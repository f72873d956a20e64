"""The rate budget: daily quota planning (pure), quota pacing, fairness, status-aware intervals."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict

import pytest

from monitor.clock import ManualClock
from monitor.core.budget import DAY, SetDemand, calls_per_day, plan_quota
from monitor.poller.budget import RateBudget
from tests.conftest import make_config

A, B = "BGTAAAAAAAAAAAA1", "BGTBBBBBBBBBBBB2"


@pytest.mark.parametrize(
    ("demands", "quota", "expected"),
    [
        pytest.param([SetDemand("a", 60, 1000)], None, {"a": 60}, id="no-quota"),
        pytest.param([SetDemand("a", 60, 1000)], 5000, {"a": 60}, id="fits"),
        pytest.param([SetDemand("a", 60, 1000)], 720, {"a": 120}, id="one-set-doubled"),
        pytest.param(
            [SetDemand("hi", 60, 1000, priority=1), SetDemand("lo", 60, 1000, priority=0)],
            1440 + 720,
            {"hi": 60, "lo": 120},
            id="lowest-priority-first",
        ),
        pytest.param(
            [SetDemand("hi", 60, 1000, priority=1), SetDemand("lo", 60, 1000, priority=0)],
            720 + 1,
            {"hi": 120, "lo": DAY},
            id="low-floored-then-high-stretched",
        ),
        pytest.param(
            [SetDemand("a", 30, 2500), SetDemand("b", 60, 500)],
            (3 * 2880 + 1440) // 2,
            {"a": 60, "b": 120},
            id="same-level-same-factor",
        ),
    ],
)
def test_plan_quota(demands, quota, expected):
    plan = plan_quota(demands, 1000, quota)
    assert plan.intervals == pytest.approx(expected, rel=1e-3)
    assert plan.fits
    if quota is not None:
        assert plan.planned_per_day <= quota + 1e-6


def test_plan_quota_that_cannot_fit_says_so():
    plan = plan_quota([SetDemand("a", 60, 5000)], 1000, 2)
    assert not plan.fits and plan.intervals == {"a": DAY}
    assert plan.stretched == ("a",)


def test_calls_per_day_counts_full_batches():
    assert calls_per_day(SetDemand("a", 60, 1001), 1000) == 2 * 1440


def test_check_config_reports_the_plan(tmp_path, capsys):
    from monitor.cli import main

    ids = ", ".join(f"Q{i:05d}" for i in range(10))
    path = tmp_path / "c.yaml"
    path.write_text(
        "upstream: {api_key: k-1234, daily_quota: 2000}\n"
        "watch_sets:\n"
        f"  - {{name: vip, interval_seconds: 60, priority: 10, events: [{ids}]}}\n"
        f"  - {{name: bulk, interval_seconds: 60, events: [{ids}]}}\n"
    )
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2,880 needed, quota 2,000" in out
    assert "intervals of bulk stretched" in out
    assert "vip                  every 60 s" in out


async def test_quota_pacing_spreads_what_is_left_until_the_reset():
    budget = RateBudget(100, 1.0)
    now = time.time()
    budget.observe_quota(available=1000, reset_epoch=now + 3600, now_epoch=now)
    assert budget.spacing == pytest.approx(3600 / 990, rel=1e-3)
    budget.observe_quota(available=1_000_000, reset_epoch=now + 3600, now_epoch=now)
    assert budget.spacing == 0.0  # plenty left: the configured rate applies
    budget.observe_quota(available=1, reset_epoch=now + 30, now_epoch=now)
    assert budget.paused_for > 25  # spent: wait for the reset


async def test_the_daemon_slows_down_before_the_quota_runs_out(tmp_path, start_daemon):
    from monitor.simulator import Simulator
    from tests.conftest import API_KEY

    ids = [f"QP{i:014d}" for i in range(30)]
    body = f"watch_sets:\n  - {{name: main, events: [{', '.join(ids)}]}}\n"
    async with Simulator(evolve=False, api_key=API_KEY, quota=(12, 3600.0)) as sim:
        d = await start_daemon(
            make_config(sim.url, tmp_path / "s.db", body, upstream="batch_size: 1\n")
        )
        task = asyncio.create_task(d.scheduler.run_once())
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        statuses = [r.status for r in sim.log]
        assert 429 not in statuses  # paced, not refused
        assert len(statuses) < 12
        assert d.budget.spacing > 10  # ~3600 s over the few calls left
        assert (
            d.metrics.registry.get_sample_value("availability_monitor_upstream_quota_remaining")
            is not None
        )


async def test_a_status_aware_interval_polls_faster_after_the_change(sim, tmp_path, start_daemon):
    clock = ManualClock(wall=time.time())
    body = (
        "watch_sets:\n  - name: main\n    interval_seconds: 60\n"
        "    intervals: {FEW_TICKETS_LEFT: 2}\n"
        f"    events: [{A}, {B}]\n"
    )
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body), clock=clock)
    assert d.catalog.sets["main"].tick_seconds == 2
    await d.scheduler.run_once()  # both: first observation
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    clock.advance(5)
    await d.scheduler.run_once()
    assert len(sim.log) == 1  # nobody due yet at 60 s
    clock.advance(60)
    await d.scheduler.run_once()  # both due: A is now FEW_TICKETS_LEFT
    assert d.live.status(A) == "FEW_TICKETS_LEFT"
    sim.log.clear()
    for _ in range(3):
        clock.advance(2)
        await d.scheduler.run_once()
    polled = [set(r.ids) for r in sim.log]
    assert polled == [{A}, {A}, {A}]  # A every 2 s, B still on its 60 s


async def test_no_event_starves_when_the_budget_is_short(sim, tmp_path, start_daemon):
    """Three sets wanting 40 requests a second get 20: every event keeps its turn."""
    sets = {n: [f"{n.upper()}{i:013d}" for i in range(40)] for n in ("one", "two", "three")}
    body = "watch_sets:\n" + "".join(
        f"  - {{name: {n}, interval_seconds: 1, events: [{', '.join(ids)}]}}\n"
        for n, ids in sets.items()
    )
    cfg = make_config(
        sim.url, tmp_path / "s.db", body,
        upstream="batch_size: 3\nrate_limit: {requests: 20, per_seconds: 1}\n",
    )  # fmt: skip
    d = await start_daemon(cfg)
    d.scheduler.start()
    await asyncio.sleep(6)
    await d.scheduler.stop()
    seen: dict[str, list[float]] = defaultdict(list)
    for r in sim.log:
        for eid in r.ids:
            seen[eid].append(r.t)
    everyone = [eid for ids in sets.values() for eid in ids]
    assert set(seen) == set(everyone)
    ideal = len(everyone) / (3 * 20)  # N / (batch x R) = 2 s
    gaps = [b - a for times in seen.values() for a, b in itertools.pairwise(times)]
    assert all(len(seen[e]) >= 2 for e in everyone)
    assert max(gaps) < 2 * ideal  # generous: a starving event would wait far longer

"""Every wait the upstream asks for has a ceiling, is logged, and a long one is visible in
/readyz; a failure that repeats is summarised in the log while the metric counts every one.
Against a stand-in upstream over real HTTP (tests/hostile.py)."""

from __future__ import annotations

import json

import aiohttp

from tests.conftest import make_config
from tests.hostile import Hostile, answer, ok_with_headers

A, B = "EVTAAAAAAAAAAAA1", "EVTBBBBBBBBBBBB2"
HUGE = "99999999999999999999"


def one_set(*ids: str) -> str:
    return (
        f"watch_sets:\n  - name: main\n    interval_seconds: 60\n    events: [{', '.join(ids)}]\n"
    )


def lines(stream, event: str) -> list[dict]:
    out = []
    for line in stream.getvalue().splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("event") == event:
                out.append(rec)
    return out


async def readyz(d) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(d.url + "/readyz") as r:
        return r.status, await r.text()


def requests_total(d, outcome: str) -> float:
    return (
        d.metrics.registry.get_sample_value(
            "availability_monitor_upstream_requests_total",
            {"api": "inventory", "outcome": outcome},
        )
        or 0.0
    )


async def test_503_with_an_absurd_retry_after_is_capped_and_the_events_polled_again(
    tmp_path, start_daemon, log_stream
):
    async with Hostile() as up:
        up.then(answer(503, b"busy", {"Retry-After": HUGE}))
        cfg = make_config(
            up.url, tmp_path / "s.db", one_set(A), upstream="max_retry_after_seconds: 1\n"
        )
        d = await start_daemon(cfg)
        report = (await d.scheduler.run_once())["main"]
        assert report.ok == 1 and report.failed == 0
        assert len(up.seen) == 2
        assert 0.9 <= up.seen[1].t - up.seen[0].t < 5
        (paused,) = lines(log_stream, "upstream asked to wait: requests paused")
        assert paused["capped"] is True and paused["pause_seconds"] == 1.0
        assert paused["asked_seconds"] >= 1e19


async def test_a_long_pause_makes_the_daemon_unready_with_the_reason(tmp_path, start_daemon):
    async with Hostile() as up:
        up.then(answer(503, b"busy", {"Retry-After": HUGE}))
        cfg = make_config(up.url, tmp_path / "s.db", one_set(A), upstream="max_retries: 0\n")
        d = await start_daemon(cfg)
        report = (await d.scheduler.run_once())["main"]
        assert report.failed == 1
        # Capped at the default ceiling of a few minutes, not 10**20 seconds.
        assert 200 < d.budget.paused_for <= 300
        status, body = await readyz(d)
        assert status == 503
        assert "paused" in body and "503 with Retry-After" in body
        gauge = d.metrics.registry.get_sample_value(
            "availability_monitor_upstream_pause_remaining_seconds"
        )
        assert 200 < gauge <= 300


async def test_a_short_pause_keeps_the_daemon_ready(tmp_path, start_daemon):
    async with Hostile() as up:
        up.then(answer(429, b"slow down", {"Retry-After": "0.3"}))
        d = await start_daemon(make_config(up.url, tmp_path / "s.db", one_set(A)))
        assert (await d.scheduler.run_once())["main"].ok == 1
        assert (await readyz(d))[0] == 200


async def test_429_with_retry_after_1e20_pauses_minutes_not_a_day(tmp_path, start_daemon):
    async with Hostile() as up:
        up.then(answer(429, b"slow down", {"Retry-After": "1e20"}))
        cfg = make_config(up.url, tmp_path / "s.db", one_set(A), upstream="max_retries: 0\n")
        d = await start_daemon(cfg)
        await d.scheduler.run_once()
        assert 200 < d.budget.paused_for <= 300
        status, body = await readyz(d)
        assert status == 503 and "429" in body


async def test_429_with_retry_after_1e20_is_retried_after_the_configured_cap(
    tmp_path, start_daemon
):
    async with Hostile() as up:
        up.then(answer(429, b"slow down", {"Retry-After": "1e20"}))
        cfg = make_config(
            up.url, tmp_path / "s.db", one_set(A), upstream="max_retry_after_seconds: 1\n"
        )
        d = await start_daemon(cfg)
        assert (await d.scheduler.run_once())["main"].ok == 1
        assert 0.9 <= up.seen[1].t - up.seen[0].t < 5


async def test_spent_quota_with_a_30_digit_reset_pauses_a_quota_period_visibly(
    tmp_path, start_daemon, log_stream
):
    async with Hostile() as up:
        up.then(
            ok_with_headers(
                up,
                {"Rate-Limit": "5000", "Rate-Limit-Available": "0", "Rate-Limit-Reset": "9" * 30},
            )
        )
        d = await start_daemon(make_config(up.url, tmp_path / "s.db", one_set(A)))
        assert (await d.scheduler.run_once())["main"].ok == 1
        assert 86000 < d.budget.paused_for <= 86400
        status, body = await readyz(d)
        assert status == 503 and "quota" in body
        (line,) = lines(log_stream, "upstream quota spent: requests paused until it resets")
        assert line["capped"] is True


async def test_a_failure_that_repeats_is_summarised_and_counted_every_time(
    tmp_path, start_daemon, log_stream
):
    ids = [f"EVT{i:013d}" for i in range(40)]
    async with Hostile() as up:
        up.then(*[answer(500, b"oops") for _ in range(120)])
        cfg = make_config(
            up.url,
            tmp_path / "s.db",
            one_set(*ids),
            upstream="batch_size: 1\nmax_retries: 2\nrate_limit: {requests: 2000, per_seconds: 1}\n"
            "backoff_base_seconds: 0.001\nbackoff_max_seconds: 0.002\n",
        )
        d = await start_daemon(cfg)
        report = (await d.scheduler.run_once())["main"]
        assert report.failed == 40
        assert requests_total(d, "server_error") == 120
        assert len(lines(log_stream, "upstream request failed")) == 1
        assert len(lines(log_stream, "giving up on batch until its next poll")) == 1
        assert (await d.scheduler.run_once())["main"].ok == 40
        (back,) = lines(log_stream, "upstream requests succeed again")
        assert back["failures_not_logged"] == 119 + 39

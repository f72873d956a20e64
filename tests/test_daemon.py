"""The daemon end to end against the simulator over real HTTP: detect, batch, retry, remember."""

from __future__ import annotations

import asyncio
import io
import json
from datetime import UTC, datetime

import pytest

from monitor.clock import ManualClock
from monitor.domain import Transition
from monitor.simulator import max_in_window
from tests.conftest import API_KEY, make_config

A, B, C = "EVTAAAAAAAAAAAA1", "EVTBBBBBBBBBBBB2", "EVTCCCCCCCCCCCC3"


class Collect:
    """A notifier that keeps what it is told."""

    def __init__(self) -> None:
        self.seen: list[Transition] = []

    async def notify(self, transitions: list[Transition]) -> None:
        self.seen.extend(transitions)


def one_set(*ids: str, extra: str = "") -> str:
    events = ", ".join(ids)
    return f"watch_sets:\n  - name: main\n    interval_seconds: 60\n    events: [{events}]\n{extra}"


async def test_scripted_changes_are_detected_exactly_once(sim, tmp_path, start_daemon):
    got = Collect()
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(A, B)), notifiers=[got])
    await d.scheduler.run_once()  # baseline: no transition
    assert got.seen == []
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    for _ in range(3):
        await d.scheduler.run_once()
    sim.world.set_status(B, resale_status="TICKETS_NOT_AVAILABLE")
    sim.world.set_status(A, status="TICKETS_NOT_AVAILABLE")
    for _ in range(3):
        await d.scheduler.run_once()
    seen = [(t.sequence, t.event_id, t.field, t.previous, t.current) for t in got.seen]
    assert seen == [
        (1, A, "status", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT"),
        (2, A, "status", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE"),
        (3, B, "resale_status", "TICKETS_AVAILABLE", "TICKETS_NOT_AVAILABLE"),
    ]
    stored = await d.store.transitions_since(0, 100)
    assert [t.sequence for t in stored] == [1, 2, 3]
    assert all(t.watch_sets == ("main",) for t in stored)


async def test_batches_never_exceed_1000_ids_and_sets_share_batches(sim, tmp_path, start_daemon):
    ids_a = [f"A{i:015d}" for i in range(1500)]
    ids_b = [f"A{i:015d}" for i in range(1000, 2600)]  # 500 shared with the first set
    body = (
        "watch_sets:\n"
        f"  - {{name: one, events: [{', '.join(ids_a)}]}}\n"
        f"  - {{name: two, events: [{', '.join(ids_b)}]}}\n"
    )
    # POST: the IDs travel in the body, so a URL limit does not cut batches short.
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body, upstream="method: POST"))
    await d.scheduler.run_once()
    sizes = [r.n_ids for r in sim.log]
    assert max(sizes) <= 1000
    assert sum(sizes) == 2600  # each event once, though 500 are in both sets
    assert len(sizes) == 3  # packed full: 1000 + 1000 + 600
    assert len(d.live.observed_at) == 2600


async def test_rate_limit_held_in_every_window_with_retries(sim, tmp_path, start_daemon):
    ids = [f"R{i:015d}" for i in range(120)]
    body = (
        "watch_sets:\n"
        f"  - {{name: one, events: [{', '.join(ids[:60])}]}}\n"
        f"  - {{name: two, events: [{', '.join(ids[60:])}]}}\n"
    )
    upstream = "batch_size: 5\nmax_in_flight: 8\n"
    cfg = make_config(sim.url, tmp_path / "s.db", body, upstream=upstream)
    cfg = cfg.model_copy(
        update={
            "upstream": cfg.upstream.model_copy(
                update={
                    "rate_limit": cfg.upstream.rate_limit.model_copy(
                        update={"requests": 4, "per_seconds": 0.5}
                    )
                }
            )
        }
    )
    sim.faults.add({"kind": "error", "status": 503, "count": 4})
    d = await start_daemon(cfg)
    reports = await d.scheduler.run_once()
    assert all(r.failed == 0 for r in reports.values())
    assert len(sim.log) == 24 + 4
    assert max_in_window(list(sim.log), 0.5) <= 4


async def test_429_with_retry_after_is_waited_out(sim, tmp_path, start_daemon):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(A)))
    sim.faults.add({"kind": "rate_limit", "retry_after": 1, "count": 1})
    report = (await d.scheduler.run_once())["main"]
    assert report.ok == 1
    log = list(sim.log)
    assert [r.status for r in log] == [429, 200]
    assert log[1].t - log[0].t >= 0.95


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "error", "status": 500, "count": 2},
        {"kind": "error", "status": 503, "count": 1},
        {"kind": "timeout", "seconds": 3, "count": 1},
        {"kind": "malformed", "count": 2},
        {"kind": "truncated", "count": 1},
        {"kind": "html", "count": 1},
        {"kind": "not_array", "count": 1},
    ],
    ids=lambda f: f"{f['kind']}-{f.get('status', '')}",
)
async def test_transient_failures_are_retried_without_false_transitions(
    sim, tmp_path, start_daemon, fault
):
    got = Collect()
    cfg = make_config(sim.url, tmp_path / "s.db", one_set(A, B), upstream="timeout_seconds: 0.4\n")
    d = await start_daemon(cfg, notifiers=[got])
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    sim.faults.add(fault)
    report = (await d.scheduler.run_once())["main"]
    assert report.ok == 2 and report.failed == 0
    assert [(t.event_id, t.current) for t in got.seen] == [(A, "FEW_TICKETS_LEFT")]
    assert len(sim.log) == 1 + fault["count"] + 1


@pytest.mark.parametrize("kind", ["malformed", "truncated", "html", "not_array"])
async def test_persistently_malformed_answers_give_no_observation(
    sim, tmp_path, start_daemon, kind
):
    got = Collect()
    cfg = make_config(sim.url, tmp_path / "s.db", one_set(A), upstream="max_retries: 2\n")
    d = await start_daemon(cfg, notifiers=[got])
    await d.scheduler.run_once()
    before = d.live.observed_at[A]
    sim.world.set_status(A, status="TICKETS_NOT_AVAILABLE")
    sim.faults.add({"kind": kind})
    report = (await d.scheduler.run_once())["main"]
    assert report.failed == 1
    assert got.seen == []
    assert d.live.observed_at[A] == before
    assert d.live.status(A) == "TICKETS_AVAILABLE"


async def test_one_poll_flap_with_confirm_after_2_is_silent(sim, tmp_path, start_daemon):
    got = Collect()
    body = one_set(A, extra="    confirm_after: 2\n")
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body), notifiers=[got])
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    sim.world.set_status(A, status="TICKETS_AVAILABLE")
    await d.scheduler.run_once()
    await d.scheduler.run_once()
    assert got.seen == []
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    assert got.seen == []
    await d.scheduler.run_once()
    assert [(t.previous, t.current) for t in got.seen] == [
        ("TICKETS_AVAILABLE", "FEW_TICKETS_LEFT")
    ]


async def test_unknown_is_no_data_unless_tracked(sim, tmp_path, start_daemon):
    got = Collect()
    body = (
        "watch_sets:\n"
        f"  - {{name: plain, events: [{A}]}}\n"
        f"  - {{name: tracked, track_unknown: true, events: [{B}]}}\n"
    )
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body), notifiers=[got])
    await d.scheduler.run_once()
    sim.world.set_status(A, status="UNKNOWN")
    sim.world.set_status(B, status="UNKNOWN")
    await d.scheduler.run_once()
    sim.world.set_status(A, status="TICKETS_AVAILABLE")
    await d.scheduler.run_once()
    assert [(t.event_id, t.current, t.watch_sets) for t in got.seen] == [
        (B, "UNKNOWN", ("tracked",))
    ]


async def test_events_in_their_maintenance_window_are_never_requested(sim, tmp_path, start_daemon):
    # 07:30 UTC on 2026-11-25 is 02:30 in New York (EST): inside 02:00-03:00.
    clock = ManualClock()
    clock.set_wall(datetime(2026, 11, 25, 7, 30, tzinfo=UTC))
    body = (
        "venues:\n"
        "  - {id: '1', time_zone: America/New_York}\n"
        "  - {id: '2', time_zone: Europe/Berlin}\n"
        "watch_sets:\n"
        "  - name: main\n"
        f"    events: [{{id: {A}, venue: '1'}}, {{id: {B}, venue: '2'}}, "
        f"{{id: {C}, time_zone: America/Toronto}}]\n"
    )
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body), clock=clock)
    report = (await d.scheduler.run_once())["main"]
    assert (report.ok, report.skipped) == (1, 2)
    requested = {eid for r in sim.log for eid in r.ids}
    assert requested == {B}
    assert (
        d.metrics.registry.get_sample_value(
            "availability_monitor_events_in_maintenance", {"watch_set": "main"}
        )
        == 2
    )
    clock.set_wall(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))  # 03:00 in New York: over
    await d.scheduler.run_once()
    assert {eid for r in sim.log for eid in r.ids} == {A, B, C}


async def test_restart_repeats_nothing_and_continues_the_sequence(sim, tmp_path, start_daemon):
    path = tmp_path / "state.db"
    got1 = Collect()
    d1 = await start_daemon(make_config(sim.url, path, one_set(A, B)), notifiers=[got1])
    await d1.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d1.scheduler.run_once()
    assert [t.sequence for t in got1.seen] == [1]
    await d1.stop()

    got2 = Collect()
    d2 = await start_daemon(make_config(sim.url, path, one_set(A, B)), notifiers=[got2])
    assert d2.live.status(A) == "FEW_TICKETS_LEFT"
    await d2.scheduler.run_once()
    assert got2.seen == []  # nothing repeated
    sim.world.set_status(B, status="TICKETS_NOT_AVAILABLE")
    await d2.scheduler.run_once()
    assert [(t.sequence, t.event_id) for t in got2.seen] == [(2, B)]
    assert [t.sequence for t in await d2.store.transitions_since(0, 10)] == [1, 2]


async def test_bad_request_is_bisected_and_the_offender_quarantined(sim, tmp_path, start_daemon):
    ids = [f"Q{i:015d}" for i in range(16)]
    bad = ids[11]
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(*ids)))
    sim.faults.add({"kind": "bad_ids", "ids": [bad]})
    report = (await d.scheduler.run_once())["main"]
    assert (report.ok, report.failed) == (15, 1)
    assert bad in d.dispatcher.quarantined
    assert set(d.live.observed_at) == set(ids) - {bad}
    sim.log.clear()
    report = (await d.scheduler.run_once())["main"]
    assert (report.ok, report.skipped) == (15, 1)
    assert len(sim.log) == 1 and bad not in sim.log[0].ids


async def test_odd_answers_missing_extra_lowercase_and_unknown_status(sim, tmp_path, start_daemon):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(A, B, C)))
    sim.faults.add({"kind": "extra_ids", "count": 1})
    sim.faults.add({"kind": "lowercase_key", "count": 1})
    await d.scheduler.run_once()
    assert set(d.live.states) == {A, B, C}  # extra IDs ignored, eventid accepted
    sim.faults.add({"kind": "unknown_status", "value": "SOMETHING_NEW", "count": 1})
    await d.scheduler.run_once()
    assert (
        d.metrics.registry.get_sample_value("availability_monitor_upstream_unknown_status_total")
        >= 3
    )
    assert d.live.status(A) == "TICKETS_AVAILABLE"  # UNKNOWN is no data


async def test_missing_ids_produce_no_observation(sim, tmp_path, start_daemon):
    ids = [f"M{i:015d}" for i in range(10)]
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(*ids)))
    sim.faults.add({"kind": "missing_ids", "fraction": 0.5, "count": 1})
    await d.scheduler.run_once()
    assert 0 < len(d.live.observed_at) < 10


async def test_regions_are_never_mixed_in_a_batch(sim, tmp_path, start_daemon):
    body = (
        "watch_sets:\n  - name: main\n    events:\n"
        f"      - {A}\n      - {{id: {B}, region: UK}}\n      - {{id: {C}, region: uk}}\n"
    )
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body))
    await d.scheduler.run_once()
    by_region = {r.region: set(r.ids) for r in sim.log}
    assert by_region == {None: {A}, "UK": {B, C}}


async def test_post_method_and_full_batches_of_16_char_ids(sim, tmp_path, start_daemon):
    ids = [f"P{i:015d}" for i in range(1000)]
    for method in ("GET", "POST"):
        sim.log.clear()
        cfg = make_config(
            sim.url, tmp_path / f"{method}.db", one_set(*ids), upstream=f"method: {method}\n"
        )
        d = await start_daemon(cfg)
        await d.scheduler.run_once()
        if method == "POST":
            assert [(r.method, r.n_ids, r.status) for r in sim.log] == [(method, 1000, 200)]
        else:  # 8 KB URLs (the simulator's gateway limit) hold about 480 such IDs
            assert [(r.method, r.status) for r in sim.log] == [(method, 200)] * 3
            assert sum(r.n_ids for r in sim.log) == 1000


async def test_refused_key_marks_not_ready_and_is_not_hammered(sim, tmp_path, start_daemon):
    cfg = make_config(sim.url, tmp_path / "s.db", one_set(A))
    cfg = cfg.model_copy(
        update={
            "upstream": cfg.upstream.model_copy(
                update={"api_key": type(cfg.upstream.api_key)("wrong-key-123")}
            )
        }
    )
    d = await start_daemon(cfg)
    report = (await d.scheduler.run_once())["main"]
    assert report.failed == 1
    assert d.health.readiness()[0] is False
    assert "refuses" in d.health.readiness()[1]
    assert len(sim.log) == 1
    assert d.budget.paused_for > 30  # backing off, not retrying in a loop


async def test_the_key_never_shows_in_logs_when_requests_fail(
    sim, tmp_path, start_daemon, log_stream
):
    cfg = make_config(
        sim.url, tmp_path / "s.db", one_set(A), upstream="timeout_seconds: 0.3\nmax_retries: 6\n"
    )
    d = await start_daemon(cfg)
    for fault in (
        {"kind": "error", "status": 500, "count": 1},
        {"kind": "timeout", "seconds": 2, "count": 1},
        {"kind": "html", "count": 1},
        {"kind": "bad_ids", "ids": [A], "count": 1},
    ):
        sim.faults.add(fault)
    await d.scheduler.run_once()
    # A closed port: connection errors carry the URL in aiohttp's messages.
    cfg2 = make_config(
        "http://127.0.0.1:9", tmp_path / "t.db", one_set(B), upstream="max_retries: 1\n"
    )
    d2 = await start_daemon(cfg2)
    await d2.scheduler.run_once()
    text = log_stream.getvalue()
    assert "upstream request failed" in text
    assert "connection_error" in text
    assert API_KEY not in text
    metrics = await _get(d.url + "/metrics")
    assert API_KEY not in metrics


async def _get(url: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return await r.text()


def _json_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]


async def test_one_log_line_per_transition(sim, tmp_path, start_daemon, log_stream):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(A)))
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    lines = [x for x in _json_lines(log_stream) if x.get("event") == "transition"]
    assert len(lines) == 1
    assert lines[0]["event_id"] == A and lines[0]["current"] == "FEW_TICKETS_LEFT"


@pytest.mark.parametrize(("level", "written"), [("info", True), ("warning", False)])
def test_is_enabled_follows_the_configured_level(level, written):
    import logging

    from monitor.logs import configure_logging, get_logger, is_enabled

    configure_logging("json", level, io.StringIO())
    log = get_logger("monitor.poller.processor")
    assert is_enabled(log, logging.INFO) is written
    assert is_enabled(log, logging.ERROR) is True


def test_is_enabled_without_a_level_says_yes():
    import logging

    from monitor.logs import is_enabled

    assert is_enabled(object(), logging.DEBUG) is True


async def test_spike_arrest_429_waits_seconds_not_until_the_quota_resets(tmp_path, start_daemon):
    from monitor.simulator.app import Simulator

    async with Simulator(evolve=False, api_key=API_KEY, quota=(5000, 86400.0)) as sim:
        d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(A)))
        sim.faults.add({"kind": "rate_limit", "retry_after": 0.3, "count": 1})
        report = (await d.scheduler.run_once())["main"]
        assert report.ok == 1
        assert d.budget.paused_for < 1


async def test_interval_change_on_reload_keeps_the_set_polling(sim, tmp_path, start_daemon):
    import yaml

    path = tmp_path / "monitor.yaml"
    cfg = make_config(sim.url, tmp_path / "s.db", one_set(A))
    raw = cfg.model_dump(mode="json", exclude_none=True)
    raw["upstream"]["api_key"] = API_KEY
    path.write_text(yaml.safe_dump(raw))
    from prometheus_client import CollectorRegistry

    from monitor.app import Daemon

    d = Daemon(cfg, config_path=str(path), registry=CollectorRegistry())
    await d.start(schedule=True)
    try:
        raw["watch_sets"][0]["interval_seconds"] = 1
        path.write_text(yaml.safe_dump(raw))
        assert d.reload()
        job = d.scheduler._scheduler.get_job("poll:main")
        assert job.next_run_time is not None
        sim.log.clear()
        await asyncio.sleep(2.5)
        assert len(sim.log) >= 2
    finally:
        await d.stop()


async def test_an_event_whose_window_opens_during_a_pause_is_not_requested(
    sim, tmp_path, start_daemon
):
    clock = ManualClock()
    clock.set_wall(datetime(2026, 11, 25, 6, 59, 58, tzinfo=UTC))  # 01:59:58 in New York
    body = one_set(f"{{id: {A}, time_zone: America/New_York}}")
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body), clock=clock)
    sim.faults.add({"kind": "rate_limit", "retry_after": 0.5, "count": 1})

    async def midnight_passes() -> None:
        await asyncio.sleep(0.2)
        clock.set_wall(datetime(2026, 11, 25, 7, 0, 1, tzinfo=UTC))  # 02:00:01: window open

    mover = asyncio.create_task(midnight_passes())
    report = (await d.scheduler.run_once())["main"]
    await mover
    assert report.skipped == 1 and report.ok == 0
    assert [r.status for r in sim.log] == [429]


async def test_a_batch_refused_as_a_whole_is_not_bisected_to_the_ground(
    sim, tmp_path, start_daemon
):
    ids = [f"W{i:015d}" for i in range(64)]
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", one_set(*ids)))
    sim.faults.add({"kind": "error", "status": 400})
    report = (await d.scheduler.run_once())["main"]
    assert report.failed == 64
    assert len(sim.log) <= 4 * 6 + 2 + 1
    assert len(d.dispatcher.quarantined) <= 4


async def test_not_ready_until_the_upstream_has_accepted_the_key(tmp_path, start_daemon):
    cfg = make_config(
        "http://127.0.0.1:9", tmp_path / "s.db", one_set(A), upstream="max_retries: 0\n"
    )
    d = await start_daemon(cfg)
    await d.scheduler.run_once()
    assert d.health.readiness()[0] is False
    assert d.metrics.registry.get_sample_value("availability_monitor_ready") == 0


async def test_observation_times_survive_a_restart(sim, tmp_path, start_daemon):
    clock = ManualClock()
    path = tmp_path / "s.db"
    d1 = await start_daemon(make_config(sim.url, path, one_set(A)), clock=clock)
    await d1.scheduler.run_once()
    clock.advance(3600)
    await d1.scheduler.run_once()  # nothing changed: only a checkpoint writes this time
    latest = d1.live.observed_at[A]
    await d1.stop()
    d2 = await start_daemon(make_config(sim.url, path, one_set(A)), clock=clock)
    assert d2.live.observed_at[A] == latest


async def test_two_daemons_cannot_share_a_state_file(tmp_path):
    from monitor.store.sqlite import SQLiteStore

    first = SQLiteStore(tmp_path / "s.db")
    await first.open()
    second = SQLiteStore(tmp_path / "s.db")
    with pytest.raises(RuntimeError, match="in use by another"):
        await second.open()
    await second.close()
    await first.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b'[{"eventId": "A", "status": ["x"]}]', "UNKNOWN"),
        (b'[{"eventId": "A", "status": 7}]', "UNKNOWN"),
        (b'[{"eventid": "A", "status": "FEW_TICKETS_LEFT"}]', "FEW_TICKETS_LEFT"),
    ],
)
def test_odd_status_values_count_as_unknown(body, status):
    from monitor.upstream.inventory import parse_answer

    answer = parse_answer(body, ["A"])
    assert answer.observations[0].status == status


def _row(eid, status="TICKETS_AVAILABLE", resale="FEW_TICKETS_LEFT", key="eventId"):
    return {key: eid, "status": status, "resaleStatus": resale}


@pytest.mark.parametrize(
    ("rows", "requested", "expected", "unknown", "ignored", "missing"),
    [
        pytest.param(
            [_row("A"), _row("B", "TICKETS_NOT_AVAILABLE", "UNKNOWN")],
            ["A", "B"],
            [("A", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT"),
             ("B", "TICKETS_NOT_AVAILABLE", "UNKNOWN")],
            0, 0, [],
            id="in-order",
        ),
        pytest.param(
            [_row("B"), _row("A")],
            ["A", "B"],
            [("B", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT"),
             ("A", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT")],
            0, 0, [],
            id="reordered",
        ),
        pytest.param(
            [_row("A", key="eventid"), _row("B")],
            ["A", "B"],
            [("A", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT"),
             ("B", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT")],
            0, 0, [],
            id="lower-case-key",
        ),
        pytest.param(
            [{"eventId": "A", "status": "SOLD_OUT", "resaleStatus": "TICKETS_AVAILABLE"},
             {"eventId": "B", "status": "FEW_TICKETS_LEFT"}],
            ["A", "B"],
            [("A", "UNKNOWN", "TICKETS_AVAILABLE"), ("B", "FEW_TICKETS_LEFT", None)],
            1, 0, [],
            id="odd-status-and-missing-field",
        ),
        pytest.param(
            [{"eventid": "A", "status": "FEW_TICKETS_LEFT"},
             {"eventid": "B", "status": "UNKNOWN"}],
            ["A", "B"],
            [("A", "FEW_TICKETS_LEFT", None), ("B", "UNKNOWN", None)],
            0, 0, [],
            id="as-in-the-seed-lower-case-key-no-resale",
        ),
        pytest.param(
            [_row("A"), _row("A")],
            ["A", "B"],
            [("A", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT")],
            0, 1, ["B"],
            id="duplicate-instead-of-one",
        ),
        pytest.param(
            [_row("A"), _row("Z")],
            ["A", "B"],
            [("A", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT")],
            0, 1, ["B"],
            id="stranger-instead-of-one",
        ),
        pytest.param(
            [_row("A"), {"eventId": "B", "status": {"x": 1}, "resaleStatus": None}],
            ["A", "B"],
            [("A", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT"), ("B", "UNKNOWN", None)],
            1, 0, [],
            id="unhashable-status",
        ),
    ],
)  # fmt: skip
def test_parse_answer_columns(rows, requested, expected, unknown, ignored, missing):
    """Answers the fast path takes and those it must leave to the careful one decode alike."""
    import orjson

    from monitor.upstream.inventory import parse_answer

    answer = parse_answer(orjson.dumps(rows), requested)
    assert [tuple(o) for o in answer.observations] == expected
    assert (answer.unknown_statuses, answer.ignored, answer.missing) == (unknown, ignored, missing)


@pytest.mark.parametrize("reorder", [False, True], ids=["fast-path", "careful-path"])
def test_parse_answer_keeps_the_requests_id_objects(reorder):
    """Decoded IDs are fresh copies; the daemon keeps the request's (one string per event)."""
    import orjson

    from monitor.upstream.inventory import parse_answer

    requested = ["".join(["EVT", str(n)]) for n in range(100, 105)]
    rows = [_row(e) for e in (reversed(requested) if reorder else requested)]
    answer = parse_answer(orjson.dumps(rows), requested)
    assert sorted(answer.ids) == requested
    assert all(any(i is r for r in requested) for i in answer.ids)


def test_parse_answer_refuses_non_objects():
    from monitor.upstream.errors import MalformedAnswer
    from monitor.upstream.inventory import parse_answer

    with pytest.raises(MalformedAnswer, match="other than objects"):
        parse_answer(b'["A", "B"]', ["A", "B"])


async def test_oldest_observation_age_per_set(sim, tmp_path, start_daemon):
    """The gauge is read when /metrics is: the age of each set's least recently observed event,
    leaving out events that may not be polled now (in their maintenance window)."""
    clock = ManualClock()
    clock.set_wall(datetime(2026, 11, 25, 6, 59, tzinfo=UTC))  # 01:59 in New York
    body = (
        "watch_sets:\n"
        f"  - {{name: fast, events: [{A}]}}\n"
        f"  - {{name: slow, events: [{B}, {{id: {C}, time_zone: America/New_York}}]}}\n"
    )
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body), clock=clock)

    def age(name: str) -> float | None:
        return d.metrics.registry.get_sample_value(
            "availability_monitor_oldest_observation_age_seconds", {"watch_set": name}
        )

    assert (age("fast"), age("slow")) == (0.0, 0.0)  # nothing observed yet
    await d.scheduler.run_once()
    clock.advance(45)
    assert (age("fast"), age("slow")) == (45.0, 45.0)
    clock.advance(75)  # 02:01 in New York: C is in its window and is not polled
    await d.scheduler.run_once(["slow"])
    assert {eid for r in sim.log[-1:] for eid in r.ids} == {B}
    assert (age("fast"), age("slow")) == (120.0, 0.0)
    clock.advance(10)
    assert (age("fast"), age("slow")) == (130.0, 10.0)

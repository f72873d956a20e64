"""The benchmark scenarios: each runs the daemon and the baseline in their own processes against
simulators in theirs, and returns a Section of the report."""

from __future__ import annotations

import itertools
import math
import resource
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.actors import (
    Baseline,
    Daemon,
    Sim,
    event_ids,
    fill_baseline_state,
    fill_daemon_state,
    histogram,
    histogram_quantile,
    start_baseline,
    start_daemon,
    start_receiver,
    start_sim,
    wait_observed,
    write_ids_csv,
)
from bench.measure import LoadMeter, percentile, poll_gaps, sliding_windows
from bench.proc import BenchError, Group, answers, peak_rss_bytes, wait_for

UNTHROTTLED = (100_000, 1.0)
"""A rate limit no run comes near: the upstream is never what holds a poller back."""


@dataclass(frozen=True)
class Sizes:
    """How big and how long each scenario is; `QUICK` is the smoke-test version."""

    throughput_events: int = 100_000
    throughput_window: float = 8.0
    throughput_windows: int = 3
    rate_events: int = 50_000
    rate: tuple[int, float] = (5, 1.0)
    rate_window: float = 40.0
    fresh_events: int = 20_000
    fresh_rate: tuple[int, float] = (10, 1.0)
    fresh_window: float = 20.0
    memory_sizes: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    tiny_events: int = 10
    round_timeout: float = 150.0
    start_timeout: float = 300.0
    latency_events: int = 20_000
    latency_change_seconds: float = 21.0
    latency_rate: tuple[int, float] = (25, 1.0)
    burst_latency_events: int = 2_000
    burst_change_seconds: float = 2.0
    latency_window: float = 10.0
    light_latency_events: int = 200
    hotpath_events: int = 100_000
    warmup: float = 2.0


QUICK = Sizes(
    throughput_events=20_000,
    throughput_window=5.0,
    throughput_windows=1,
    rate_events=20_000,
    rate_window=8.0,
    fresh_events=10_000,
    fresh_rate=(5, 1.0),
    fresh_window=8.0,
    memory_sizes=(1_000, 10_000, 50_000),
    round_timeout=60.0,
    latency_events=10_000,
    burst_latency_events=1_000,
    latency_window=6.0,
    light_latency_events=100,
    hotpath_events=20_000,
    warmup=1.5,
)


@dataclass
class Check:
    """One target of the issue, and how the daemon did against it."""

    target: str
    measured: str
    passed: bool | None  # None: not measured
    margin: str


@dataclass
class Section:
    """One scenario's part of the report."""

    key: str
    title: str
    how: str
    rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    other_cores: float = math.nan  # CPU other programs on the machine used meanwhile, in cores
    error: str | None = None


@dataclass
class Context:
    work: Path
    sizes: Sizes
    _files: dict[int, Path] = field(default_factory=dict)

    def ids_file(self, n: int) -> Path:
        """The CSV events file for the first n IDs (written once)."""
        if n not in self._files:
            self._files[n] = write_ids_csv(self.work / f"events-{n}.csv", n)
        return self._files[n]


# -- formatting -----------------------------------------------------------------------------------


def num(value: float, digits: int = 0) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds * 1000:,.1f} ms"


def secs(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    return f"{seconds:,.2f} s"


def mib(n: float) -> str:
    return "n/a" if math.isnan(n) else f"{n / 2**20:,.1f} MiB"


def ratio(daemon: float, baseline: float, higher_is_better: bool = True) -> str:
    if not baseline or math.isnan(daemon) or math.isnan(baseline):
        return "n/a"
    r = daemon / baseline
    better = r >= 1 if higher_is_better else r <= 1
    return f"{r:.2f}x ({'better' if better else 'worse'})"


def at_least(target: float, value: float, target_text: str, show: Callable[[float], str]) -> Check:
    """A "value ≥ target" check, with by how much it passed or missed."""
    if math.isnan(value):
        return Check(target_text, "n/a", None, "not measured")
    if value >= target:
        return Check(target_text, show(value), True, f"{value / target:.2f}x the target")
    short = f"missed by {1 - value / target:.1%}"
    if value > 0 and target / value >= 1.1:
        short += f" ({target / value:.1f}x short)"
    return Check(target_text, show(value), False, short)


def at_most(target: float, value: float, target_text: str, show: Callable[[float], str]) -> Check:
    """A "value ≤ target" check."""
    if math.isnan(value):
        return Check(target_text, "n/a", None, "not measured")
    if value <= target:
        margin = f"{value / target:.0%} of the limit" if target else "none"
        return Check(target_text, show(value), True, margin)
    over = f"missed: {value / target:.3g}x the limit" if target else "missed"
    return Check(target_text, show(value), False, over)


def _sleep(seconds: float, procs: Sequence[Daemon | Baseline | Sim]) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        for p in procs:
            p.proc.check()
        time.sleep(min(0.5, left))


def _await_round(base: Baseline, rounds: int, timeout: float) -> float:
    return wait_for(
        f"baseline round {rounds}",
        lambda: len(base.events("round")) >= rounds,
        timeout,
        [base.proc],
    )


# -- 1. throughput ------------------------------------------------------------------------------


def _median_window(windows: list[dict[str, float]]) -> dict[str, float]:
    """The window with the median statuses per CPU-second, and the range over all of them."""
    rates = [w["statuses"] / w["cpu"] if w["cpu"] else math.nan for w in windows]
    order = sorted(range(len(windows)), key=rates.__getitem__)
    out = dict(windows[order[len(order) // 2]])
    out["low"], out["high"] = rates[order[0]], rates[order[-1]]
    return out


def throughput(ctx: Context) -> Section:
    sz = ctx.sizes
    n = sz.throughput_events
    ids = ctx.ids_file(n)
    sec = Section(
        "throughput",
        "Throughput: event statuses per second of CPU, unthrottled upstream",
        f"{n:,} events in one watch set polled every 1 s, 1000 IDs per request, rate limits far "
        "out of reach on both sides: both pollers keep up, so each judges about "
        f"{n:,} statuses a second and the figure is what that costs. "
        "Simulator with `--change-seconds 3600` (each event's status redrawn about hourly, so a "
        "few transitions happen, as in real life). After the first full round (the baselines) "
        f"and {sz.warmup:g} s more, statuses judged over {sz.throughput_window:g} s are divided "
        "by the process's CPU time (utime + stime, all threads, from /proc/PID/stat) over the "
        f"same window; {sz.throughput_windows} windows in a row, each poller's median window "
        "reported (a window costs about a CPU-second, and this machine's figures drift by 10% "
        "from one window to the next). Daemon's count: "
        "`availability_monitor_observations_total`; baseline's: its "
        "own counter (SIGUSR1). In every scenario the events file has IDs only (no venue or time "
        "zone), so no event is ever left out for maintenance and runs compare at any hour.",
    )
    results: dict[str, dict[str, float]] = {}
    with Group() as g:
        sim = start_sim(g, ctx.work, "tp-sim-daemon", change_seconds=3600)
        d = start_daemon(
            g, ctx.work, "tp-daemon", sim=sim, events_file=ids, rate=UNTHROTTLED, interval=1
        )
        wait_observed(d, n, sz.round_timeout)
        _sleep(sz.warmup, [d, sim])
        req = "availability_monitor_upstream_requests_total"
        windows = []
        for _ in range(sz.throughput_windows):
            c0, o0, w0, s0 = d.proc.cpu(), d.observations(), time.monotonic(), sim.proc.cpu()
            m0 = d.metrics()
            _sleep(sz.throughput_window, [d, sim])
            c1, o1, w1, s1 = d.proc.cpu(), d.observations(), time.monotonic(), sim.proc.cpu()
            m1 = d.metrics()
            windows.append(
                {
                    "statuses": o1 - o0,
                    "cpu": c1 - c0,
                    "wall": w1 - w0,
                    "requests": m1.get(req, 0) - m0.get(req, 0),
                    "sim_cpu": s1 - s0,
                }
            )
        results["daemon"] = _median_window(windows)
        results["daemon"]["rss"] = d.proc.rss()
    with Group() as g:
        sim = start_sim(g, ctx.work, "tp-sim-baseline", change_seconds=3600)
        b = start_baseline(
            g, ctx.work, "tp-baseline", sim=sim, events_file=ids, rate=UNTHROTTLED, interval=1
        )
        _await_round(b, 1, sz.round_timeout)
        _sleep(sz.warmup, [b, sim])
        windows = []
        for _ in range(sz.throughput_windows):
            c0, w0, s0 = b.proc.cpu(), time.monotonic(), sim.proc.cpu()
            st0 = b.stats()
            _sleep(sz.throughput_window, [b, sim])
            c1, w1, s1 = b.proc.cpu(), time.monotonic(), sim.proc.cpu()
            st1 = b.stats()
            windows.append(
                {
                    "statuses": st1["observations"] - st0["observations"],
                    "cpu": c1 - c0,
                    "wall": w1 - w0,
                    "requests": st1["requests"] - st0["requests"],
                    "sim_cpu": s1 - s0,
                }
            )
        results["baseline"] = _median_window(windows)
        results["baseline"]["rss"] = b.proc.rss()
    per_cpu = {k: v["statuses"] / v["cpu"] if v["cpu"] else math.nan for k, v in results.items()}
    dd, bb = results["daemon"], results["baseline"]
    sec.rows = [
        (
            "statuses per CPU-second",
            num(per_cpu["daemon"]),
            num(per_cpu["baseline"]),
            ratio(per_cpu["daemon"], per_cpu["baseline"]),
        ),
        (
            "statuses per second (wall)",
            num(dd["statuses"] / dd["wall"]),
            num(bb["statuses"] / bb["wall"]),
            ratio(dd["statuses"] / dd["wall"], bb["statuses"] / bb["wall"]),
        ),
        (
            "statuses per CPU-second, every window (lowest - highest)",
            f"{num(dd['low'])} - {num(dd['high'])}",
            f"{num(bb['low'])} - {num(bb['high'])}",
            "",
        ),
        ("CPU used (cores)", num(dd["cpu"] / dd["wall"], 2), num(bb["cpu"] / bb["wall"], 2), ""),
        (
            "CPU per 1000-ID request",
            ms(dd["cpu"] / dd["requests"] if dd["requests"] else math.nan),
            ms(bb["cpu"] / bb["requests"] if bb["requests"] else math.nan),
            "",
        ),
        (
            "simulator CPU (cores)",
            num(dd["sim_cpu"] / dd["wall"], 2),
            num(bb["sim_cpu"] / bb["wall"], 2),
            "",
        ),
    ]
    sec.notes.append(
        f"The daemon spent {dd['cpu'] / dd['requests'] * 1000 if dd['requests'] else math.nan:.1f} "
        "ms of CPU per 1000-ID request; the section 'Where the time and memory go' splits the "
        "per-status cost into its parts."
    )
    sec.checks = [
        at_least(500_000, per_cpu["daemon"], "≥ 500,000 statuses per CPU-second", num),
        at_least(
            3.0,
            per_cpu["daemon"] / per_cpu["baseline"] if per_cpu["baseline"] else math.nan,
            "≥ 3x the baseline",
            lambda r: f"{r:.2f}x",
        ),
    ]
    return sec


# -- 2. rate ------------------------------------------------------------------------------------


def _window_figures(
    log: list[dict[str, Any]], t0: float, t1: float, limit: tuple[int, float]
) -> dict[str, float]:
    inside = [r for r in log if t0 <= float(r["t"]) < t1]
    ok = sum(1 for r in inside if r["status"] == 200)
    budget = limit[0] * (t1 - t0) / limit[1]
    times = sorted(float(r["t"]) for r in inside)
    windows = sliding_windows(times, limit[1], limit[0])
    spacing = limit[1] / limit[0]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    long_gaps = [g for g in gaps if g > 2 * spacing]
    return {
        "longest_pause": max(gaps, default=math.nan),
        "pauses": len(long_gaps),
        "lost": sum(g - spacing for g in long_gaps) / (t1 - t0),
        "sent": len(inside),
        "ok": ok,
        "429": sum(1 for r in inside if r["status"] == 429),
        "other": len(inside) - ok - sum(1 for r in inside if r["status"] == 429),
        "utilization": ok / budget,
        "sent_utilization": len(inside) / budget,
        "worst": windows.worst,
        "over": windows.over,
    }


def rate(ctx: Context) -> Section:
    sz = ctx.sizes
    r, per = sz.rate
    n = sz.rate_events
    ids = ctx.ids_file(n)
    sec = Section(
        "rate",
        "Rate: use of the configured limit when there is more work than budget",
        f"Limit {r} requests per {per:g} s on both sides: in the poller's config and enforced "
        f"by the simulator (`--rate-limit {r}/{per:g}`, answering 429 like Ticketmaster's spike "
        f"arrest). {n:,} events polled every 1 s need {n // 1000} requests a second, far more "
        f"than the budget. After {sz.warmup:g} s, the simulator's request log is cleared and read "
        f"back {sz.rate_window:g} s later. Utilization = answered (200) requests / "
        f"({r} x window / {per:g} s). Worst window = most requests (answered or not) arriving in "
        f"any {per:g} s sliding window, from the log's arrival times; windows over the limit = "
        "windows starting at a request that hold more than the limit. Daemon and baseline run "
        "at the same time, each against its own simulator (CPU is not measured here; both are "
        "lightly loaded).",
    )
    with Group() as g:
        sims = {
            who: start_sim(g, ctx.work, f"rate-sim-{who}", rate_limit=(r, per))
            for who in ("daemon", "baseline")
        }
        d = start_daemon(
            g,
            ctx.work,
            "rate-daemon",
            sim=sims["daemon"],
            events_file=ids,
            rate=(r, per),
            interval=1,
        )
        b = start_baseline(
            g,
            ctx.work,
            "rate-baseline",
            sim=sims["baseline"],
            events_file=ids,
            rate=(r, per),
            interval=1,
        )
        _sleep(sz.warmup, [d, b])
        t0 = time.monotonic()
        for sim in sims.values():
            sim.clear_log()
        _sleep(sz.rate_window, [d, b])
        t1 = time.monotonic()
        figures = {who: _window_figures(sim.log(), t0, t1, (r, per)) for who, sim in sims.items()}
    dd, bb = figures["daemon"], figures["baseline"]
    sec.rows = [
        (
            "utilization (answered / budget)",
            f"{dd['utilization']:.2%}",
            f"{bb['utilization']:.2%}",
            ratio(dd["utilization"], bb["utilization"]),
        ),
        (
            "requests sent / budget",
            f"{dd['sent_utilization']:.1%}",
            f"{bb['sent_utilization']:.1%}",
            "",
        ),
        (
            "requests sent (answered 200 / 429 / other)",
            f"{dd['sent']:.0f} ({dd['ok']:.0f} / {dd['429']:.0f} / {dd['other']:.0f})",
            f"{bb['sent']:.0f} ({bb['ok']:.0f} / {bb['429']:.0f} / {bb['other']:.0f})",
            "",
        ),
        (f"worst {per:g} s window (limit {r})", f"{dd['worst']:.0f}", f"{bb['worst']:.0f}", ""),
        ("windows over the limit", f"{dd['over']:.0f}", f"{bb['over']:.0f}", ""),
        (
            "longest pause between two requests",
            secs(dd["longest_pause"]),
            secs(bb["longest_pause"]),
            "",
        ),
        (
            f"pauses > {2 * per / r:g} s (twice the spacing) / share of the window lost in them",
            f"{dd['pauses']:.0f} / {dd['lost']:.1%}",
            f"{bb['pauses']:.0f} / {bb['lost']:.1%}",
            "",
        ),
    ]
    sec.checks = [
        at_least(0.98, dd["utilization"], "utilization ≥ 98%", lambda v: f"{v:.2%}"),
        at_most(0, dd["over"], "0 windows over the limit", lambda v: f"{v:.0f}"),
    ]
    if dd["over"]:
        sec.checks[-1].margin = f"{dd['over']:.0f} windows over (worst {dd['worst']:.0f} > {r})"
    if dd["utilization"] < 0.98:
        rest = max(0.0, 1 - dd["utilization"] - dd["lost"])
        sec.notes.append(
            f"Where the daemon's missing {1 - dd['utilization']:.1%} went: {dd['lost']:.1%} of the "
            f"window in {dd['pauses']:.0f} pause(s) of up to {dd['longest_pause']:.2f} s without "
            f"any request although work was due, the other {rest:.1%} in the spacing of requests "
            "within the budget."
        )
    return sec


# -- 3. freshness -------------------------------------------------------------------------------


def freshness(ctx: Context) -> Section:
    sz = ctx.sizes
    r, per = sz.fresh_rate
    n = sz.fresh_events
    ids_file = ctx.ids_file(n)
    bound = n / (1000 * r / per)
    sec = Section(
        "freshness",
        "Freshness: longest gap between two polls of one event, when budget-bound",
        f"{n:,} events polled every 1 s with {r} requests per {per:g} s (enforced by the "
        f"simulator too): a round needs {n / 1000:g} requests, so no poller can see an event more "
        f"often than every N / (1000 R) = {bound:g} s. The simulator keeps the IDs of every "
        f"request (`bench.simproc --record-ids`); over a {sz.fresh_window:g} s window (after "
        f"{sz.warmup:g} s) each event's poll times give its gaps. The longest gap counts the "
        "time since an event's last poll at the window's end too (an event not polled again is "
        "starving). Daemon and baseline run at the same time, each against its own simulator.",
    )
    watched = event_ids(n)
    with Group() as g:
        sims = {
            who: start_sim(
                g,
                ctx.work,
                f"fresh-sim-{who}",
                rate_limit=(r, per),
                record_ids=True,
                log_limit=100_000,
            )
            for who in ("daemon", "baseline")
        }
        d = start_daemon(
            g,
            ctx.work,
            "fresh-daemon",
            sim=sims["daemon"],
            events_file=ids_file,
            rate=(r, per),
            interval=1,
        )
        b = start_baseline(
            g,
            ctx.work,
            "fresh-baseline",
            sim=sims["baseline"],
            events_file=ids_file,
            rate=(r, per),
            interval=1,
        )
        _sleep(sz.warmup, [d, b])
        t0 = time.monotonic()
        for sim in sims.values():
            sim.clear_log()
        _sleep(sz.fresh_window, [d, b])
        t1 = time.monotonic()
        logs = {who: sim.log() for who, sim in sims.items()}
    gaps = {}
    for who, log in logs.items():
        polls = [
            (float(rec["t"]), rec["ids"])
            for rec in log
            if rec["status"] == 200 and t0 <= float(rec["t"]) < t1 and rec.get("ids")
        ]
        gaps[who] = poll_gaps(polls, watched, t1)
    dd, bb = gaps["daemon"], gaps["baseline"]
    worst_d = max(dd.longest, dd.longest_open)
    worst_b = max(bb.longest, bb.longest_open)
    sec.rows = [
        (
            f"longest gap (bound {bound:g} s)",
            secs(worst_d),
            secs(worst_b),
            ratio(worst_d, worst_b, higher_is_better=False),
        ),
        ("longest gap / bound", f"{worst_d / bound:.2f}", f"{worst_b / bound:.2f}", ""),
        ("longest closed gap (between two polls)", secs(dd.longest), secs(bb.longest), ""),
        (
            "longest open gap (since last poll, at window end)",
            secs(dd.longest_open),
            secs(bb.longest_open),
            "",
        ),
        ("p99 of each event's longest gap", secs(dd.p99), secs(bb.p99), ""),
        ("mean gap", secs(dd.mean), secs(bb.mean), ""),
        ("events polled < 2 times in the window", f"{dd.never_twice:,}", f"{bb.never_twice:,}", ""),
    ]
    sec.checks = [
        at_most(
            1.05 * bound,
            worst_d,
            f"longest gap ≤ 1.05 x N/(1000R) = {1.05 * bound:.3f} s",
            lambda v: f"{v:.3f} s",
        )
    ]
    if dd.mean > 1.05 * bound:
        sec.notes.append(
            f"Every event waited about as long as every other (p99 {dd.p99:.2f} s, longest "
            f"{worst_d:.2f} s): no starvation, but the daemon's rounds took {dd.mean:.2f} s on "
            f"average where {bound:g} s of budget suffice, so the gap is set by the time "
            "between rounds, not by the order within them."
        )
    return sec


# -- 4 and 5. memory and restart ------------------------------------------------------------------


@dataclass
class Start:
    """One start of a poller on a prefilled state file."""

    events: int
    listening: float = math.nan  # start → /healthz 200 (daemon) or state loaded (baseline)
    started_line: float = math.nan  # start → the 'daemon started' log line
    ready: float = math.nan  # start → /readyz 200 (daemon) or first answer stored (baseline)
    rss_ready: float = math.nan
    rss_round: float = math.nan  # after the first full round
    round_seconds: float = math.nan  # start → first round done
    peak: float = math.nan


def _start_daemon_on_state(ctx: Context, n: int) -> Start:
    sz = ctx.sizes
    out = Start(n)
    state = ctx.work / f"restart-daemon-{n}.db"
    fill_daemon_state(state, n)
    with Group() as g:
        sim = start_sim(g, ctx.work, f"restart-sim-daemon-{n}")
        d = start_daemon(
            g,
            ctx.work,
            f"restart-daemon-{n}",
            sim=sim,
            events_file=ctx.ids_file(n),
            rate=UNTHROTTLED,
            interval=3600,
            state=state,
            log_level="info",
            wait=False,
        )
        t0 = d.proc.started
        timeout = sz.start_timeout
        out.listening = (
            wait_for("/healthz", lambda: answers(f"{d.url}/healthz") == 200, timeout, [d.proc]) - t0
        )
        out.ready = (
            wait_for("/readyz", lambda: answers(f"{d.url}/readyz") == 200, timeout, [d.proc]) - t0
        )
        out.rss_ready = d.proc.rss()
        started = [t for t, line in d.lines if '"daemon started"' in line]
        out.started_line = started[0] - t0 if started else math.nan
        try:
            out.round_seconds = wait_observed(d, n, sz.round_timeout) - t0
            time.sleep(0.5)
            out.rss_round = d.proc.rss()
        except BenchError:
            d.proc.check()  # a timeout leaves rss_round unmeasured; a crash is an error
        out.peak = peak_rss_bytes(d.proc.pid)
    return out


def _start_baseline_on_state(ctx: Context, n: int) -> Start:
    sz = ctx.sizes
    out = Start(n)
    state = ctx.work / f"restart-baseline-{n}.db"
    fill_baseline_state(state, n)
    with Group() as g:
        sim = start_sim(g, ctx.work, f"restart-sim-baseline-{n}")
        b = start_baseline(
            g,
            ctx.work,
            f"restart-baseline-{n}",
            sim=sim,
            events_file=ctx.ids_file(n),
            rate=UNTHROTTLED,
            interval=3600,
            state=state,
            wait=False,
        )
        t0 = b.proc.started
        wait_for(
            "baseline first answer",
            lambda: bool(b.events("first_answer")),
            sz.start_timeout,
            [b.proc],
        )
        out.rss_ready = b.proc.rss()
        out.listening = b.events("loaded")[0][0] - t0
        out.ready = b.events("first_answer")[0][0] - t0
        try:
            out.round_seconds = _await_round(b, 1, sz.round_timeout) - t0
            time.sleep(0.5)
            out.rss_round = b.proc.rss()
        except BenchError:
            b.proc.check()
        out.peak = peak_rss_bytes(b.proc.pid)
    return out


def _per_event(start: Start, tiny: Start, field_name: str) -> float:
    big: float = getattr(start, field_name)
    small: float = getattr(tiny, field_name)
    if math.isnan(big) or math.isnan(small) or start.events == tiny.events:
        return math.nan
    return (big - small) / (start.events - tiny.events)


def memory_and_restart(ctx: Context) -> tuple[Section, Section]:
    sz = ctx.sizes
    sizes = [sz.tiny_events, *sz.memory_sizes]
    runs: dict[str, list[Start]] = {"daemon": [], "baseline": []}
    for n in sizes:
        runs["daemon"].append(_start_daemon_on_state(ctx, n))
        runs["baseline"].append(_start_baseline_on_state(ctx, n))
    largest = sizes[-1]
    mem = Section(
        "memory",
        "Memory: resident set per watched event",
        f"For each size, a state file already holding every event (written with the daemon's "
        f"own schema, `monitor.store.sqlite.MIGRATIONS`; the baseline's with its own) and an "
        f"events CSV (`events_file:`); the poller starts against an unthrottled simulator "
        f"(statuses equal to the stored ones, so no transitions) and RSS (/proc/PID/statm) is "
        f"read once it is ready, and again after its first full round (all events polled once; "
        f"given up to {sz.round_timeout:g} s). Bytes per event = (RSS at N - RSS at a "
        f"{sz.tiny_events}-event config) / N, after the first round.",
    )
    restart = Section(
        "restart",
        "Restart: start to ready with the events already in the store",
        "Same starts as above, timed from process creation. Daemon: to its `daemon started` "
        "log line (config, state and catalog loaded, HTTP server listening), to its first 200 "
        "on `/healthz`, and to its first 200 on `/readyz` (which needs the upstream's first "
        "answer). Baseline: to its `loaded` line (IDs and state in memory) and to its first "
        "answer stored.",
    )
    tiny = {who: r[0] for who, r in runs.items()}
    for i, n in enumerate(sizes):
        d, b = runs["daemon"][i], runs["baseline"][i]
        if i:
            dpe, bpe = (
                _per_event(d, tiny["daemon"], "rss_round"),
                _per_event(b, tiny["baseline"], "rss_round"),
            )
            mem.rows.append(
                (f"bytes per event at {n:,}", num(dpe), num(bpe), ratio(dpe, bpe, False))
            )
        mem.rows.append(
            (
                f"RSS at {n:,}: ready / after round",
                f"{mib(d.rss_ready)} / {mib(d.rss_round)}",
                f"{mib(b.rss_ready)} / {mib(b.rss_round)}",
                "",
            )
        )
        mem.rows.append((f"peak RSS at {n:,}", mib(d.peak), mib(b.peak), ""))
        restart.rows += [
            (
                f"{n:,} events: to state loaded and listening",
                secs(d.started_line),
                secs(b.listening),
                ratio(d.started_line, b.listening, False),
            ),
            (f"{n:,} events: to first 200 on /healthz", secs(d.listening), "", ""),
            (
                f"{n:,} events: to ready / first answer stored",
                secs(d.ready),
                secs(b.ready),
                ratio(d.ready, b.ready, False),
            ),
            (
                f"{n:,} events: to first full round",
                secs(d.round_seconds),
                secs(b.round_seconds),
                "",
            ),
        ]
    big_d = runs["daemon"][-1]
    if big_d.listening - big_d.started_line > 0.5:
        restart.notes.append(
            f"At {largest:,} events the daemon logged `daemon started` (state loaded, server "
            f"listening) {big_d.started_line:.1f} s after its start but answered `/healthz` only "
            f"at {big_d.listening:.1f} s: for {big_d.listening - big_d.started_line:.1f} s its "
            "event loop was busy with something else (the first poll run queues every event in "
            "one go), so it answered nothing."
        )
    per_event = _per_event(big_d, tiny["daemon"], "rss_round")
    basis = "after the first round"
    if math.isnan(per_event):
        per_event = _per_event(big_d, tiny["daemon"], "rss_ready")
        basis = "after load (the first round did not finish in time)"
        mem.notes.append(
            f"At {largest:,} events the first round did not finish within "
            f"{sz.round_timeout:g} s: bytes per event measured after load."
        )
    mem.notes.append(
        "The start-up rows of 'Where the time and memory go' show which structures the bytes "
        "per event come from."
    )
    mem.checks = [
        at_most(400, per_event, f"≤ 400 bytes RSS per event at {largest:,} ({basis})", num)
    ]
    restart.checks = [
        at_most(5.0, big_d.ready, f"ready within 5 s with {largest:,} events stored", secs)
    ]
    return mem, restart


# -- 6. notification latency ----------------------------------------------------------------------

_LATENCY = "availability_monitor_webhook_delivery_latency_seconds"


@dataclass(frozen=True)
class Load:
    """One load of the latency scenario: events polled every 1 s at a rate limit, against a
    simulator redrawing each event's statuses about every `change_seconds`."""

    label: str
    events: int
    change_seconds: float
    rate: tuple[int, float]


def _latency_run(ctx: Context, who: str, load: Load) -> dict[str, float]:
    """One poller, one load, one webhook receiver; figures over the latency window."""
    sz = ctx.sizes
    n = load.events
    ids = ctx.ids_file(n)
    tag = f"lat-{who}-{n}"
    out: dict[str, float] = {}
    with Group() as g:
        sim = start_sim(g, ctx.work, f"{tag}-sim", change_seconds=load.change_seconds)
        rec = start_receiver(g, ctx.work, f"{tag}-receiver")
        hook = f"{rec.url}/hook"
        kwargs: dict[str, Any] = {
            "sim": sim,
            "events_file": ids,
            "rate": load.rate,
            "interval": 1,
            "webhook_url": hook,
        }
        if who == "daemon":
            d = start_daemon(g, ctx.work, tag, **kwargs)
            wait_observed(d, n, sz.round_timeout)
            _sleep(sz.warmup, [d])
            rec.reset()
            m0, t0, c0 = d.metrics(), time.monotonic(), d.proc.cpu()
            _sleep(sz.latency_window, [d])
            m1, t1, c1 = d.metrics(), time.monotonic(), d.proc.cpu()
            name = "availability_monitor_transitions_total"
            out["transitions"] = m1.get(name, 0) - m0.get(name, 0)
            before = dict(histogram(m0, _LATENCY))
            delta = [(le, c - before.get(le, 0.0)) for le, c in histogram(m1, _LATENCY)]
            out["hist_p50"] = histogram_quantile(delta, 0.5)
            out["hist_p99"] = histogram_quantile(delta, 0.99)
            out["pending_before"] = m0.get("availability_monitor_webhook_pending", math.nan)
            out["pending"] = m1.get("availability_monitor_webhook_pending", math.nan)
        else:
            b = start_baseline(g, ctx.work, tag, **kwargs)
            _await_round(b, 1, sz.round_timeout)
            _sleep(sz.warmup, [b])
            rec.reset()
            s0, t0, c0 = b.stats(), time.monotonic(), b.proc.cpu()
            _sleep(sz.latency_window, [b])
            s1, t1, c1 = b.stats(), time.monotonic(), b.proc.cpu()
            out["transitions"] = s1["transitions"] - s0["transitions"]
            for key in ("hist_p50", "hist_p99", "pending_before", "pending"):
                out[key] = math.nan
        stats = rec.stats()
    lat: list[float] = stats["latency"]  # type: ignore[assignment]
    since_obs: list[float] = stats["since_observed"]  # type: ignore[assignment]
    out.update(
        seconds=t1 - t0,
        cpu=(c1 - c0) / (t1 - t0),
        received=len(lat),
        p50=percentile(lat, 0.5),
        p99=percentile(lat, 0.99),
        max=max(lat, default=math.nan),
        obs_p50=percentile(since_obs, 0.5),
        obs_p99=percentile(since_obs, 0.99),
    )
    return out


def _latency_rows(
    load: str, dd: dict[str, float], bb: dict[str, float]
) -> list[tuple[str, str, str, str]]:
    def per_s(f: dict[str, float], key: str) -> str:
        return num(f[key] / f["seconds"])

    rows: list[tuple[str, str, str, str]] = [
        (f"{load}: transitions per second", per_s(dd, "transitions"), per_s(bb, "transitions"), ""),
        (f"{load}: webhooks received per second", per_s(dd, "received"), per_s(bb, "received"), ""),
    ]
    for q in ("p50", "p99"):
        rows.append(
            (
                f"{load}: latency {q} (stored → received)",
                ms(dd[q]),
                ms(bb[q]),
                ratio(dd[q], bb[q], higher_is_better=False),
            )
        )
    rows += [
        (f"{load}: latency max", ms(dd["max"]), ms(bb["max"]), ""),
        (
            f"{load}: observed → received p50 / p99",
            f"{ms(dd['obs_p50'])} / {ms(dd['obs_p99'])}",
            f"{ms(bb['obs_p50'])} / {ms(bb['obs_p99'])}",
            "",
        ),
        (
            f"{load}: daemon's histogram p50 / p99 (bucket bound)",
            f"≤ {ms(dd['hist_p50'])} / ≤ {ms(dd['hist_p99'])}",
            "",
            "",
        ),
        (
            f"{load}: outbox pending at start / end",
            f"{num(dd['pending_before'])} / {num(dd['pending'])}",
            "",
            "",
        ),
        (f"{load}: poller CPU (cores)", num(dd["cpu"], 2), num(bb["cpu"], 2), ""),
    ]
    return rows


def latency(ctx: Context) -> Section:
    sz = ctx.sizes
    paced = Load(
        f"{sz.latency_events:,} events, paced",
        sz.latency_events,
        sz.latency_change_seconds,
        sz.latency_rate,
    )
    bursts = Load(
        f"{sz.burst_latency_events:,} events, bursts",
        sz.burst_latency_events,
        sz.burst_change_seconds,
        UNTHROTTLED,
    )
    light = Load(
        f"{sz.light_latency_events:,} events, light",
        sz.light_latency_events,
        sz.burst_change_seconds,
        UNTHROTTLED,
    )
    r, per = sz.latency_rate
    sec = Section(
        "latency",
        "Notification latency: transition stored → webhook received",
        "Events polled every 1 s against a simulator that redraws each event's statuses now and "
        "then; one webhook subscription (no filter, defaults otherwise) to a receiver in its "
        "own process (`bench.receiver`: answers 200 at once and decodes nothing until asked "
        "for its figures, so that it is not what is measured). Three loads:\n\n"
        f"- **paced** (the target): {paced.events:,} events at a limit of {r} requests per "
        f"{per:g} s, statuses redrawn every {paced.change_seconds / 2:g}-"
        f"{paced.change_seconds * 1.5:g} s: on the order of 1000 transitions a second, "
        f"arriving as a Ticketmaster key delivers them, about {1000 // r} per answer every "
        f"{per * 1000 / r:g} ms;\n"
        f"- **bursts**: {bursts.events:,} events, unthrottled, statuses redrawn every "
        f"{bursts.change_seconds / 2:g}-{bursts.change_seconds * 1.5:g} s: as many "
        "transitions a second, but both 1000-ID answers of a round arrive together, each "
        "with about half of its events changed, so about a thousand webhooks fall due at the "
        "same instant (a stress case: no real answer changes half its events);\n"
        f"- **light**: {light.events:,} events, as the bursts, a tenth of the load.\n\n"
        "Latency = the receiver's clock on arrival - the payload's `timestamp` (when the "
        "poller stored the transition and its delivery; millisecond precision). After the "
        f"first round and {sz.warmup:g} s, measured over {sz.latency_window:g} s. The daemon's "
        "own `webhook_delivery_latency_seconds` histogram (stored → 2xx) is a cross-check.",
    )
    loads = (paced, bursts, light)
    runs = {
        (who, load): _latency_run(ctx, who, load)
        for load in loads
        for who in ("daemon", "baseline")
    }
    for load in loads:
        sec.rows += _latency_rows(load.label, runs[("daemon", load)], runs[("baseline", load)])
    target = runs[("daemon", paced)]
    sec.checks = [
        at_most(
            0.050,
            target["p99"],
            f"webhook p99 < 50 ms at {target['transitions'] / target['seconds']:,.0f} "
            "transitions/s",
            ms,
        )
    ]
    burst = runs[("daemon", bursts)]
    if burst["received"]:
        per_hook = burst["cpu"] * burst["seconds"] / burst["received"]
        sec.notes.append(
            f"In the bursts, the last of about a thousand webhooks due at once waits for the "
            f"others: p99 there is bound by the burst times the cost of one delivery. The "
            f"daemon spent {per_hook * 1e6:,.0f} µs of CPU per webhook received (polling "
            f"included), which puts that floor near {per_hook * 1000 * 1000:,.0f} ms; the "
            "baseline, which sends each webhook itself right after storing, one after "
            "another, has no outbox or retries to pay for."
        )
    for (who, load), f in runs.items():
        rate_in, rate_out = f["transitions"] / f["seconds"], f["received"] / f["seconds"]
        if who == "daemon" and rate_out < 0.9 * rate_in:
            sec.notes.append(
                f"With {load.label}, the daemon delivered {rate_out:,.0f} webhooks a second "
                f"while storing {rate_in:,.0f} transitions a second: its outbox grew from "
                f"{f['pending_before']:,.0f} to {f['pending']:,.0f} pending deliveries during "
                "the window, and latency grows with it for as long as the load lasts."
            )
    return sec


def run(
    name: str, fn: Callable[[Context], Section | tuple[Section, ...]], ctx: Context
) -> list[Section]:
    """Run one scenario, noting its duration and the machine's other load meanwhile."""
    meter = LoadMeter()
    began = time.monotonic()
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        result = fn(ctx)
        sections = list(result) if isinstance(result, tuple) else [result]
    except Exception as exc:  # one broken scenario must not lose the others' figures
        detail = str(exc) if isinstance(exc, BenchError) else traceback.format_exc()
        sections = [Section(name, name, "", error=detail)]
    took = time.monotonic() - began
    ours = 0.0
    for before, who in (
        (self_before, resource.RUSAGE_SELF),
        (children_before, resource.RUSAGE_CHILDREN),
    ):
        after = resource.getrusage(who)
        ours += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    other = max(0.0, meter.busy_since() - ours) / took if took else math.nan
    for s in sections:
        s.seconds = took
        s.other_cores = other
    return sections

"""Where the time and memory go: the daemon's own pieces timed in process, beside the baseline's.

The end-to-end scenarios say *how much*; this says *where*. It calls the daemon's functions
directly (decoding an answer, judging it, queueing events; loading the config, the catalog and
the state), so when their signatures change a row reads "n/a" with the reason instead of
stopping the suite. Start-up phases run in a fresh process each (`python -m bench.hotpath load
...`), so that resident-memory deltas are not hidden by memory an earlier phase freed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench.actors import event_ids, fill_baseline_state, fill_daemon_state
from bench.baseline import judge, open_db, read_ids
from bench.proc import PYTHON, REPO, rss_bytes
from bench.scenarios import Context, Section, num

BATCH = 1000
AVAILABLE = "TICKETS_AVAILABLE"


def _per_item(fn: Callable[[], object], items: int, min_seconds: float = 0.4) -> float:
    """Microseconds per item of fn() (which handles `items` items), best of a few repeats."""
    fn()
    best = float("inf")
    for _ in range(3):
        runs = 0
        began = time.perf_counter()
        while True:
            fn()
            runs += 1
            took = time.perf_counter() - began
            if took >= min_seconds / 3:
                break
        best = min(best, took / runs)
    return best / items * 1e6


def _try(fn: Callable[[], float]) -> float | str:
    try:
        return fn()
    except Exception as exc:  # the daemon's internals move; say why instead of failing
        return f"n/a ({type(exc).__name__}: {str(exc)[:80]})"


def _show(value: float | str, digits: int = 2) -> str:
    return value if isinstance(value, str) else f"{value:,.{digits}f}"


def _cpu_rows(work: Path, pool_events: int) -> list[tuple[str, str, str, str]]:
    ids = event_ids(BATCH)
    rows = [{"eventId": e, "status": AVAILABLE, "resaleStatus": AVAILABLE} for e in ids]
    body = orjson.dumps(rows)

    def parse() -> float:
        from monitor.upstream.inventory import parse_answer

        return _per_item(lambda: parse_answer(body, ids), BATCH)

    def delta() -> float:
        from monitor.upstream.inventory import parse_answer

        last = parse_answer(body, ids, keep_layout=True).layout
        changed = [dict(r) for r in rows]
        for r in changed[::100]:  # ten statuses of the thousand moved
            r["status"] = "FEW_TICKETS_LEFT"
        new = orjson.dumps(changed)
        return _per_item(lambda: parse_answer(new, ids, last), BATCH)

    def process() -> float:
        from prometheus_client import CollectorRegistry

        from monitor.config.catalog import Catalog
        from monitor.core.transitions import EventState
        from monitor.metrics import Metrics
        from monitor.poller.live import LiveState
        from monitor.poller.processor import Processor
        from monitor.upstream.inventory import parse_answer

        class NoStore:
            async def record(self, *args: Any, **kwargs: Any) -> list[Any]:
                return []

        live = LiveState()
        same = EventState((AVAILABLE, None, 0), (AVAILABLE, None, 0))
        same = live.steady.get((AVAILABLE, AVAILABLE), same)  # the interned copy, as at run time
        live.states = dict.fromkeys(ids, same)
        catalog = Catalog()
        processor = Processor(
            store=NoStore(),  # type: ignore[arg-type]
            live=live,
            catalog=lambda: catalog,
            metrics=Metrics(CollectorRegistry()),
        )
        answer = parse_answer(body, ids)
        columns = (answer.ids, answer.statuses, answer.resales)
        loop = asyncio.new_event_loop()
        try:
            return _per_item(
                lambda: loop.run_until_complete(processor.process_columns(*columns, time.time())),
                BATCH,
            )
        finally:
            loop.close()

    def pool() -> float:
        from monitor.core.batching import DueQueue

        many = event_ids(pool_events)
        prios = [float(k % 997) for k in range(len(many))]

        def fill_and_drain() -> None:
            p = DueQueue()
            p.add_many(many, None, prios)
            while len(p):
                p.take(BATCH)

        return _per_item(fill_and_drain, pool_events, min_seconds=1.0)

    state: dict[str, tuple[str | None, str | None]] = dict.fromkeys(ids, (AVAILABLE, AVAILABLE))
    watched = set(ids)
    db = open_db(str(work / "hotpath-judge.db"))
    try:
        base_judge = _try(
            lambda: _per_item(lambda: judge(rows, state, watched, db, time.time()), BATCH)
        )
    finally:
        db.close()
    return [
        (
            "decode an answer (µs per status)",
            _show(_try(parse)) + " `parse_answer` (orjson, checks, columns)",
            _show(_try(lambda: _per_item(lambda: json.loads(body), BATCH))) + " `json.loads`",
            "",
        ),
        (
            "decode an answer with 10 of 1000 statuses changed since the last one (µs per status)",
            _show(_try(delta)) + " `parse_answer` with the last answer's layout (a delta)",
            _show(_try(lambda: _per_item(lambda: json.loads(body), BATCH))) + " `json.loads`",
            "",
        ),
        (
            "judge unchanged statuses (µs per status)",
            _show(_try(process)) + " `Processor.process_columns` (nothing to store)",
            _show(base_judge) + " detection + 1 SQLite upsert per event + commit",
            "",
        ),
        (
            f"queue and batch, per event per round ({pool_events:,} due)",
            _show(_try(pool)) + " `DueQueue.add_many` + `take`",
            "~0 (slices a list)",
            "",
        ),
    ]


# -- start-up phases, each measured in a fresh process --------------------------------------


def _phases_daemon(n: int, csv: str, state: str) -> dict[str, list[float]]:
    """(seconds, RSS growth in bytes) of each start-up phase of the daemon."""
    from monitor.allocator import map_large_blocks
    from monitor.config import load_config
    from monitor.config.catalog import build_catalog
    from monitor.poller.live import LiveState
    from monitor.store.sqlite import SQLiteStore

    config_path = Path(state).with_suffix(".yaml")
    config_path.write_text(
        json.dumps(
            {
                "upstream": {"base_url": "http://127.0.0.1:9", "api_key": "k"},
                "state": {"path": state},
                "watch_sets": [{"name": "b", "interval_seconds": 60, "events_file": csv}],
            }
        )
    )
    out: dict[str, list[float]] = {}
    keep: list[object] = []
    map_large_blocks()  # as `availability-monitor run` does first

    def phase(name: str, fn: Callable[[], object]) -> object:
        gc.collect()
        rss, began = rss_bytes_self(), time.perf_counter()
        value = fn()
        took = time.perf_counter() - began
        gc.collect()
        out[name] = [took, rss_bytes_self() - rss]
        keep.append(value)
        return value

    config: Any = phase("config", lambda: load_config(str(config_path)))
    catalog: Any = phase("catalog", lambda: build_catalog(config))
    store = SQLiteStore(state)
    live = LiveState()

    async def load() -> Any:
        # As the daemon starts: the stored states stream straight into the live dicts.
        await store.open()
        try:
            await live.load_all(store.iter_states(), catalog)
            return live
        finally:
            await store.close()

    phase("state", lambda: asyncio.run(load()))

    def count() -> LiveState:
        live.recount(catalog)
        return live

    phase("live", count)
    return out


def _phases_baseline(n: int, csv: str, state: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    gc.collect()
    rss, began = rss_bytes_self(), time.perf_counter()
    ids = read_ids(csv)
    watched = set(ids)
    out["config"] = [time.perf_counter() - began, rss_bytes_self() - rss]
    gc.collect()
    rss, began = rss_bytes_self(), time.perf_counter()
    db = open_db(state)
    loaded = {
        e: (s, r) for e, s, r in db.execute("SELECT event_id, status, resale FROM event_state")
    }
    out["state"] = [time.perf_counter() - began, rss_bytes_self() - rss]
    if len(loaded) != n or len(watched) != n:
        raise SystemExit(f"expected {n} events and states, got {len(watched)} and {len(loaded)}")
    return out


def rss_bytes_self() -> int:
    return rss_bytes(os.getpid())


def _load_rows(ctx: Context, n: int) -> list[tuple[str, str, str, str]]:
    csv = ctx.ids_file(n)
    results: dict[str, dict[str, list[float]] | str] = {}
    for who, fill in (("daemon", fill_daemon_state), ("baseline", fill_baseline_state)):
        state = ctx.work / f"hotpath-{who}-{n}.db"
        fill(state, n)
        proc = subprocess.run(
            [PYTHON, "-m", "bench.hotpath", "load", who, str(n), str(csv), str(state)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode == 0:
            results[who] = json.loads(proc.stdout.strip().splitlines()[-1])
        else:
            tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
            results[who] = f"n/a ({tail[:100]})"

    def cell(who: str, name: str) -> str:
        got = results[who]
        if isinstance(got, str):
            return got
        if name not in got:
            return "-"
        seconds, grown = got[name]
        return f"{seconds / n * 1e6:,.1f} µs, {num(grown / n)} B"

    names = {
        "config": "read the config and events file",
        "catalog": "build the catalog (ID -> shared profile)",
        "state": "load the stored states from SQLite into the live dicts, count statuses",
        "live": "recount the statuses",
    }
    return [
        (
            f"start-up: {label} (per event, {n:,} events)",
            cell("daemon", key),
            cell("baseline", key),
            "",
        )
        for key, label in names.items()
    ]


def hotpath(ctx: Context) -> Section:
    sz = ctx.sizes
    n = sz.hotpath_events
    sec = Section(
        "hotpath",
        "Where the time and memory go (in process)",
        "The daemon's own functions called directly in one process, on 1000-ID batches of "
        "unchanged statuses (the common case), beside the baseline's code for the same step; "
        "best of three timings. Start-up phases (time and resident-memory growth per event) "
        f"are measured at {n:,} events, each poller in a fresh process. These explain the "
        "end-to-end figures above; they are not targets.",
    )
    sec.rows = _cpu_rows(ctx.work, n) + _load_rows(ctx, n)
    return sec


def main() -> None:
    """`python -m bench.hotpath load daemon|baseline N CSV STATE`: start-up phases as JSON."""
    _cmd, who, n, csv, state = sys.argv[1:6]
    fn = _phases_daemon if who == "daemon" else _phases_baseline
    print(json.dumps(fn(int(n), csv, state)))


if __name__ == "__main__":
    main()

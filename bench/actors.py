"""The processes of a benchmark: simulator, daemon, baseline, receiver; and what they share
(ID lists, configs, state files, metrics)."""

from __future__ import annotations

import json
import math
import signal
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.baseline import open_db
from bench.proc import (
    BenchError,
    Group,
    Proc,
    answers,
    free_port,
    get_json,
    http,
    spawn,
    wait_for,
)

API_KEY = "bench-key"
WEBHOOK_SECRET = "whsec_" + "YmVuY2htYXJrLXdlYmhvb2stc2VjcmV0LTMyLWJ5dGVz"  # 32 bytes
START_TIMEOUT = 30.0


def event_ids(n: int) -> list[str]:
    """n event IDs of 16 characters, like Ticketmaster's."""
    return [f"BENCH{i:011d}" for i in range(n)]


def write_ids_csv(path: Path, n: int) -> Path:
    """A CSV events file (header `id`), as both pollers read it."""
    with open(path, "w") as handle:
        handle.write("id\n")
        handle.writelines(f"{eid}\n" for eid in event_ids(n))
    return path


# -- simulator ----------------------------------------------------------------------------------


@dataclass
class Sim:
    proc: Proc
    url: str

    def clear_log(self) -> None:
        http("DELETE", f"{self.url}/_sim/requests")

    def log(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = get_json(f"{self.url}/_sim/requests", timeout=120)
        return records


BENCH_URL_BYTES = 65536
"""The URL limit of the benchmarks' simulated gateway (and the daemon's): long enough for a
1000-ID GET (about 17 KB), so that every benchmark measures full batches as before. The
simulator's default (8 KB) would split each into three requests."""


def start_sim(
    group: Group,
    log_dir: Path,
    name: str,
    *,
    change_seconds: float | None = None,
    rate_limit: tuple[int, float] | None = None,
    record_ids: bool = False,
    log_limit: int = 100_000,
    max_url_bytes: int = BENCH_URL_BYTES,
) -> Sim:
    """`python -m monitor simulate` (or bench.simproc when IDs must be logged)."""
    port = free_port()
    opts = ["--port", str(port), "--api-key", API_KEY, "--max-url-bytes", str(max_url_bytes)]
    opts += ["--no-evolve"] if change_seconds is None else ["--change-seconds", str(change_seconds)]
    if rate_limit is not None:
        opts += ["--rate-limit", f"{rate_limit[0]}/{rate_limit[1]:g}"]
    if record_ids:
        args = ["-m", "bench.simproc", *opts, "--record-ids", "--log-limit", str(log_limit)]
    else:
        args = ["-m", "monitor", "simulate", *opts]
    proc = group.add(spawn(name, args, log_dir))
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{name} to listen", lambda: answers(f"{url}/_sim/rate-limit") == 200, 20, [proc])
    return Sim(proc, url)


# -- daemon -------------------------------------------------------------------------------------


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text → {name: value summed over labels}, and `name{labels}` for each series."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        out[series] = number
        name = series.split("{", 1)[0]
        out[name] = out.get(name, 0.0) + number if series != name else number
    return out


def histogram(metrics: dict[str, float], name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) pairs of a histogram, summed over its other labels."""
    buckets: dict[float, float] = {}
    prefix = name + "_bucket{"
    for series, value in metrics.items():
        if series.startswith(prefix):
            le = series.split('le="', 1)[1].split('"', 1)[0]
            bound = math.inf if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + value
    return sorted(buckets.items())


def histogram_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding quantile q (what the histogram can tell)."""
    total = buckets[-1][1] if buckets else 0.0
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return math.nan


@dataclass
class Daemon:
    proc: Proc
    url: str
    lines: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, stderr line)

    def metrics(self) -> dict[str, float]:
        status, body = http("GET", f"{self.url}/metrics", timeout=60)
        if status != 200:
            raise BenchError(f"daemon /metrics answered {status}")
        return parse_metrics(body.decode())

    def observations(self) -> float:
        return self.metrics().get("availability_monitor_observations_total", 0.0)


def daemon_config(
    path: Path,
    *,
    sim_url: str,
    port: int,
    state: Path,
    events_file: Path,
    rate: tuple[int, float],
    interval: float,
    webhook_url: str | None = None,
    log_level: str = "warning",
) -> Path:
    """A daemon config (YAML is a superset of JSON: written as JSON, no quoting worries)."""
    config: dict[str, object] = {
        "upstream": {
            "base_url": sim_url,
            "api_key": API_KEY,
            "rate_limit": {"requests": rate[0], "per_seconds": rate[1]},
            "batch_size": 1000,
            "max_url_bytes": BENCH_URL_BYTES,
        },
        "state": {"path": str(state)},
        "server": {"listen": f"127.0.0.1:{port}"},
        "log": {"format": "json", "level": log_level},
        "watch_sets": [
            {"name": "bench", "interval_seconds": interval, "events_file": str(events_file)}
        ],
    }
    if webhook_url is not None:
        config["notifications"] = {
            "webhooks": [{"name": "bench", "url": webhook_url, "secret": WEBHOOK_SECRET}]
        }
    path.write_text(json.dumps(config, indent=2))
    return path


def start_daemon(
    group: Group,
    work: Path,
    name: str,
    *,
    sim: Sim,
    events_file: Path,
    rate: tuple[int, float],
    interval: float,
    state: Path | None = None,
    webhook_url: str | None = None,
    log_level: str = "warning",
    wait: bool = True,
    timeout: float = START_TIMEOUT,
) -> Daemon:
    """`python -m monitor run --config FILE`; with `wait`, returns once /healthz answers."""
    port = free_port()
    config = daemon_config(
        work / f"{name}.yaml",
        sim_url=sim.url,
        port=port,
        state=state or work / f"{name}.db",
        events_file=events_file,
        rate=rate,
        interval=interval,
        webhook_url=webhook_url,
        log_level=log_level,
    )
    lines: list[tuple[float, str]] = []
    lock = threading.Lock()

    def keep(line: str, at: float) -> None:
        with lock:
            lines.append((at, line))

    # The daemon logs to stderr: its lines are time-stamped as they come.
    proc = group.add(
        spawn(
            name,
            ["-m", "monitor", "run", "--config", str(config)],
            work,
            lines=keep,
            watch="stderr",
        )
    )
    daemon = Daemon(proc, f"http://127.0.0.1:{port}", lines)
    if wait:
        wait_for(
            f"{name} /healthz", lambda: answers(f"{daemon.url}/healthz") == 200, timeout, [proc]
        )
    return daemon


def wait_observed(daemon: Daemon, at_least: float, timeout: float) -> float:
    """Wait until the daemon has judged `at_least` statuses; returns the monotonic time."""
    return wait_for(
        f"{at_least:.0f} observations",
        lambda: daemon.observations() >= at_least,
        timeout,
        [daemon.proc],
    )


# -- baseline -----------------------------------------------------------------------------------


@dataclass
class Baseline:
    proc: Proc
    lines: list[tuple[float, dict[str, object]]]
    _lock: threading.Lock

    def events(self, name: str) -> list[tuple[float, dict[str, object]]]:
        with self._lock:
            return [(t, e) for t, e in self.lines if e.get("event") == name]

    def stats(self, timeout: float = 10.0) -> dict[str, float]:
        """Ask for the counters (SIGUSR1) and wait for the answer."""
        before = len(self.events("stats"))
        self.proc.popen.send_signal(signal.SIGUSR1)
        wait_for("baseline stats", lambda: len(self.events("stats")) > before, timeout, [self.proc])
        counters = self.events("stats")[-1][1]
        return {k: float(v) for k, v in counters.items() if isinstance(v, int | float)}


def start_baseline(
    group: Group,
    work: Path,
    name: str,
    *,
    sim: Sim,
    events_file: Path,
    rate: tuple[int, float],
    interval: float,
    state: Path | None = None,
    webhook_url: str | None = None,
    wait: bool = True,
) -> Baseline:
    """`python -m bench.baseline ...`; with `wait`, returns once it has loaded its state."""
    lines: list[tuple[float, dict[str, object]]] = []
    lock = threading.Lock()

    def keep(line: str, at: float) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            return
        with lock:
            lines.append((at, event))

    args = [
        "-m",
        "bench.baseline",
        "--base-url",
        sim.url,
        "--api-key",
        API_KEY,
        "--events-file",
        str(events_file),
        "--db",
        str(state or work / f"{name}.db"),
        "--rate",
        f"{rate[0]}/{rate[1]:g}",
        "--interval",
        str(interval),
    ]
    if webhook_url is not None:
        args += ["--webhook-url", webhook_url, "--webhook-secret", WEBHOOK_SECRET]
    proc = group.add(spawn(name, args, work, lines=keep))
    base = Baseline(proc, lines, lock)
    if wait:
        wait_for(f"{name} to load", lambda: bool(base.events("loaded")), START_TIMEOUT, [proc])
    return base


# -- receiver -----------------------------------------------------------------------------------


@dataclass
class Receiver:
    proc: Proc
    url: str

    def reset(self) -> None:
        http("DELETE", f"{self.url}/_stats")

    def stats(self) -> dict[str, object]:
        data: dict[str, object] = get_json(f"{self.url}/_stats")
        return data


def start_receiver(group: Group, work: Path, name: str) -> Receiver:
    port = free_port()
    proc = group.add(spawn(name, ["-m", "bench.receiver", "--port", str(port)], work))
    url = f"http://127.0.0.1:{port}"
    wait_for(f"{name} to listen", lambda: answers(f"{url}/_stats") == 200, 20, [proc])
    return Receiver(proc, url)


# -- state files --------------------------------------------------------------------------------


def fill_daemon_state(path: Path, n: int, status: str = "TICKETS_AVAILABLE") -> None:
    """A daemon state file holding n remembered events, written with the daemon's own schema."""
    from monitor.store.sqlite import MIGRATIONS, SCHEMA_VERSION

    db = sqlite3.connect(path)
    for migration in MIGRATIONS:
        db.executescript(migration)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    at = time.time() - 60
    db.executemany(
        "INSERT INTO event_state VALUES (?, ?, NULL, 0, ?, NULL, 0, ?)",
        ((eid, status, status, at) for eid in event_ids(n)),
    )
    db.commit()
    db.execute("PRAGMA journal_mode=WAL")
    db.close()


def fill_baseline_state(path: Path, n: int, status: str = "TICKETS_AVAILABLE") -> None:
    """The baseline's state file holding n remembered events."""
    db = open_db(str(path))
    at = time.time() - 60
    db.executemany(
        "INSERT INTO event_state VALUES (?, ?, ?, ?)",
        ((eid, status, status, at) for eid in event_ids(n)),
    )
    db.commit()
    db.close()

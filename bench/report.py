"""docs/benchmarks.md: the machine, the date, every figure beside the baseline's, the targets."""

from __future__ import annotations

import hashlib
import math
import os
import platform
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.proc import REPO
from bench.scenarios import Section, Sizes


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _git() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "monitor"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"`{head}`" + (" with uncommitted changes under monitor/" if dirty else "")


def code_digest() -> str:
    """A digest of every file under monitor/: tells whether the daemon changed during a run."""
    digest = hashlib.sha256()
    for path in sorted((REPO / "monitor").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def machine() -> list[tuple[str, str]]:
    return [
        ("CPU", f"{_cpu_model()}, {os.cpu_count()} cores"),
        ("RAM", _ram()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("OS", f"{platform.system()} {platform.release()}"),
        ("daemon code", _git()),
    ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def _verdict(passed: bool | None) -> str:
    return {True: "**PASS**", False: "**MISS**", None: "not measured"}[passed]


def render(
    sections: Sequence[Section],
    sizes: Sizes,
    quick: bool,
    started: datetime,
    total: float,
    code_changed: bool = False,
) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (`python -m bench{' --quick' if quick else ''}`) on "
        f"{started:%Y-%m-%d %H:%M} UTC; the whole run took {total / 60:.1f} min. Regenerate it "
        "rather than editing it. Every figure of the daemon stands beside the same figure of "
        "the baseline (`bench/baseline.py`, a plain poller: see the end), measured in the same "
        "run, on the same machine, against the same simulator.",
        "",
    ]
    if quick:
        lines += [
            "> **Quick run** (`--quick`): smaller sizes and shorter windows, a smoke test. The "
            "figures are indicative only; the targets apply to the default run.",
            "",
        ]
    if code_changed:
        lines += [
            "> **The daemon's code (monitor/) changed while this run was going on**: its "
            "scenarios may have measured different versions. Run it again.",
            "",
        ]
    lines += ["## Machine", ""]
    lines += _table(["", ""], machine())
    others = [s.other_cores for s in sections if not math.isnan(s.other_cores)]
    if others:
        lines += [
            "",
            "Other programs on the machine used on average "
            f"{sum(others) / len(others):.2f} cores during the run (at most "
            f"{max(others):.2f} in one scenario), measured from /proc/stat less the benchmark's "
            "own processes. CPU-time figures are little affected by that; wall-clock figures "
            "(latency, restart, rounds) are.",
        ]
    lines += ["", "## Targets (issue 6)", ""]
    checks = [(s, c) for s in sections for c in s.checks]
    lines += _table(
        ["scenario", "target", "daemon", "result", "by how much"],
        [
            (s.title.split(":")[0], c.target, c.measured, _verdict(c.passed), c.margin)
            for s, c in checks
        ],
    )
    if any(c.passed is False for _, c in checks):
        lines += [
            "",
            "Why each miss happens: the notes under each scenario, and 'Where the time and "
            "memory go' at the end, which times the daemon's own pieces.",
        ]
    else:
        lines += [
            "",
            "Every target measured in this run is met. The notes under each scenario, and "
            "'Where the time and memory go' at the end, say what limits each figure.",
        ]
    failed = [s for s in sections if s.error]
    if failed:
        lines += ["", "Scenarios that could not be run:", ""]
        lines += [f"- **{s.key}**: `{(s.error or '').splitlines()[0]}`" for s in failed]
    for s in sections:
        if s.error:
            continue
        lines += ["", f"## {s.title}", "", s.how, ""]
        lines += _table(["figure", "daemon", "baseline", "daemon vs baseline"], s.rows)
        for note in s.notes:
            lines += ["", note]
        other = (
            ""
            if math.isnan(s.other_cores)
            else (f"; other programs used {s.other_cores:.2f} cores meanwhile")
        )
        lines += ["", f"_Took {s.seconds:.0f} s{other}._"]
    lines += ["", "## The baseline", "", _baseline_text(), "", "## Running it", "", _usage(Sizes())]
    return "\n".join(lines) + "\n"


def _baseline_text() -> str:
    return (
        "`bench/baseline.py` is what a first, straightforward version of this job looks like, "
        "run as its own process: one thread; the watched IDs from the same CSV; for each batch "
        "of 1000 IDs one GET with `http.client` on a kept-alive connection, paced by sleeping "
        "so that requests start `per_seconds / requests` apart (a 429 costs a 1 s sleep); the "
        "answer decoded with the standard `json` module; per event, the same transition rules "
        "as the daemon's defaults (first value is the baseline, UNKNOWN is no data), one SQLite "
        "upsert of its state and, per change, one INSERT of the transition; one commit per "
        "batch (WAL, synchronous=FULL, as durable as the daemon); then each transition POSTed "
        "as a signed Standard Webhooks message, one after another. No outbox, no retries of "
        "webhooks, no maintenance windows, no metrics, no HTTP API: it does less than the daemon."
    )


def _usage(sizes: Sizes) -> str:
    return "\n".join(
        [
            "```sh",
            "make bench                                  # everything, default sizes (~6 min)",
            ".venv/bin/python -m bench --quick           # smoke run, smaller and shorter",
            ".venv/bin/python -m bench --only rate,freshness --out /tmp/b.md",
            ".venv/bin/python -m bench --help            # all options",
            "```",
            "",
            "Default sizes: throughput "
            f"{sizes.throughput_events:,} events / "
            f"{sizes.throughput_windows} x {sizes.throughput_window:g} s; rate "
            f"{sizes.rate_events:,} events at {sizes.rate[0]}/{sizes.rate[1]:g} s over "
            f"{sizes.rate_window:g} s; freshness {sizes.fresh_events:,} events at "
            f"{sizes.fresh_rate[0]}/{sizes.fresh_rate[1]:g} s over {sizes.fresh_window:g} s; "
            f"memory and restart at {', '.join(f'{n:,}' for n in sizes.memory_sizes)} events; "
            f"latency {sizes.latency_events:,} (paced), {sizes.burst_latency_events:,} (bursts) "
            f"and {sizes.light_latency_events:,} events over {sizes.latency_window:g} s.",
        ]
    )


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def now() -> datetime:
    return datetime.now(UTC)

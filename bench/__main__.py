"""`python -m bench` (`make bench`): run the benchmark suite, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import report, scenarios
from bench.hotpath import hotpath
from bench.proc import REPO
from bench.scenarios import QUICK, Context, Section, Sizes, run

SCENARIOS: dict[str, Callable[[Context], Section | tuple[Section, ...]]] = {
    "throughput": scenarios.throughput,
    "rate": scenarios.rate,
    "freshness": scenarios.freshness,
    "latency": scenarios.latency,
    "memory": scenarios.memory_and_restart,
    "hotpath": hotpath,
}
ORDER = tuple(SCENARIOS)


def _sizes(args: argparse.Namespace) -> Sizes:
    sizes = QUICK if args.quick else Sizes()
    changes: dict[str, object] = {}
    if args.memory_sizes:
        changes["memory_sizes"] = tuple(int(x) for x in args.memory_sizes.split(","))
    if args.window_scale != 1.0:
        for name in ("throughput_window", "rate_window", "fresh_window", "latency_window"):
            changes[name] = getattr(sizes, name) * args.window_scale
    return dataclasses.replace(sizes, **changes)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, short windows: a smoke run"
    )
    parser.add_argument(
        "--only", default="", help=f"comma-separated scenarios among {', '.join(ORDER)}"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "docs" / "benchmarks.md", help="report file"
    )
    parser.add_argument("--memory-sizes", default="", help="e.g. 10000,100000,1000000")
    parser.add_argument("--window-scale", type=float, default=1.0, help="multiply every window")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, configs)")
    args = parser.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s] or list(ORDER)
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    sizes = _sizes(args)
    work = Path(tempfile.mkdtemp(prefix="bench-"))
    started, began = report.now(), time.monotonic()
    code_before = report.code_digest()
    sections: list[Section] = []
    try:
        ctx = Context(work, sizes)
        for name in [s for s in ORDER if s in chosen]:
            t = time.monotonic()
            print(f"bench: {name} ...", file=sys.stderr, flush=True)
            done = run(name, SCENARIOS[name], ctx)
            sections += done
            for s in done:
                status = (
                    f"error: {s.error}"
                    if s.error
                    else ", ".join(
                        f"{c.target}: {c.measured} ({'PASS' if c.passed else 'MISS'})"
                        for c in s.checks
                    )
                )
                print(f"bench:   {s.key} ({time.monotonic() - t:.0f} s) {status}", file=sys.stderr)
    finally:
        if args.keep:
            print(f"bench: work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    changed = report.code_digest() != code_before
    if changed:
        print("bench: monitor/ changed during the run; the report says so", file=sys.stderr)
    text = report.render(
        sections, sizes, args.quick, started, time.monotonic() - began, code_changed=changed
    )
    report.write(args.out, text)
    print(f"bench: wrote {args.out}", file=sys.stderr)
    return 1 if any(s.error for s in sections) else 0


if __name__ == "__main__":
    sys.exit(main())

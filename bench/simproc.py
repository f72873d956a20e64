"""The simulator in its own process, with the two settings `monitor simulate` has no flags for.

`python -m bench.simproc --port P --record-ids --log-limit N [simulate options]` runs the
project's own simulator (monitor.simulator.Simulator) exactly as `monitor simulate` does, but
keeps the event IDs of every request in its log (for per-event poll gaps) and takes a log limit.
Everywhere else the benchmarks start `python -m monitor simulate`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from monitor.simulator.app import Simulator, add_arguments


async def _serve(args: argparse.Namespace) -> None:
    faults = [fault for group in args.faults for fault in group]
    sim = Simulator(
        seed=args.seed,
        api_key=args.api_key,
        evolve=args.evolve,
        change_seconds=args.change_seconds,
        rate_limit=args.rate_limit,
        quota=args.quota,
        faults=faults,
        record_ids=args.record_ids,
        log_limit=args.log_limit,
        max_url_bytes=args.max_url_bytes or None,
    )
    url = await sim.start(args.host, args.port)
    try:
        print(f"simulator listening on {url}", flush=True)
        await asyncio.Event().wait()
    finally:
        await sim.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.simproc")
    add_arguments(parser)
    parser.add_argument("--record-ids", action="store_true", help="keep IDs in the request log")
    parser.add_argument("--log-limit", type=int, default=100_000, help="records kept in the log")
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()

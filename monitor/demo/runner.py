"""The demo: simulator and daemon in one process, transitions printed as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TextIO

from monitor.clock import utc_datetime
from monitor.config import Config, parse_config
from monitor.domain import Transition

_ARROW = "->"


def demo_config_text() -> str:
    """The shipped demo config."""
    return resources.files("monitor.demo").joinpath("demo.yaml").read_text(encoding="utf-8")


def load_demo_config(upstream_url: str, state_path: str, port: int) -> Config:
    """The demo config pointed at a running simulator, a state file and a port."""
    config = parse_config(demo_config_text(), source="demo.yaml", env={})
    return config.model_copy(
        update={
            "upstream": config.upstream.model_copy(update={"base_url": upstream_url}),
            "state": config.state.model_copy(update={"path": state_path}),
            "server": config.server.model_copy(update={"listen": f"127.0.0.1:{port}"}),
        }
    )


class ConsolePrinter:
    """A notifier that prints each transition on one readable line."""

    def __init__(self, out: TextIO) -> None:
        self._out = out

    async def notify(self, transitions: Sequence[Transition]) -> None:
        """Print the transitions."""
        for t in transitions:
            when = utc_datetime(t.observed_at).strftime("%H:%M:%S")
            self._out.write(
                f"{when}  #{t.sequence:<4} {t.event_id:<16} {','.join(t.watch_sets):<20} "
                f"{t.field:<13} {t.previous} {_ARROW} {t.current}\n"
            )
        self._out.flush()


async def _maintenance_reporter(daemon: object, out: TextIO) -> None:
    from monitor.app import Daemon

    assert isinstance(daemon, Daemon)
    shown: set[int] = set()
    names = {v.id: (v.name or v.id) for v in daemon.config.venues}
    while True:
        catalog = daemon.catalog
        flags = daemon.maintenance.flags()
        now = {i for i, f in enumerate(flags) if f}
        for idx in sorted(now - shown):
            zone = catalog.zones[idx]
            venues = sorted(
                {
                    names.get(e.venue or "", e.venue or "")
                    for e in catalog.events.values()
                    if e.zone == idx
                }
            )
            skipped = sum(1 for e in catalog.events.values() if e.zone == idx)
            local = utc_datetime(time.time()).astimezone(zone.tz).strftime("%H:%M")
            out.write(
                f"          maintenance: skipping {skipped} event(s) at {', '.join(venues)} "
                f"({zone.name}, {local} local, window {zone.window})\n"
            )
        for idx in sorted(shown - now):
            out.write(f"          maintenance over in {catalog.zones[idx].name}: polling again\n")
        shown = now
        out.flush()
        await asyncio.sleep(5)


async def _demo(
    duration: float | None, port: int, out: TextIO, change_seconds: float = 45.0
) -> None:
    from monitor.app import Daemon
    from monitor.simulator.app import Simulator

    with tempfile.TemporaryDirectory(prefix="availability-monitor-demo-") as tmp:
        events = parse_config(demo_config_text(), source="demo.yaml", env={})
        known = {e.id for ws in events.watch_sets for e in ws.events}
        async with Simulator(
            seed=7, change_seconds=change_seconds, known_events=known, rate_limit=(5, 1.0)
        ) as sim:
            config = load_demo_config(sim.url, str(Path(tmp) / "demo.db"), port)
            daemon = Daemon(config, notifiers=[ConsolePrinter(out)])
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await daemon.start()
            out.write(
                f"availability-monitor demo: {len(daemon.catalog.events)} events in "
                f"{len(daemon.catalog.sets)} watch sets, upstream simulator at {sim.url}\n"
                f"  metrics      {daemon.url}/metrics\n"
                f"  transitions  {daemon.url}/v1/transitions\n"
                f"  an event     {daemon.url}/v1/events/DEMO0001AMEVENT\n"
                "The first poll of each event is its baseline; transitions follow as the "
                "simulated statuses change. Ctrl-C stops.\n\n"
            )
            out.flush()
            reporter = asyncio.create_task(_maintenance_reporter(daemon, out))
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration)
            finally:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
                await daemon.stop()
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            out.write("\ndemo stopped\n")


def run_demo(
    *,
    duration: float | None = None,
    port: int = 9108,
    log_format: str = "console",
    change_seconds: float = 45.0,
) -> int:
    """Run the demo until Ctrl-C or `duration` seconds; returns an exit code."""
    from monitor.logs import configure_logging

    configure_logging(log_format, "warning")
    try:
        asyncio.run(_demo(duration, port, sys.stdout, change_seconds))
    except OSError as exc:
        print(f"error: {exc} (is port {port} taken? try --port 0)", file=sys.stderr)
        return 1
    return 0

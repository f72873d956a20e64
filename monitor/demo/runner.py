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
from monitor.config.models import Notifications
from monitor.demo.receiver import Received, Receiver
from monitor.domain import Transition
from monitor.notify.signing import new_secret

_ARROW = "->"


def demo_config_text() -> str:
    """The shipped demo config."""
    return resources.files("monitor.demo").joinpath("demo.yaml").read_text(encoding="utf-8")


def load_demo_config(
    upstream_url: str, state_path: str, port: int, receiver_url: str = "", secret: str = ""
) -> Config:
    """The demo config pointed at a running simulator, a state file, a port and a receiver.

    With a receiver, two subscriptions are added: `desk` gets every transition as Standard
    Webhooks JSON; `flaky` (CloudEvents) gets sell-out news and fails for a while at first.
    """
    config = parse_config(demo_config_text(), source="demo.yaml", env={})
    update: dict[str, object] = {
        "upstream": config.upstream.model_copy(update={"base_url": upstream_url}),
        "state": config.state.model_copy(update={"path": state_path}),
        "server": config.server.model_copy(update={"listen": f"127.0.0.1:{port}"}),
    }
    if receiver_url:
        notifications = Notifications.model_validate(
            {
                "retry_schedule": [0, 3, 6, 10, 30, 60, 300],
                "webhooks": [
                    {"name": "desk", "url": f"{receiver_url}/desk", "secret": secret},
                    {
                        "name": "flaky",
                        "url": f"{receiver_url}/flaky",
                        "secret": secret,
                        "format": "cloudevents",
                        "filter": {
                            "fields": ["status"],
                            "to": ["FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE"],
                        },
                    },
                ],
            }
        )
        update["notifications"] = notifications
    return config.model_copy(update=update)


class DeliveryPrinter:
    """Answers the demo's webhooks: `flaky` fails for its first seconds, so retries show."""

    def __init__(self, out: TextIO, flaky_seconds: float) -> None:
        self._out = out
        self._until = time.monotonic() + flaky_seconds

    def __call__(self, rec: Received) -> int:
        status = 200
        if rec.path == "/flaky" and time.monotonic() < self._until:
            status = 503
        t = rec.transition
        check = "signature ok" if rec.verified else "SIGNATURE INVALID"
        self._out.write(
            f"          webhook {rec.path[1:]:<6} {rec.msg_id:<16} attempt {rec.attempt}  "
            f"{status}  {check}  ({t['event_id']} {t['previous']} {_ARROW} {t['current']})\n"
        )
        self._out.flush()
        return status


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
    duration: float | None,
    port: int,
    out: TextIO,
    change_seconds: float = 45.0,
    flaky_seconds: float = 20.0,
) -> None:
    from monitor.app import Daemon
    from monitor.simulator.app import Simulator

    with tempfile.TemporaryDirectory(prefix="availability-monitor-demo-") as tmp:
        events = parse_config(demo_config_text(), source="demo.yaml", env={})
        known = {e.id for ws in events.watch_sets for e in ws.events}
        async with Simulator(
            seed=7, change_seconds=change_seconds, known_events=known, rate_limit=(5, 1.0)
        ) as sim:
            secret = new_secret()
            receiver = Receiver(respond=DeliveryPrinter(out, flaky_seconds))
            receiver.secrets = {"/desk": secret, "/flaky": secret}
            await receiver.start()
            config = load_demo_config(
                sim.url, str(Path(tmp) / "demo.db"), port, receiver.url, secret.reveal()
            )
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
                f"  webhooks     {receiver.url}/desk (every transition), {receiver.url}/flaky "
                f"(sell-outs; fails for its first {flaky_seconds:g} s, so retries show)\n"
                "The first poll of each event is its baseline; transitions follow as the "
                "simulated statuses change, each delivered to the local receiver, which "
                "checks its signature. Ctrl-C stops.\n\n"
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
                await receiver.stop()
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

    # The demo prints its own lines; only errors from the logs would add anything.
    configure_logging(log_format, "error")
    try:
        asyncio.run(_demo(duration, port, sys.stdout, change_seconds))
    except OSError as exc:
        print(f"error: {exc} (is port {port} taken? try --port 0)", file=sys.stderr)
        return 1
    return 0

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
from typing import TYPE_CHECKING, TextIO

from monitor.clock import utc_datetime
from monitor.config import Config, parse_config
from monitor.config.models import Action, Marketplace, Notifications
from monitor.demo.receiver import Received, Receiver
from monitor.domain import Transition

if TYPE_CHECKING:
    from monitor.app import Daemon
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


async def _reporter(daemon: Daemon, out: TextIO) -> None:
    """Prints what the daemon learns in the background: resolved time zones, maintenance
    skips (and why), and marketplace actions as they complete."""
    shown_zones: set[int] = set()
    resolved: set[str] = set()
    actions_seen: set[str] = set()
    while True:
        catalog = daemon.catalog
        info = daemon.eventinfo
        fresh = [e for e, k in info.known.items() if e not in resolved]
        for eid in sorted(fresh):
            resolved.add(eid)
            d = info.details(eid)
            if d is None:
                out.write(f"          partner API: {eid} unknown (404): polled at all hours\n")
            elif d.time_zone:
                out.write(f"          partner API: {eid} plays {d.venue_name} ({d.time_zone})\n")
        flags = daemon.maintenance.flags()
        now = {i for i, f in enumerate(flags) if f}
        for idx in sorted(now - shown_zones):
            zone = catalog.zones[idx]
            events = [e for e in catalog.events.values() if e.zone == idx]
            venues = sorted(
                {
                    (d.venue_name or "?")
                    for e in events
                    if (d := info.details(e.event_id)) is not None
                }
            )
            local = utc_datetime(time.time()).astimezone(zone.tz).strftime("%H:%M")
            out.write(
                f"          maintenance: skipping {len(events)} event(s) at {', '.join(venues)}: "
                f"it is {local} in {zone.name}, inside the nightly window {zone.window}\n"
            )
        for idx in sorted(shown_zones - now):
            out.write(f"          maintenance over in {catalog.zones[idx].name}: polling again\n")
        shown_zones = now
        for act in reversed(await daemon.store.recent_deliveries("action:", 20)):
            if act.state != "done" or act.id in actions_seen:
                continue
            actions_seen.add(act.id)
            result = act.result or {}
            out.write(
                f"          action {act.subscription.removeprefix('action:')}: "
                f"{act.transition.event_id} {act.transition.current} -> PATCH "
                f"{len(result.get('updated', []))} listing(s) {result.get('outcome')} "
                f"(price now {DEMO_PRICE})\n"
            )
        out.flush()
        await asyncio.sleep(1)


DEMO_PRICE = "150.00"


def _demo_actions(events: list[str], marketplace_url: str) -> tuple[Marketplace, list[Action]]:
    """The demo's marketplace and its one rule: a sell-out reprices the event's listings."""
    listings = {eid: [900_000 + 10 * i, 900_001 + 10 * i] for i, eid in enumerate(events)}
    market = Marketplace.model_validate(
        {"base_url": marketplace_url, "api_token": "demo-marketplace-token"}
    )
    rule = Action.model_validate(
        {
            "name": "reprice-on-sellout",
            "when": {"field": "status", "to": ["TICKETS_NOT_AVAILABLE"]},
            "listings": listings,
            "update": {"price": DEMO_PRICE, "internal_notes": "primary sold out"},
        }
    )
    return market, [rule]


async def _demo(
    duration: float | None,
    port: int,
    out: TextIO,
    change_seconds: float = 45.0,
    flaky_seconds: float = 20.0,
) -> None:
    from monitor.app import Daemon
    from monitor.simulator.app import Simulator
    from monitor.simulator.marketplace import MarketplaceSim
    from monitor.simulator.partner import VENUES

    with tempfile.TemporaryDirectory(prefix="availability-monitor-demo-") as tmp:
        base = parse_config(demo_config_text(), source="demo.yaml", env={})
        events = sorted({e.id for ws in base.watch_sets for e in ws.events})
        known = set(events)
        sim = Simulator(
            seed=7, change_seconds=change_seconds, known_events=known, rate_limit=(5, 1.0)
        )
        market = MarketplaceSim()
        market.add_routes(sim.app())
        await sim.start()
        for i, eid in enumerate(e for e in events if "NOZONE" not in e):
            sim.partner.set_event(eid, venue=VENUES[i % 24])
        for eid in events:
            if "NOZONE" in eid:
                sim.partner.set_event(eid, found=False)
        with_listings = [e for e in events if "NOZONE" not in e]
        for i in range(len(with_listings)):
            market.seed_listings([900_000 + 10 * i, 900_001 + 10 * i], price="95.00")
        secret = new_secret()
        receiver = Receiver(respond=DeliveryPrinter(out, flaky_seconds))
        receiver.secrets = {"/desk": secret, "/flaky": secret}
        await receiver.start()
        config = load_demo_config(
            sim.url, str(Path(tmp) / "demo.db"), port, receiver.url, secret.reveal()
        )
        marketplace, actions = _demo_actions(with_listings, sim.url)
        config = config.model_copy(
            update={
                "partner": config.partner.model_copy(update={"base_url": sim.partner_url})
                if config.partner
                else None,
                "marketplace": marketplace,
                "actions": actions,
            }
        )
        daemon = Daemon(config, notifiers=[ConsolePrinter(out)])
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await daemon.start()
            out.write(
                f"availability-monitor demo: {len(daemon.catalog.events)} events in "
                f"{len(daemon.catalog.sets)} watch sets, upstream simulator at {sim.url}\n"
                f"  metrics      {daemon.url}/metrics\n"
                f"  transitions  {daemon.url}/v1/transitions\n"
                f"  an event     {daemon.url}/v1/events/DEMO0001AMEVENT\n"
                f"  actions      {daemon.url}/v1/actions\n"
                f"  webhooks     {receiver.url}/desk (every transition), {receiver.url}/flaky "
                f"(sell-outs; fails for its first {flaky_seconds:g} s, so retries show)\n"
                "The events have no time zone in the config: the daemon looks each one up in "
                "the (simulated) Partner API and skips those whose venue is in its nightly "
                "maintenance window. The first poll of each event is its baseline; transitions "
                "follow as the simulated statuses change, each delivered to the local receiver, "
                "which checks its signature. A sell-out reprices the event's marketplace "
                "listings. Ctrl-C stops.\n\n"
            )
            out.flush()
            reporter = asyncio.create_task(_reporter(daemon, out))
            try:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), duration)
            finally:
                reporter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter
        finally:
            await daemon.stop()
            await receiver.stop()
            await sim.stop()
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

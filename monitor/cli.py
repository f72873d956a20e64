"""The command line: run, check-config, demo, simulate. Exit codes: 0 ok, 2 usage, 1 other."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

from monitor import __version__
from monitor.config import Config, ConfigError, load_config
from monitor.config.base import KeyedApi
from monitor.config.catalog import build_catalog
from monitor.config.preflight import preflight

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every command."""
    parser = _Parser(prog="availability-monitor", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run the daemon until SIGTERM/SIGINT")
    run.add_argument("--config", help="config file (default: $MONITOR_CONFIG)")
    run.add_argument("--log-format", choices=["auto", "json", "console"])
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"])

    check = sub.add_parser("check-config", help="validate a config file and summarise it")
    check.add_argument("--config", help="config file (default: $MONITOR_CONFIG)")

    demo = sub.add_parser("demo", help="simulator, daemon and webhook receiver in one process")
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--port", type=int, default=9108, help="daemon HTTP port (0: any free)")
    demo.add_argument("--log-format", choices=["auto", "json", "console"], default="console")
    demo.add_argument(
        "--change-seconds",
        type=float,
        default=45.0,
        help="how often, on average, a simulated event's status may change",
    )

    from monitor.simulator.app import add_arguments

    sim = sub.add_parser("simulate", help="run the upstream simulator alone")
    add_arguments(sim)
    return parser


def _config_path(arg: str | None) -> str | None:
    return arg or os.environ.get("MONITOR_CONFIG")


def _load(path: str | None) -> Config | int:
    """The config `run` would start with, after the same start-up checks; or the exit code."""
    if not path:
        print("error: no config file: give --config FILE or set MONITOR_CONFIG", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(path)
        problems = preflight(config)
        if problems:
            raise ConfigError(problems, path)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_USAGE
    return config


def summarize(config: Config) -> str:
    """A one-screen summary of a valid config."""
    catalog = build_catalog(config)
    up = config.upstream
    rl = up.rate_limit
    lines = [
        "config OK",
        f"  upstream      {up.base_url} ({up.method}, batches of {up.batch_size}, "
        f"{rl.requests} requests per {rl.per_seconds:g} s)",
        f"  maintenance   {config.maintenance.start:%H:%M}-{config.maintenance.end:%H:%M} "
        "venue-local by default",
        f"  venues        {len(config.venues)}",
        f"  events        {len(catalog.events)} unique in {len(catalog.sets)} watch sets",
    ]
    for spec in catalog.sets.values():
        no_tz = catalog.without_time_zone(spec.event_ids)
        extra = f", {no_tz} without time zone" if no_tz else ""
        every = f"every {spec.interval_seconds:g} s"
        if spec.interval_seconds != spec.configured_interval:
            every = f"every {spec.interval_seconds:.0f} s (configured {spec.configured_interval:g})"
        if spec.status_intervals:
            every += (
                " ("
                + ", ".join(f"{k} {v:g} s" for k, v in sorted(spec.status_intervals.items()))
                + ")"
            )
        lines.append(
            f"    {spec.name:<20} {every}, {len(spec.event_ids)} events, "
            f"confirm_after {spec.confirm_after}{', tracks UNKNOWN' if spec.track_unknown else ''}"
            f"{extra}"
        )
    plan = catalog.plan
    if plan is not None:
        line = f"  calls/day     {plan.needed_per_day:,.0f} needed"
        if plan.quota is not None:
            line += f", quota {plan.quota:,}"
            if plan.stretched:
                line += (
                    f": intervals of {', '.join(plan.stretched)} stretched to "
                    f"{plan.planned_per_day:,.0f} calls/day"
                )
                if not plan.fits:
                    line += " (STILL OVER: every set at once a day)"
        lines.append(line)
    n = config.notifications
    lines.extend(
        f"  webhook       {hook.name}: {hook.url} ({hook.format}, "
        f"{len(hook.all_secrets())} secret(s))"
        for hook in n.webhooks
    )
    if n.alertmanager is not None:
        lines.append(
            f"  alertmanager  {n.alertmanager.url} while status in "
            f"{', '.join(n.alertmanager.alert_on)}"
        )
    lines.extend(
        f"  WARNING       {name}.base_url is plain http (allow_insecure_http): its key is "
        "sent in the clear"
        for name, section in _keyed_sections(config)
        if section.sends_key_in_clear()
    )
    lines.append(f"  state         {config.state.backend} {config.state.path}")
    lines.append(
        f"  server        {config.server.listen}"
        f"{' (admin token set)' if config.server.admin_token else ''}"
    )
    return "\n".join(lines)


def _keyed_sections(config: Config) -> list[tuple[str, KeyedApi]]:
    sections: list[tuple[str, KeyedApi | None]] = [
        ("upstream", config.upstream),
        ("partner", config.partner),
        ("marketplace", config.marketplace),
    ]
    return [(name, section) for name, section in sections if section is not None]


def _run(args: argparse.Namespace) -> int:
    from monitor.allocator import map_large_blocks
    from monitor.app import Daemon
    from monitor.logs import configure_logging

    map_large_blocks()  # before the events file: its buffers are the first large blocks freed
    path = _config_path(args.config)
    loaded = _load(path)
    if isinstance(loaded, int):
        return loaded
    configure_logging(args.log_format or loaded.log.format, args.log_level or loaded.log.level)
    daemon = Daemon(loaded, config_path=path)
    try:
        asyncio.run(daemon.run_forever())
    except (OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check-config":
            loaded = _load(_config_path(args.config))
            if isinstance(loaded, int):
                return loaded
            print(summarize(loaded))
            return EXIT_OK
        if args.command == "run":
            return _run(args)
        if args.command == "demo":
            from monitor.demo import run_demo

            return run_demo(
                duration=args.duration,
                port=args.port,
                log_format=args.log_format,
                change_seconds=args.change_seconds,
            )
        if args.command == "simulate":
            from monitor.simulator.app import serve_from_args

            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(serve_from_args(args))
            return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_USAGE

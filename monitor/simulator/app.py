"""The simulator as a server: an aiohttp application with the simulated APIs and `/_sim/` control
endpoints, an in-process handle for tests and benchmarks, and the `simulate` command."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self

import orjson
from aiohttp import web

from monitor.clock import Clock, SystemClock
from monitor.simulator.faults import Fault, FaultPlan, parse_faults
from monitor.simulator.inventory import (
    MAX_URL_BYTES,
    InventoryAPI,
    Quota,
    RequestLog,
    SpikeArrest,
)
from monitor.simulator.partner import (
    DEFAULT_TOKEN_SECONDS,
    PREFIX,
    SANDBOX_PREFIX,
    VENUES,
    PartnerSim,
    epoch,
    venue_by_id,
)
from monitor.simulator.world import World

MAX_LINE: Final = 64 * 1024
"""Longest request line and header field the server takes. aiohttp's default of 8190 bytes is
too short for a 1000-ID GET: 1000 IDs of 16 characters make a ~17 KB query string."""

_SHUTDOWN_TIMEOUT: Final = 1.0
_CLI_LOG_LIMIT: Final = 100_000

_PARTNER_FIELD_TYPES: Final = (
    ("found", bool),
    ("api_transactable", bool),
    ("name", str),
    ("time_zone", str),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(data), content_type="application/json", charset="utf-8"
    )


def _problem(message: str) -> web.Response:
    return _json({"error": message}, status=400)


async def _read_json(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"body is not valid JSON: {exc}") from None


def _guarded(handler: Handler) -> Handler:
    """Answer a ValueError from a control handler as 400 with its message."""

    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ValueError as exc:
            return _problem(str(exc))

    return wrapper


def _pair(value: Any, first: str, second: str) -> tuple[Any, Any] | None:
    """A limit setting from JSON: null, [a, b], or {first: a, second: b}."""
    if value is None:
        return None
    if isinstance(value, list | tuple) and len(value) == 2:
        return value[0], value[1]
    if isinstance(value, Mapping) and set(value) == {first, second}:
        return value[first], value[second]
    raise ValueError(f'expected null or {{"{first}": ..., "{second}": ...}}, got {value!r}')


class Simulator:
    """The simulated upstream, in process: `async with Simulator(seed=1) as sim: sim.url`.

    `world` (statuses and scripts), `faults` (the fault plan) and `log` (the request log) can
    be changed while it runs, from Python or through the `/_sim/` control endpoints. Wall
    time for statuses, quota periods and token lifetimes comes from `clock`; request arrival
    times `t` in the log and the spike-arrest windows use the real monotonic clock.

    The Partner API (`partner`, a PartnerSim) is served under `/partners/v1` and
    `/partners-sandbox/v1` (`partner_url`); it accepts any non-empty API key and client secret
    unless `partner_api_key` / `partner_client_secret` are given, issues tokens that live
    `token_seconds`, and may have its own spike arrest (`partner_rate_limit`).

    Like many API gateways, the Inventory Status endpoint refuses a request target (path and
    query string) longer than `max_url_bytes` (default 8192; None: no limit) with 414.
    """

    def __init__(
        self,
        *,
        seed: int = 0,
        api_key: str | None = None,
        evolve: bool = True,
        change_seconds: float = 60.0,
        known_events: Iterable[str] | None = None,
        rate_limit: tuple[int, float] | None = None,
        quota: tuple[int, float] | None = None,
        faults: Iterable[Fault | Mapping[str, Any]] = (),
        record_ids: bool = False,
        clock: Clock | None = None,
        log_limit: int | None = None,
        partner_api_key: str | None = None,
        partner_client_secret: str | None = None,
        token_seconds: float = DEFAULT_TOKEN_SECONDS,
        partner_rate_limit: tuple[int, float] | None = None,
        max_url_bytes: int | None = MAX_URL_BYTES,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.world = World(
            seed, evolve=evolve, change_seconds=change_seconds, known_events=known_events
        )
        self.faults = FaultPlan(faults, seed=seed)
        self.log = RequestLog(log_limit)
        self.inventory = InventoryAPI(
            world=self.world,
            faults=self.faults,
            log=self.log,
            clock=self.clock,
            api_key=api_key,
            record_ids=record_ids,
            max_url_bytes=max_url_bytes,
        )
        self.partner = PartnerSim(
            world=self.world,
            faults=self.faults,
            log=self.log,
            clock=self.clock,
            api_key=partner_api_key,
            client_secret=partner_client_secret,
            token_seconds=token_seconds,
            record_ids=record_ids,
            spike_arrest=None if partner_rate_limit is None else SpikeArrest(*partner_rate_limit),
        )
        self.set_rate_limit(rate_limit)
        self.set_quota(quota)
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._url: str | None = None

    # -- settings ----------------------------------------------------------------------------

    @property
    def rate_limit(self) -> tuple[int, float] | None:
        """The spike-arrest setting (requests, per_seconds), or None."""
        spike = self.inventory.spike_arrest
        return None if spike is None else (spike.requests, spike.per_seconds)

    def set_rate_limit(self, rate_limit: tuple[int, float] | None) -> None:
        """Turn spike arrest on with (requests, per_seconds), or off with None."""
        self.inventory.spike_arrest = None if rate_limit is None else SpikeArrest(*rate_limit)

    @property
    def quota(self) -> tuple[int, float] | None:
        """The quota setting (calls, period_seconds), or None."""
        quota = self.inventory.quota
        return None if quota is None else (quota.calls, quota.period_seconds)

    def set_quota(self, quota: tuple[int, float] | None) -> None:
        """Turn the quota on with (calls, period_seconds), counting afresh, or off with None."""
        self.inventory.quota = None if quota is None else Quota(*quota)

    # -- serving -----------------------------------------------------------------------------

    def app(self) -> web.Application:
        """The application (made once): add routes for other simulated APIs before `start()`."""
        if self._app is None:
            # The parser takes longer lines than the URL limit, so that the limit is answered
            # with a gateway's 414, not the parser's 400.
            line = max(MAX_LINE, (self.inventory.max_url_bytes or 0) + 1024)
            app = web.Application(handler_args={"max_line_size": line, "max_field_size": line})
            self.inventory.add_routes(app)
            self.partner.add_routes(app, PREFIX)
            self.partner.add_routes(app, SANDBOX_PREFIX)
            self._add_control_routes(app)
            self._app = app
        return self._app

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:54321`, once started."""
        if self._url is None:
            raise RuntimeError("the simulator is not running")
        return self._url

    @property
    def partner_url(self) -> str:
        """The Partner API's base URL, e.g. `http://127.0.0.1:54321/partners/v1`, once started."""
        return self.url + PREFIX

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on host:port (0 = a free port); returns the base URL."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already running")
        self.inventory.open()
        self.partner.open()
        # handler_cancellation: a client that gives up (e.g. on a timeout fault) cancels its
        # handler instead of leaving it sleeping until shutdown.
        runner = web.AppRunner(
            self.app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        shown = f"[{host}]" if ":" in host else host
        self._url = f"http://{shown}:{site.port}"
        return self._url

    async def stop(self) -> None:
        """Stop serving; requests held by latency or timeout faults end at once."""
        runner, self._runner, self._url = self._runner, None, None
        if runner is None:
            return
        self.inventory.release()
        self.partner.release()
        await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- control endpoints -------------------------------------------------------------------

    def _add_control_routes(self, app: web.Application) -> None:
        routes = (
            ("GET", "/_sim/requests", self._get_requests),
            ("DELETE", "/_sim/requests", self._delete_requests),
            ("GET", "/_sim/faults", self._get_faults),
            ("POST", "/_sim/faults", self._post_faults),
            ("DELETE", "/_sim/faults", self._delete_faults),
            ("GET", "/_sim/events", self._get_events),
            ("POST", "/_sim/events", self._post_events),
            ("DELETE", "/_sim/events", self._delete_events),
            ("GET", "/_sim/rate-limit", self._get_rate_limit),
            ("POST", "/_sim/rate-limit", self._post_rate_limit),
            ("GET", "/_sim/quota", self._get_quota),
            ("POST", "/_sim/quota", self._post_quota),
            ("GET", "/_sim/partner/events", self._get_partner_events),
            ("POST", "/_sim/partner/events", self._post_partner_events),
            ("DELETE", "/_sim/partner/events", self._delete_partner_events),
            ("GET", "/_sim/partner/tokens", self._get_partner_tokens),
            ("DELETE", "/_sim/partner/tokens", self._delete_partner_tokens),
            ("GET", "/_sim/partner/venues", self._get_partner_venues),
        )
        for method, path, handler in routes:
            app.router.add_route(method, path, _guarded(handler))

    async def _get_requests(self, request: web.Request) -> web.StreamResponse:
        return _json([record.to_json() for record in self.log])

    async def _delete_requests(self, request: web.Request) -> web.StreamResponse:
        cleared = len(self.log)
        self.log.clear()
        return _json({"cleared": cleared})

    async def _get_faults(self, request: web.Request) -> web.StreamResponse:
        return _json([fault.to_json() for fault in self.faults.active()])

    async def _post_faults(self, request: web.Request) -> web.StreamResponse:
        added = parse_faults(await _read_json(request))
        for fault in added:
            self.faults.add(fault)
        return _json([fault.to_json() for fault in added])

    async def _delete_faults(self, request: web.Request) -> web.StreamResponse:
        cleared = len(self.faults)
        self.faults.clear()
        return _json({"cleared": cleared})

    async def _get_events(self, request: web.Request) -> web.StreamResponse:
        scripted = self.world.scripted
        return _json({k: {"status": s, "resaleStatus": r} for k, (s, r) in scripted.items()})

    async def _post_events(self, request: web.Request) -> web.StreamResponse:
        body = await _read_json(request)
        if not isinstance(body, dict):
            raise ValueError('expected {"EVENT_ID": {"status": ..., "resaleStatus": ...}, ...}')
        scripts: list[tuple[str, Any, Any]] = []
        for event_id, fields in body.items():
            allowed = {"status", "resaleStatus", "resale_status"}
            if not isinstance(fields, dict) or not set(fields) <= allowed:
                raise ValueError(
                    f"event {event_id!r}: expected an object with status and/or resaleStatus"
                )
            resale = fields.get("resaleStatus", fields.get("resale_status"))
            scripts.append((event_id, fields.get("status"), resale))
        for event_id, status, resale in scripts:
            if status is not None and (not isinstance(status, str) or not status):
                raise ValueError(f"event {event_id!r}: status must be a non-empty string")
            if resale is not None and (not isinstance(resale, str) or not resale):
                raise ValueError(f"event {event_id!r}: resaleStatus must be a non-empty string")
        for event_id, status, resale in scripts:
            self.world.set_status(event_id, status=status, resale_status=resale)
        return _json({"scripted": len(scripts)})

    async def _delete_events(self, request: web.Request) -> web.StreamResponse:
        self.world.clear_scripted()
        return _json({"cleared": True})

    async def _get_rate_limit(self, request: web.Request) -> web.StreamResponse:
        spike = self.inventory.spike_arrest
        return _json(None if spike is None else spike.to_json())

    async def _post_rate_limit(self, request: web.Request) -> web.StreamResponse:
        self.set_rate_limit(_pair(await _read_json(request), "requests", "per_seconds"))
        return await self._get_rate_limit(request)

    async def _get_quota(self, request: web.Request) -> web.StreamResponse:
        quota = self.inventory.quota
        return _json(None if quota is None else quota.to_json())

    async def _post_quota(self, request: web.Request) -> web.StreamResponse:
        self.set_quota(_pair(await _read_json(request), "calls", "period_seconds"))
        return await self._get_quota(request)

    async def _get_partner_events(self, request: web.Request) -> web.StreamResponse:
        return _json({k: v.to_json() for k, v in self.partner.scripted.items()})

    async def _post_partner_events(self, request: web.Request) -> web.StreamResponse:
        body = await _read_json(request)
        if not isinstance(body, dict):
            raise ValueError('expected {"EVENT_ID": {"time_zone": ..., "event_date": ...}, ...}')
        allowed = {
            "found",
            "name",
            "venue",
            "time_zone",
            "event_date",
            "offsale",
            "api_transactable",
        }
        for event_id, fields in body.items():
            if not isinstance(fields, dict) or not set(fields) <= allowed:
                raise ValueError(f"event {event_id!r}: expected an object with {sorted(allowed)}")
            for name, kind in _PARTNER_FIELD_TYPES:
                value = fields.get(name)
                if value is not None and not isinstance(value, kind):
                    raise ValueError(f"event {event_id!r}: {name} must be a {kind.__name__}")
            if fields.get("venue") is not None:
                venue_by_id(fields["venue"])
            for name in ("event_date", "offsale"):
                if fields.get(name) is not None:
                    epoch(fields[name])
        scripts = {
            event_id: self.partner.set_event(event_id, **fields).to_json()
            for event_id, fields in body.items()
        }
        return _json(scripts)

    async def _delete_partner_events(self, request: web.Request) -> web.StreamResponse:
        self.partner.clear_events()
        return _json({"cleared": True})

    async def _get_partner_tokens(self, request: web.Request) -> web.StreamResponse:
        partner = self.partner
        return _json(
            {
                "token_seconds": partner.token_seconds,
                "token_requests": partner.token_requests,
                "tokens_issued": partner.tokens_issued,
                "active": partner.active_tokens(),
                "details_requests": partner.details_requests,
            }
        )

    async def _delete_partner_tokens(self, request: web.Request) -> web.StreamResponse:
        return _json({"revoked": self.partner.revoke_tokens()})

    async def _get_partner_venues(self, request: web.Request) -> web.StreamResponse:
        return _json(
            [{"id": v.id, "name": v.name, "city": v.city, "time_zone": v.time_zone} for v in VENUES]
        )


# -- command line -----------------------------------------------------------------------------


def _ratio(text: str) -> tuple[int, float]:
    """`5/1` → (5, 1.0): so many per so many seconds."""
    try:
        count, _, seconds = text.partition("/")
        pair = (int(count), float(seconds or "1"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N/SECONDS, e.g. 5/1, got {text!r}") from None
    if pair[0] < 1 or pair[1] <= 0:
        raise argparse.ArgumentTypeError(f"expected positive N/SECONDS, got {text!r}")
    return pair


def _fault_arg(text: str) -> list[Fault]:
    try:
        return parse_faults(json.loads(text))
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--fault is not valid JSON: {exc}") from None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--fault: {exc}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `availability-monitor simulate`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 = any free)")
    parser.add_argument("--seed", type=int, default=0, help="seed for statuses and faults")
    parser.add_argument("--api-key", default=None, help="the only key accepted (default: any)")
    parser.add_argument(
        "--no-evolve", dest="evolve", action="store_false", help="keep statuses fixed"
    )
    parser.add_argument(
        "--change-seconds", type=float, default=60.0, help="mean seconds between status draws"
    )
    parser.add_argument(
        "--rate-limit", type=_ratio, default=None, metavar="N/S", help="spike arrest, e.g. 5/1"
    )
    parser.add_argument(
        "--quota", type=_ratio, default=None, metavar="N/S", help="quota, e.g. 5000/86400"
    )
    parser.add_argument(
        "--fault",
        dest="faults",
        type=_fault_arg,
        action="append",
        default=[],
        metavar="JSON",
        help='a fault (or a list), e.g. \'{"kind": "error", "count": 3}\'; repeatable',
    )
    parser.add_argument(
        "--max-url-bytes",
        type=int,
        default=MAX_URL_BYTES,
        metavar="BYTES",
        help=f"longest request target answered (414 beyond; default {MAX_URL_BYTES}; 0: no limit)",
    )
    parser.add_argument(
        "--partner-api-key", default=None, help="the only Partner API key accepted (default: any)"
    )
    parser.add_argument(
        "--partner-client-secret",
        default=None,
        help="the only Partner API client secret accepted (default: any)",
    )
    parser.add_argument(
        "--token-seconds",
        type=float,
        default=DEFAULT_TOKEN_SECONDS,
        help="lifetime of Partner API tokens",
    )
    parser.add_argument(
        "--partner-rate-limit",
        type=_ratio,
        default=None,
        metavar="N/S",
        help="Partner API spike arrest, e.g. 10/1",
    )


async def serve_from_args(args: argparse.Namespace) -> None:
    """Run the simulator from parsed `simulate` options until cancelled."""
    faults = [fault for group in args.faults for fault in group]
    sim = Simulator(
        seed=args.seed,
        api_key=args.api_key,
        evolve=args.evolve,
        change_seconds=args.change_seconds,
        rate_limit=args.rate_limit,
        quota=args.quota,
        faults=faults,
        log_limit=_CLI_LOG_LIMIT,
        partner_api_key=args.partner_api_key,
        partner_client_secret=args.partner_client_secret,
        token_seconds=args.token_seconds,
        partner_rate_limit=args.partner_rate_limit,
        max_url_bytes=args.max_url_bytes or None,
    )
    url = await sim.start(args.host, args.port)
    try:
        print(f"simulator listening on {url}", flush=True)
        await asyncio.Event().wait()
    finally:
        await sim.stop()

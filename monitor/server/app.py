"""aiohttp routes: /metrics, /healthz, /readyz, /v1/events/{id}, /v1/transitions."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sqlite3
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitor.clock import Clock, iso_utc, utc_datetime
from monitor.config.catalog import Catalog
from monitor.core.maintenance import current_window
from monitor.core.summary import Summary
from monitor.logs import get_logger
from monitor.poller.dispatcher import Health
from monitor.poller.live import LiveState
from monitor.secrets import Secret
from monitor.store.base import Store

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

log = get_logger("monitor.server")

MAX_TRANSITIONS_PAGE = 1000

#: How long a request's body may take to arrive (read by the body readers).
BODY_SECONDS: web.AppKey[float] = web.AppKey("body_seconds", float)


def json_error(status: int, message: str, **extra: object) -> web.Response:
    """A JSON error body: {"error": message, ...}."""
    return web.json_response({"error": message, **extra}, status=status)


_HTTP_ERRORS = {
    404: "no such endpoint",
    405: "method not allowed here",
    413: "the body is over the size limit",
}


def _as_json(exc: web.HTTPException) -> web.Response:
    """aiohttp's own error answer as a JSON error, its headers (Allow) kept."""
    resp = json_error(exc.status, _HTTP_ERRORS.get(exc.status, exc.reason))
    allow = exc.headers.get("Allow")
    if allow is not None:
        resp.headers["Allow"] = allow
    return resp


def _is_store_failure(exc: BaseException) -> bool:
    """Whether an exception came from the state store (SQLite, PostgreSQL, the disk)."""
    return isinstance(exc, sqlite3.Error | OSError) or type(exc).__module__.startswith("asyncpg")


def bearer_matches(header: str, token: Secret) -> bool:
    """Whether an Authorization header carries `token`, compared in constant time.

    Both sides are hashed first: the comparison then takes the same time whatever the lengths,
    and a header with bytes that are not UTF-8 (they arrive as surrogate escapes) is simply wrong.
    """
    given = header.encode("utf-8", "surrogatepass")
    expected = f"Bearer {token.reveal()}".encode("utf-8", "surrogatepass")
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


class ApiServer:
    """Builds the aiohttp application from the daemon's parts (all injected)."""

    def __init__(
        self,
        *,
        registry: CollectorRegistry,
        health: Health,
        catalog: Callable[[], Catalog],
        live: LiveState,
        store: Store,
        clock: Clock,
        admin_token: Secret | None = None,
        quarantined: Callable[[str], bool] = lambda eid: False,
        details: Callable[[str], Any] = lambda eid: None,
        retired: Callable[[str, float], bool] = lambda eid, now: False,
        unknown_since: Callable[[str], float | None] = lambda eid: None,
        max_body_bytes: int = 1024 * 1024,
        body_seconds: float = 30.0,
    ) -> None:
        self._unknown_since = unknown_since
        self._max_body = max_body_bytes
        self._body_seconds = body_seconds
        self._failures = Summary(every=60.0, max_keys=256)
        self._details = details
        self._retired = retired
        self._registry = registry
        self._health = health
        self._catalog = catalog
        self._live = live
        self._store = store
        self._clock = clock
        self.admin_token = admin_token
        self._quarantined = quarantined

    def app(self) -> web.Application:
        """The application; other parts may add routes before it starts."""
        app = web.Application(
            middlewares=[self._errors_middleware, self._auth_middleware],
            client_max_size=self._max_body,
        )
        app[BODY_SECONDS] = self._body_seconds
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/v1/events/{event_id}", self.event)
        app.router.add_get("/v1/transitions", self.transitions)
        app.router.add_get("/openapi.yaml", self.openapi)
        return app

    async def openapi(self, request: web.Request) -> web.Response:
        """The OpenAPI document of this API."""
        text = resources.files("monitor.server").joinpath("openapi.yaml").read_text("utf-8")
        return web.Response(text=text, content_type="application/yaml")

    @web.middleware
    async def _errors_middleware(
        self, request: web.Request, handler: Handler
    ) -> web.StreamResponse:
        """Every error is JSON: aiohttp's own (404, 405, 413) too; a failure inside is logged
        (summarised) and answered 503 when the state store failed, 500 otherwise."""
        try:
            return await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            return _as_json(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            store = _is_store_failure(exc)
            key = (request.method, request.match_info.route.resource, type(exc).__name__)
            held = self._failures.admit(str(key), self._clock.monotonic())
            if held is not None:
                log.error(
                    "API request failed",
                    method=request.method,
                    route=getattr(request.match_info.route.resource, "canonical", "?"),
                    error=f"{type(exc).__name__}: {str(exc)[:200]}",
                    more_since_last_line=held,
                    exc_info=not store,
                )
            if store:
                return json_error(503, "the state store failed; nothing was changed")
            return json_error(500, "internal error (logged)")

    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        token = self.admin_token
        given = request.headers.get("Authorization", "")
        if (
            request.path.startswith("/v1/")
            and token is not None
            and not bearer_matches(given, token)
        ):
            return json_error(401, "missing or wrong bearer token")
        return await handler(request)

    async def metrics(self, request: web.Request) -> web.Response:
        """Prometheus text exposition."""
        body = generate_latest(self._registry)
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return resp

    async def healthz(self, request: web.Request) -> web.Response:
        """200 while the process runs."""
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        """200 once config and state are loaded and the upstream accepts the key."""
        ready, reason = self._health.readiness()
        return web.json_response(
            {"ready": ready, "reason": reason, "upstream_key": self._health.key_status},
            status=200 if ready else 503,
        )

    async def event(self, request: web.Request) -> web.Response:
        """What the daemon knows of one watched event."""
        eid = request.match_info["event_id"]
        catalog = self._catalog()
        spec = catalog.events.get(eid)
        if spec is None:
            return json_error(404, f"event {eid} is not watched")
        zone = catalog.zone_of(eid)
        window = None
        if zone is not None:
            window = current_window(utc_datetime(self._clock.wall()), zone.tz, zone.window)
        seen = self._live.observed_at.get(eid)
        state = self._live.states.get(eid)
        body: dict[str, object] = {
            "event_id": eid,
            "watch_sets": list(spec.watch_sets),
            "status": self._live.status(eid),
            "resale_status": self._live.resale_status(eid),
            "observed_at": iso_utc(seen) if seen else None,
            "in_maintenance": window is not None,
            "time_zone": zone.name if zone else None,
            "maintenance_window": str(zone.window) if zone else None,
            "time_zone_source": spec.zone_source,
            "region": spec.region,
            "venue": spec.venue,
            "quarantined": self._quarantined(eid),
            "retired": self._retired(eid, self._clock.wall()),
            "unknown_since": iso_utc(since) if (since := self._unknown_since(eid)) else None,
        }
        details = self._details(eid)
        if details is not None:
            body["details"] = {
                "event_name": details.name,
                "venue_id": details.venue_id,
                "venue_name": details.venue_name,
                "event_date": iso_utc(details.event_date) if details.event_date else None,
                "offsale": iso_utc(details.offsale) if details.offsale else None,
                "time_zone": details.time_zone,
                "api_transactable": details.api_transactable,
            }
        if window is not None:
            body["maintenance_ends_at"] = iso_utc(window[1].timestamp())
        if state is not None:
            body["pending"] = {
                "status": {"value": state.status[1], "streak": state.status[2]}
                if state.status[1]
                else None,
                "resale_status": {"value": state.resale[1], "streak": state.resale[2]}
                if state.resale[1]
                else None,
            }
        return web.json_response(body)

    async def transitions(self, request: web.Request) -> web.Response:
        """Transitions after `since` (exclusive), oldest first; `next` is where to go on from."""
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return json_error(400, "since must be an integer sequence number", field="since")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return json_error(400, "limit must be an integer", field="limit")
        if not 0 <= since < 2**63:
            return json_error(400, "since must be a sequence number >= 0", field="since")
        if not 1 <= limit <= MAX_TRANSITIONS_PAGE:
            return json_error(400, f"limit must be 1..{MAX_TRANSITIONS_PAGE}", field="limit")
        rows = await self._store.transitions_since(since, limit)
        return web.json_response(
            {
                "transitions": [t.to_json() for t in rows],
                "next": rows[-1].sequence if rows else since,
            }
        )

"""The runtime API under /v1: subscriptions, their dead letters, and watch sets.

What the config file defines belongs to it (409 here); what the API creates lives in the store.
Bodies are validated with the config's own models, so a bad body gets a 400 naming the field.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, Field, ValidationError

from monitor.clock import Clock, iso_utc
from monitor.config.loader import validation_issues
from monitor.config.models import EventItem, Filter, Strict, WatchSet, check_webhook_secret
from monitor.notify.signing import new_secret
from monitor.notify.ssrf import BlockedAddress, resolve_and_check
from monitor.notify.subscriptions import Subscription, Subscriptions
from monitor.secrets import Secret
from monitor.server.app import json_error
from monitor.store.base import Delivery, Store

M = TypeVar("M", bound=BaseModel)


class SubscriptionIn(Strict):
    """POST /v1/subscriptions."""

    name: str = Field(pattern=r"^[a-z0-9_-]+$")
    url: str
    secret: Secret | None = None
    secrets: list[Secret] = []
    filter: Filter = Filter()
    format: str = Field("standard", pattern=r"^(standard|cloudevents)$")
    max_in_flight: int = Field(64, ge=1, le=64)
    enabled: bool = True


class SubscriptionPatch(Strict):
    """PATCH /v1/subscriptions/{name}: only what is given changes (secrets: for rotation)."""

    url: str | None = None
    secret: Secret | None = None
    secrets: list[Secret] | None = None
    filter: Filter | None = None
    format: str | None = Field(None, pattern=r"^(standard|cloudevents)$")
    max_in_flight: int | None = Field(None, ge=1, le=64)
    enabled: bool | None = None


class ReplayIn(Strict):
    """POST .../dead-letters/replay: given IDs, or all created since a time, or all."""

    ids: list[str] | None = None
    since: datetime | None = None


class EventsIn(Strict):
    """POST /v1/watch-sets/{name}/events."""

    events: list[EventItem]


class EventIdsIn(Strict):
    """DELETE /v1/watch-sets/{name}/events."""

    events: list[str]


class WatchSetHost(Protocol):
    """What the API needs of the daemon to manage watch sets."""

    def watch_sets(self) -> list[tuple[WatchSet, str]]:
        """Every watch set with its origin ("config" or "api")."""
        ...

    async def put_watch_set(self, watch_set: WatchSet) -> list[str]:
        """Create or replace an API watch set; returns problems (empty when accepted)."""
        ...

    async def delete_watch_set(self, name: str) -> None:
        """Delete an API watch set."""
        ...


class AdminApi:
    """Routes for the runtime API; every dependency comes in through the constructor."""

    def __init__(
        self,
        *,
        subscriptions: Subscriptions,
        store: Store,
        host: WatchSetHost,
        clock: Clock,
        wake_outbox: Callable[[], None],
        deny_private: bool,
        resolver: Any = None,
    ) -> None:
        self._subs = subscriptions
        self._store = store
        self._host = host
        self._clock = clock
        self._wake = wake_outbox
        self._deny_private = deny_private
        self._resolver = resolver

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""
        r = app.router
        r.add_get("/v1/subscriptions", self.list_subscriptions)
        r.add_post("/v1/subscriptions", self.create_subscription)
        r.add_get("/v1/subscriptions/{name}", self.show_subscription)
        r.add_patch("/v1/subscriptions/{name}", self.update_subscription)
        r.add_delete("/v1/subscriptions/{name}", self.delete_subscription)
        r.add_post("/v1/subscriptions/{name}/enable", self.enable_subscription)
        r.add_get("/v1/subscriptions/{name}/dead-letters", self.dead_letters)
        r.add_post("/v1/subscriptions/{name}/dead-letters/replay", self.replay)
        r.add_get("/v1/watch-sets", self.list_watch_sets)
        r.add_post("/v1/watch-sets", self.create_watch_set)
        r.add_get("/v1/watch-sets/{name}", self.show_watch_set)
        r.add_delete("/v1/watch-sets/{name}", self.delete_watch_set)
        r.add_post("/v1/watch-sets/{name}/events", self.add_events)
        r.add_delete("/v1/watch-sets/{name}/events", self.remove_events)

    # -- helpers ---------------------------------------------------------------------------

    async def _body(self, request: web.Request, model: type[M]) -> M | web.Response:
        try:
            data = await request.json()
        except ValueError:
            return json_error(400, "the body is not valid JSON", field="")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            issues = validation_issues(exc, data, model)
            first = issues[0]
            return json_error(
                400,
                f"{first.path}: {first.message}" if first.path else first.message,
                field=first.path,
                errors=[{"field": i.path, "message": i.message} for i in issues],
            )

    async def _check_url(self, url: str) -> web.Response | None:
        try:
            await resolve_and_check(url, self._deny_private, self._resolver)
        except BlockedAddress as exc:
            return json_error(400, f"url refused: {exc}", field="url")
        except ValueError as exc:
            return json_error(400, f"url: {exc}", field="url")
        return None

    def _subscription(self, request: web.Request) -> Subscription | web.Response:
        name = request.match_info["name"]
        sub = self._subs.get(name)
        if sub is None:
            return json_error(404, f"no subscription {name!r}")
        return sub

    def _owned(self, sub: Subscription) -> web.Response | None:
        if sub.origin == "config":
            return json_error(
                409, f"subscription {sub.name!r} belongs to the config file; change it there"
            )
        return None

    # -- subscriptions ---------------------------------------------------------------------

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        """Every subscription (secrets never shown)."""
        counts = await self._store.outbox_counts()
        out = []
        for s in self._subs.all():
            pending, dead = counts.get(s.name, (0, 0))
            out.append({**s.public(), "pending": pending, "dead_letters": dead})
        return web.json_response({"subscriptions": out})

    async def show_subscription(self, request: web.Request) -> web.Response:
        """One subscription."""
        sub = self._subscription(request)
        if isinstance(sub, web.Response):
            return sub
        pending, dead = (await self._store.outbox_counts()).get(sub.name, (0, 0))
        return web.json_response({**sub.public(), "pending": pending, "dead_letters": dead})

    async def create_subscription(self, request: web.Request) -> web.Response:
        """Create; a generated secret is returned once when none was given."""
        body = await self._body(request, SubscriptionIn)
        if isinstance(body, web.Response):
            return body
        if self._subs.get(body.name) is not None:
            return json_error(409, f"subscription {body.name!r} exists", field="name")
        if body.secret is not None and body.secrets:
            return json_error(400, "give either secret or secrets, not both", field="secrets")
        problem = await self._check_url(body.url)
        if problem:
            return problem
        secrets, generated = self._secrets(body.secret, body.secrets)
        if isinstance(secrets, web.Response):
            return secrets
        sub = Subscription(
            name=body.name,
            url=body.url,
            secrets=tuple(secrets),
            filter=body.filter,
            format=body.format,
            max_in_flight=body.max_in_flight,
            enabled=body.enabled,
            origin="api",
        )
        await self._subs.put(sub)
        out: dict[str, Any] = sub.public()
        if generated is not None:
            out["secret"] = generated.reveal()
        return web.json_response(out, status=201)

    def _secrets(
        self, secret: Secret | None, secrets: list[Secret]
    ) -> tuple[list[Secret] | web.Response, Secret | None]:
        given = ([secret] if secret is not None else []) + list(secrets)
        generated = None
        if not given:
            generated = new_secret()
            given = [generated]
        for i, s in enumerate(given):
            try:
                check_webhook_secret(s)
            except ValueError as exc:
                field = "secret" if secret is not None and i == 0 else "secrets"
                return json_error(400, f"{field}: {exc}", field=field), None
        return given, generated

    async def update_subscription(self, request: web.Request) -> web.Response:
        """Change an API subscription (409 for config-owned ones)."""
        sub = self._subscription(request)
        if isinstance(sub, web.Response):
            return sub
        owned = self._owned(sub)
        if owned:
            return owned
        body = await self._body(request, SubscriptionPatch)
        if isinstance(body, web.Response):
            return body
        changes: dict[str, Any] = {}
        if body.url is not None:
            problem = await self._check_url(body.url)
            if problem:
                return problem
            changes["url"] = body.url
        if body.secret is not None and body.secrets is not None:
            return json_error(400, "give either secret or secrets, not both", field="secrets")
        if body.secret is None and body.secrets is not None and not body.secrets:
            return json_error(400, "secrets: at least one secret is needed", field="secrets")
        if body.secret is not None or body.secrets is not None:
            secrets, _ = self._secrets(body.secret, body.secrets or [])
            if isinstance(secrets, web.Response):
                return secrets
            changes["secrets"] = tuple(secrets)
        for key in ("filter", "format", "max_in_flight", "enabled"):
            value = getattr(body, key)
            if value is not None:
                changes[key] = value
        if changes.get("enabled"):
            changes["disabled_reason"] = None
        new = replace(sub, **changes)
        await self._subs.put(new)
        self._wake()
        return web.json_response(new.public())

    async def delete_subscription(self, request: web.Request) -> web.Response:
        """Delete an API subscription with its pending deliveries."""
        sub = self._subscription(request)
        if isinstance(sub, web.Response):
            return sub
        owned = self._owned(sub)
        if owned:
            return owned
        await self._subs.delete(sub.name)
        return web.Response(status=204)

    async def enable_subscription(self, request: web.Request) -> web.Response:
        """Re-enable a subscription (after a 410 Gone, once the endpoint is back)."""
        sub = self._subscription(request)
        if isinstance(sub, web.Response):
            return sub
        await self._subs.set_enabled(sub.name, True)
        self._wake()
        updated = self._subs.get(sub.name)
        assert updated is not None
        return web.json_response(updated.public())

    async def dead_letters(self, request: web.Request) -> web.Response:
        """Dead letters of a subscription, oldest first."""
        sub = self._subscription(request)
        if isinstance(sub, web.Response):
            return sub
        try:
            limit = int(request.query.get("limit", "100"))
            if not 1 <= limit <= 1000:
                raise ValueError
        except ValueError:
            return json_error(400, "limit must be 1..1000", field="limit")
        since = None
        if "since" in request.query:
            try:
                since = _utc(datetime.fromisoformat(request.query["since"])).timestamp()
            except ValueError:
                return json_error(400, "since must be an ISO 8601 time", field="since")
        rows = await self._store.dead_letters(sub.name, limit, since)
        return web.json_response({"dead_letters": [_dead(d) for d in rows]})

    async def replay(self, request: web.Request) -> web.Response:
        """Dead letters back into the outbox: by ID, all since a time, or all."""
        sub = self._subscription(request)
        if isinstance(sub, web.Response):
            return sub
        body: ReplayIn | web.Response
        if request.can_read_body:
            body = await self._body(request, ReplayIn)
            if isinstance(body, web.Response):
                return body
        else:
            body = ReplayIn()
        since = _utc(body.since).timestamp() if body.since is not None else None
        n = await self._store.replay(sub.name, self._clock.wall(), body.ids, since)
        self._wake()
        return web.json_response({"replayed": n})

    # -- watch sets ------------------------------------------------------------------------

    def _find_set(self, name: str) -> tuple[WatchSet, str] | None:
        for ws, origin in self._host.watch_sets():
            if ws.name == name:
                return ws, origin
        return None

    async def list_watch_sets(self, request: web.Request) -> web.Response:
        """Every watch set with its origin."""
        return web.json_response(
            {"watch_sets": [_set_json(ws, origin) for ws, origin in self._host.watch_sets()]}
        )

    async def show_watch_set(self, request: web.Request) -> web.Response:
        """One watch set with its events."""
        found = self._find_set(request.match_info["name"])
        if found is None:
            return json_error(404, f"no watch set {request.match_info['name']!r}")
        return web.json_response(_set_json(*found, events=True))

    async def create_watch_set(self, request: web.Request) -> web.Response:
        """Create a watch set (events may be added later)."""
        body = await self._body(request, WatchSet)
        if isinstance(body, web.Response):
            return body
        if body.events_file is not None:
            return json_error(400, "events_file is for the config file", field="events_file")
        if self._find_set(body.name) is not None:
            return json_error(409, f"watch set {body.name!r} exists", field="name")
        return await self._put_set(body, 201)

    async def _put_set(self, ws: WatchSet, status: int) -> web.Response:
        problems = await self._host.put_watch_set(ws)
        if problems:
            return json_error(400, problems[0], field="events", errors=problems)
        return web.json_response(_set_json(ws, "api"), status=status)

    async def _api_set(self, request: web.Request) -> WatchSet | web.Response:
        name = request.match_info["name"]
        found = self._find_set(name)
        if found is None:
            return json_error(404, f"no watch set {name!r}")
        if found[1] == "config":
            return json_error(409, f"watch set {name!r} belongs to the config file")
        return found[0]

    async def delete_watch_set(self, request: web.Request) -> web.Response:
        """Delete an API watch set."""
        ws = await self._api_set(request)
        if isinstance(ws, web.Response):
            return ws
        await self._host.delete_watch_set(ws.name)
        return web.Response(status=204)

    async def add_events(self, request: web.Request) -> web.Response:
        """Add events to an API watch set."""
        ws = await self._api_set(request)
        if isinstance(ws, web.Response):
            return ws
        body = await self._body(request, EventsIn)
        if isinstance(body, web.Response):
            return body
        have = {e.id for e in ws.events}
        new = [e for e in body.events if e.id not in have]
        updated = ws.model_copy(update={"events": [*ws.events, *new]})
        resp = await self._put_set(updated, 200)
        return resp if resp.status != 200 else web.json_response({"added": len(new)})

    async def remove_events(self, request: web.Request) -> web.Response:
        """Remove events from an API watch set."""
        ws = await self._api_set(request)
        if isinstance(ws, web.Response):
            return ws
        body = await self._body(request, EventIdsIn)
        if isinstance(body, web.Response):
            return body
        drop = set(body.events)
        kept = [e for e in ws.events if e.id not in drop]
        await self._host.put_watch_set(ws.model_copy(update={"events": kept}))
        return web.json_response({"removed": len(ws.events) - len(kept)})


def _utc(when: datetime) -> datetime:
    """A time without a zone is UTC (never the server's local time)."""
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _dead(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "sequence": d.transition.sequence,
        "event_id": d.transition.event_id,
        "attempts": d.attempts,
        "created_at": iso_utc(d.created_at),
        "dead_at": iso_utc(d.dead_at) if d.dead_at else None,
        "last_error": d.last_error,
        "transition": d.transition.to_json(),
    }


def _set_json(ws: WatchSet, origin: str, events: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": ws.name,
        "origin": origin,
        "interval_seconds": ws.interval_seconds,
        "confirm_after": ws.confirm_after,
        "track_unknown": ws.track_unknown,
        "event_count": len(ws.events),
    }
    if events:
        out["events"] = [e.model_dump(exclude_none=True) for e in ws.events]
    return out


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def read_only_without_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without server.admin_token, /v1 can be read but not changed."""
    if request.path.startswith("/v1/") and request.method not in ("GET", "HEAD", "OPTIONS"):
        return json_error(403, "changes need server.admin_token to be set (and sent as a bearer)")
    return await handler(request)

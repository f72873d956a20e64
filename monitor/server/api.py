"""The runtime API under /v1: subscriptions and their dead letters (watch sets: watch_sets_api).

What the config file defines belongs to it (409 here); what the API creates lives in the store.
A body is checked against the OpenAPI document first (400 naming the key path), then turned
into the models; changes to subscriptions run one at a time, so none is lost to another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from monitor.clock import Clock, iso_utc
from monitor.config.models import Filter, Name, Strict, check_webhook_secret
from monitor.notify.signing import new_secret
from monitor.notify.ssrf import resolve_and_check
from monitor.notify.subscriptions import Subscription, Subscriptions
from monitor.secrets import Secret
from monitor.server.app import json_error
from monitor.server.bodies import as_model, query_int, read_json, rfc3339_timestamp
from monitor.server.limits import (
    MAX_API_SUBSCRIPTIONS,
    MAX_PAGE,
    MAX_REPLAY_IDS,
    MAX_SECRETS,
    MAX_URL_LENGTH,
)
from monitor.server.schema import RequestSchemas
from monitor.store.base import Delivery, Store


class SubscriptionIn(Strict):
    """POST /v1/subscriptions."""

    name: Name
    url: str = Field(max_length=MAX_URL_LENGTH)
    secret: Secret | None = None
    secrets: list[Secret] = Field([], max_length=MAX_SECRETS)
    filter: Filter = Filter()
    format: Literal["standard", "cloudevents"] = "standard"
    max_in_flight: int = Field(64, ge=1, le=64)
    enabled: bool = True


class SubscriptionPatch(Strict):
    """PATCH /v1/subscriptions/{name}: only what is given changes (secrets: for rotation)."""

    url: str | None = Field(None, max_length=MAX_URL_LENGTH)
    secret: Secret | None = None
    secrets: list[Secret] | None = Field(None, min_length=1, max_length=MAX_SECRETS)
    filter: Filter | None = None
    format: Literal["standard", "cloudevents"] | None = None
    max_in_flight: int | None = Field(None, ge=1, le=64)
    enabled: bool | None = None


class ReplayIn(Strict):
    """POST .../dead-letters/replay: given IDs and/or those dead since a time, or `all`."""

    ids: list[str] | None = Field(None, min_length=1, max_length=MAX_REPLAY_IDS)
    since: str | None = None
    all: Literal[True] | None = None


class AdminApi:
    """Routes for subscriptions; every dependency comes in through the constructor."""

    def __init__(
        self,
        *,
        subscriptions: Subscriptions,
        store: Store,
        clock: Clock,
        schemas: RequestSchemas,
        wake_outbox: Callable[[], None],
        deny_private: bool,
        resolver: Any = None,
        on_created: Callable[[str], None] = lambda name: None,
    ) -> None:
        self._on_created = on_created
        self._subs = subscriptions
        self._store = store
        self._clock = clock
        self._schemas = schemas
        self._wake = wake_outbox
        self._deny_private = deny_private
        self._resolver = resolver
        self._lock = asyncio.Lock()

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

    # -- helpers ---------------------------------------------------------------------------

    async def _check_url(self, url: str) -> web.Response | None:
        try:
            await resolve_and_check(url, self._deny_private, self._resolver)
        except ValueError as exc:  # BlockedAddress included
            return json_error(422, f"url refused: {exc}", field="url")
        return None

    def _subscription(self, request: web.Request) -> Subscription | web.Response:
        name = request.match_info["name"]
        sub = self._subs.get(name)
        if sub is None:
            return json_error(404, f"no subscription {name!r}")
        return sub

    def _refused_at_load(self, request: web.Request) -> bool:
        return request.match_info["name"] in self._subs.refused

    def _owned(self, request: web.Request) -> Subscription | web.Response:
        sub = self._subscription(request)
        if isinstance(sub, Subscription) and sub.origin == "config":
            return json_error(
                409, f"subscription {sub.name!r} belongs to the config file; change it there"
            )
        return sub

    # -- reading ---------------------------------------------------------------------------

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

    # -- changes ---------------------------------------------------------------------------

    async def create_subscription(self, request: web.Request) -> web.Response:
        """Create; a generated secret is returned once when none was given."""
        data = await read_json(request, self._schemas, "SubscriptionIn")
        if isinstance(data, web.Response):
            return data
        body = as_model(SubscriptionIn, data)
        if isinstance(body, web.Response):
            return body
        problem = await self._check_url(body.url)
        if problem:
            return problem
        given = [body.secret] if body.secret is not None else list(body.secrets)
        generated = None if given else new_secret()
        secrets = (
            tuple(check_webhook_secret(s) for s in given) if generated is None else (generated,)
        )
        sub = Subscription(
            name=body.name,
            url=body.url,
            secrets=secrets,
            filter=body.filter,
            format=body.format,
            max_in_flight=body.max_in_flight,
            enabled=body.enabled,
            origin="api",
        )
        async with self._lock:
            refused = self._refuse_create(body.name)
            if refused is not None:
                return refused
            if not await self._subs.create(sub):
                return json_error(409, f"subscription {body.name!r} exists", field="name")
        self._on_created(sub.name)
        out: dict[str, Any] = sub.public()
        if generated is not None:
            out["secret"] = generated.reveal()
        return web.json_response(out, status=201)

    def _refuse_create(self, name: str) -> web.Response | None:
        if self._subs.get(name) is not None:
            return json_error(409, f"subscription {name!r} exists", field="name")
        if name in self._subs.refused:
            return json_error(
                409,
                f"a stored subscription {name!r} no longer validates; delete it first",
                field="name",
            )
        if sum(1 for s in self._subs.all() if s.origin == "api") >= MAX_API_SUBSCRIPTIONS:
            return json_error(
                409, f"at most {MAX_API_SUBSCRIPTIONS} subscriptions can be made through the API"
            )
        return None

    async def update_subscription(self, request: web.Request) -> web.Response:
        """Change an API subscription (409 for config-owned ones)."""
        data = await read_json(request, self._schemas, "SubscriptionPatch")
        if isinstance(data, web.Response):
            return data
        body = as_model(SubscriptionPatch, data)
        if isinstance(body, web.Response):
            return body
        if body.url is not None:
            problem = await self._check_url(body.url)
            if problem:
                return problem
        async with self._lock:
            sub = self._owned(request)
            if isinstance(sub, web.Response):
                return sub
            new = replace(sub, **_changes(body))
            await self._subs.put(new)
        self._wake()
        return web.json_response(new.public())

    async def delete_subscription(self, request: web.Request) -> web.Response:
        """Delete an API subscription with its pending deliveries (or a stored one that no
        longer validates)."""
        async with self._lock:
            if (
                self._refused_at_load(request)
                and self._subs.get(request.match_info["name"]) is None
            ):
                await self._subs.delete(request.match_info["name"])
                return web.Response(status=204)
            sub = self._owned(request)
            if isinstance(sub, web.Response):
                return sub
            await self._subs.delete(sub.name)
        return web.Response(status=204)

    async def enable_subscription(self, request: web.Request) -> web.Response:
        """Re-enable a subscription (after a 410 Gone, once the endpoint is back)."""
        async with self._lock:
            sub = self._subscription(request)
            if isinstance(sub, web.Response):
                return sub
            await self._subs.set_enabled(sub.name, True)
        self._wake()
        updated = self._subs.get(sub.name)
        return web.json_response((updated or sub).public())

    # -- dead letters ----------------------------------------------------------------------

    async def dead_letters(self, request: web.Request) -> web.Response:
        """Dead letters of a subscription, oldest first."""
        sub = self._subscription(request)
        if isinstance(sub, web.Response):
            return sub
        limit = query_int(request, "limit", 100, 1, MAX_PAGE)
        if limit is None:
            return json_error(400, f"limit must be an integer 1..{MAX_PAGE}", field="limit")
        since = None
        if "since" in request.query:
            since = rfc3339_timestamp(request.query["since"])
            if since is None:
                return json_error(400, "since must be an RFC 3339 date-time", field="since")
        rows = await self._store.dead_letters(sub.name, limit, since)
        return web.json_response({"dead_letters": [_dead(d) for d in rows]})

    async def replay(self, request: web.Request) -> web.Response:
        """Dead letters back into the outbox: by ID and/or since a time, or all."""
        sub = self._subscription(request)
        if isinstance(sub, web.Response):
            return sub
        data = await read_json(request, self._schemas, "ReplayIn")
        if isinstance(data, web.Response):
            return data
        body = as_model(ReplayIn, data)
        if isinstance(body, web.Response):
            return body
        since = None
        if body.since is not None:
            since = rfc3339_timestamp(body.since)
            if since is None:
                return json_error(400, "since must be an RFC 3339 date-time", field="since")
        n = await self._store.replay(sub.name, self._clock.wall(), body.ids, since)
        self._wake()
        return web.json_response({"replayed": n})


def _changes(body: SubscriptionPatch) -> dict[str, Any]:
    """The fields a PATCH changes (secrets replaced as a whole, for a rotation)."""
    changes: dict[str, Any] = {}
    if body.url is not None:
        changes["url"] = body.url
    given = [body.secret] if body.secret is not None else body.secrets
    if given:
        changes["secrets"] = tuple(check_webhook_secret(s) for s in given)
    for key in ("filter", "format", "max_in_flight", "enabled"):
        value = getattr(body, key)
        if value is not None:
            changes[key] = value
    if changes.get("enabled"):
        changes["disabled_reason"] = None
    return changes


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


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def read_only_without_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Without server.admin_token, /v1 can be read but not changed."""
    if request.path.startswith("/v1/") and request.method not in ("GET", "HEAD", "OPTIONS"):
        return json_error(403, "changes need server.admin_token to be set (and sent as a bearer)")
    return await handler(request)

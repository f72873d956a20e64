"""/v1/watch-sets: watch sets made at run time (the config file's can be read, not changed).

Bodies are checked against the OpenAPI document, then validated like a config-file watch set;
the registry applies and stores each change as one step, one change at a time.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import Field

from monitor.config.models import EventItem, Strict, WatchSet
from monitor.registry import ChangeRefused, WatchSetRegistry
from monitor.server.app import json_error
from monitor.server.bodies import as_model, query_int, read_json
from monitor.server.limits import MAX_PAGE, MAX_SET_EVENTS, MAX_WATCH_SETS
from monitor.server.schema import RequestSchemas


class EventsIn(Strict):
    """POST /v1/watch-sets/{name}/events."""

    events: list[EventItem] = Field(max_length=MAX_SET_EVENTS)


class EventIdsIn(Strict):
    """DELETE /v1/watch-sets/{name}/events."""

    events: list[str] = Field(max_length=MAX_SET_EVENTS)


def refused(exc: ChangeRefused) -> web.Response:
    """The answer to a change the registry refused."""
    extra: dict[str, Any] = {"field": exc.field} if exc.field else {}
    if exc.errors:
        extra["errors"] = exc.errors[:20]
    return json_error(exc.status, exc.message, **extra)


class WatchSetsApi:
    """Routes for watch sets."""

    def __init__(self, *, registry: WatchSetRegistry, schemas: RequestSchemas) -> None:
        self._registry = registry
        self._schemas = schemas

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""
        r = app.router
        r.add_get("/v1/watch-sets", self.list_watch_sets)
        r.add_post("/v1/watch-sets", self.create_watch_set)
        r.add_get("/v1/watch-sets/{name}", self.show_watch_set)
        r.add_delete("/v1/watch-sets/{name}", self.delete_watch_set)
        r.add_post("/v1/watch-sets/{name}/events", self.add_events)
        r.add_delete("/v1/watch-sets/{name}/events", self.remove_events)

    async def list_watch_sets(self, request: web.Request) -> web.Response:
        """Every watch set with its origin."""
        listed = self._registry.listing()
        return web.json_response({"watch_sets": [_summary(ws, origin) for ws, origin in listed]})

    async def show_watch_set(self, request: web.Request) -> web.Response:
        """One watch set with a page of its events (`offset`, `limit`)."""
        name = request.match_info["name"]
        found = next(((ws, o) for ws, o in self._registry.listing() if ws.name == name), None)
        if found is None:
            return json_error(404, f"no watch set {name!r}")
        limit = query_int(request, "limit", MAX_PAGE, 1, MAX_PAGE)
        if limit is None:
            return json_error(400, f"limit must be an integer 1..{MAX_PAGE}", field="limit")
        offset = query_int(request, "offset", 0, 0, MAX_SET_EVENTS)
        if offset is None:
            return json_error(400, f"offset must be an integer 0..{MAX_SET_EVENTS}", field="offset")
        ws, origin = found
        events = ws.events[offset : offset + limit]
        more = offset + limit < len(ws.events)
        body = _summary(ws, origin)
        body["events"] = [e.model_dump(exclude_none=True) for e in events]
        body["next_offset"] = offset + limit if more else None
        return web.json_response(body)

    async def create_watch_set(self, request: web.Request) -> web.Response:
        """Create a watch set (events may be added later)."""
        data = await read_json(request, self._schemas, "WatchSetIn")
        if isinstance(data, web.Response):
            return data
        ws = as_model(WatchSet, data)
        if isinstance(ws, web.Response):
            return ws
        try:
            await self._registry.create(ws, MAX_WATCH_SETS)
        except ChangeRefused as exc:
            return refused(exc)
        return web.json_response(_summary(ws, "api"), status=201)

    async def delete_watch_set(self, request: web.Request) -> web.Response:
        """Delete an API watch set."""
        try:
            await self._registry.delete(request.match_info["name"])
        except ChangeRefused as exc:
            return refused(exc)
        return web.Response(status=204)

    async def add_events(self, request: web.Request) -> web.Response:
        """Add events to an API watch set (IDs already in it are skipped)."""
        data = await read_json(request, self._schemas, "EventsIn")
        if isinstance(data, web.Response):
            return data
        body = as_model(EventsIn, data)
        if isinstance(body, web.Response):
            return body
        added = 0

        def add(ws: WatchSet) -> WatchSet:
            nonlocal added
            have = {e.id for e in ws.events}
            new = list({e.id: e for e in body.events if e.id not in have}.values())
            if len(ws.events) + len(new) > MAX_SET_EVENTS:
                raise ChangeRefused(409, f"a watch set holds at most {MAX_SET_EVENTS} events")
            added = len(new)
            return ws.model_copy(update={"events": [*ws.events, *new]})

        try:
            await self._registry.update(request.match_info["name"], add)
        except ChangeRefused as exc:
            return refused(exc)
        return web.json_response({"added": added})

    async def remove_events(self, request: web.Request) -> web.Response:
        """Remove events from an API watch set (IDs not in it are ignored)."""
        data = await read_json(request, self._schemas, "EventIdsIn")
        if isinstance(data, web.Response):
            return data
        body = as_model(EventIdsIn, data)
        if isinstance(body, web.Response):
            return body
        drop = set(body.events)
        removed = 0

        def remove(ws: WatchSet) -> WatchSet:
            nonlocal removed
            kept = [e for e in ws.events if e.id not in drop]
            removed = len(ws.events) - len(kept)
            return ws.model_copy(update={"events": kept})

        try:
            await self._registry.update(request.match_info["name"], remove)
        except ChangeRefused as exc:
            return refused(exc)
        return web.json_response({"removed": removed})


def _summary(ws: WatchSet, origin: str) -> dict[str, Any]:
    return {
        "name": ws.name,
        "origin": origin,
        "interval_seconds": ws.interval_seconds,
        "intervals": dict(ws.intervals),
        "confirm_after": ws.confirm_after,
        "track_unknown": ws.track_unknown,
        "priority": ws.priority,
        "event_count": len(ws.events),
    }

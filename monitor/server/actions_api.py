"""/v1/actions: the marketplace rules, their recent actions, dead letters and replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from aiohttp import web
from pydantic import Field

from monitor.actions.rules import PREFIX, ActionRules, describe
from monitor.clock import Clock, iso_utc
from monitor.config.models import Strict
from monitor.server.app import json_error
from monitor.server.bodies import as_model, query_int, read_json
from monitor.server.limits import MAX_PAGE, MAX_REPLAY_IDS
from monitor.server.schema import RequestSchemas
from monitor.store.base import Delivery, Store


class ActionReplayIn(Strict):
    """POST /v1/actions/{name}/dead-letters/replay: given IDs, or `all`."""

    ids: list[str] | None = Field(None, min_length=1, max_length=MAX_REPLAY_IDS)
    all: Literal[True] | None = None


class ActionsApi:
    """Routes for the action rules (they belong to the config file: no create or delete)."""

    def __init__(
        self,
        *,
        rules: ActionRules,
        store: Store,
        clock: Clock,
        schemas: RequestSchemas,
        wake_outbox: Callable[[], None],
    ) -> None:
        self._schemas = schemas
        self._rules = rules
        self._store = store
        self._clock = clock
        self._wake = wake_outbox

    def add_routes(self, app: web.Application) -> None:
        """Register the routes."""
        r = app.router
        r.add_get("/v1/actions", self.list_actions)
        r.add_post("/v1/actions/{name}/enable", self.enable)
        r.add_get("/v1/actions/{name}/dead-letters", self.dead_letters)
        r.add_post("/v1/actions/{name}/dead-letters/replay", self.replay)

    async def list_actions(self, request: web.Request) -> web.Response:
        """The rules, and recent actions (newest first) with their outcome."""
        limit = query_int(request, "limit", 100, 1, MAX_PAGE)
        if limit is None:
            return json_error(400, f"limit must be an integer 1..{MAX_PAGE}", field="limit")
        counts = await self._store.outbox_counts()
        recent = await self._store.recent_deliveries(PREFIX, limit)
        return web.json_response(
            {
                "rules": [describe(t, counts) for t in self._rules.rules()],
                "recent": [_action(d) for d in recent],
            }
        )

    def _rule(self, request: web.Request) -> str | web.Response:
        name = request.match_info["name"]
        if self._rules.get(name) is None:
            return json_error(404, f"no action rule {name!r}")
        return name

    async def enable(self, request: web.Request) -> web.Response:
        """Re-enable a rule (after the marketplace token was fixed)."""
        name = self._rule(request)
        if isinstance(name, web.Response):
            return name
        await self._rules.set_enabled(name, True)
        self._wake()
        return web.json_response({"name": name, "enabled": True})

    async def dead_letters(self, request: web.Request) -> web.Response:
        """Dead-lettered actions of a rule."""
        name = self._rule(request)
        if isinstance(name, web.Response):
            return name
        rows = await self._store.dead_letters(PREFIX + name, 1000)
        return web.json_response({"dead_letters": [_action(d) for d in rows]})

    async def replay(self, request: web.Request) -> web.Response:
        """Dead-lettered actions back into the outbox (`{"ids": [...]}` or `{"all": true}`)."""
        name = self._rule(request)
        if isinstance(name, web.Response):
            return name
        data = await read_json(request, self._schemas, "ActionReplayIn")
        if isinstance(data, web.Response):
            return data
        body = as_model(ActionReplayIn, data)
        if isinstance(body, web.Response):
            return body
        n = await self._store.replay(PREFIX + name, self._clock.wall(), body.ids, None)
        self._wake()
        return web.json_response({"replayed": n})


def _action(d: Delivery) -> dict[str, Any]:
    t = d.transition
    result = dict(d.result) if d.result else None
    return {
        "id": d.id,
        "rule": d.subscription.removeprefix(PREFIX),
        "event_id": t.event_id,
        "sequence": t.sequence,
        "transition": f"{t.field} {t.previous} -> {t.current}",
        "state": d.state,
        "outcome": (result or {}).get("outcome") if d.state == "done" else d.state,
        "attempts": d.attempts,
        "created_at": iso_utc(d.created_at),
        "finished_at": iso_utc(d.finished_at) if d.finished_at else None,
        "error": d.last_error,
        "result": result,
    }

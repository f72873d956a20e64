"""An Inventory Status API stand-in that misbehaves on purpose, over real HTTP on loopback.

`Hostile` answers requests to the availability path with scripted handlers, one per request in
order (`then`), and well-formed answers (every requested ID, TICKETS_AVAILABLE unless
`statuses` says otherwise) once the script is spent. Every request is recorded.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self

import orjson
from aiohttp import web

from monitor.simulator.app import MAX_LINE

PATH = "/inventory-status/v1/availability"

Handler = Callable[[web.Request, list[str]], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    """One request as it arrived."""

    t: float
    method: str
    ids: list[str]
    url_bytes: int
    region: str | None


@dataclass
class Hostile:
    """The stand-in server: `async with Hostile() as h: h.url`."""

    statuses: dict[str, str] = field(default_factory=dict)
    script: list[Handler] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    rule: Callable[[web.Request], Handler | None] | None = None  # per request, before the script
    url: str = ""
    _runner: web.AppRunner | None = None

    def then(self, *handlers: Handler) -> Self:
        """Answer the next requests with these handlers, in order."""
        self.script.extend(handlers)
        return self

    def body(self, ids: list[str]) -> bytes:
        """A well-formed answer for `ids`."""
        return orjson.dumps(
            [{"eventId": i, "status": self.statuses.get(i, "TICKETS_AVAILABLE")} for i in ids]
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        ids = [p for v in request.query.getall("events", ()) for p in v.split(",") if p]
        if request.method == "POST" and request.can_read_body:
            form = await request.post()
            ids += [p for v in form.getall("events", ()) for p in str(v).split(",") if p]
        self.seen.append(
            Seen(
                time.monotonic(),
                request.method,
                ids,
                len(request.raw_path),
                request.query.get("region"),
            )
        )
        chosen = self.rule(request) if self.rule is not None else None
        if chosen is not None:
            return await chosen(request, ids)
        if self.script:
            return await self.script.pop(0)(request, ids)
        return web.Response(body=self.body(ids), content_type="application/json")

    async def __aenter__(self) -> Self:
        app = web.Application(handler_args={"max_line_size": MAX_LINE, "max_field_size": MAX_LINE})
        app.router.add_route("*", PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def answer(status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> Handler:
    """A handler answering `status` with `body` and `headers`."""

    async def handle(request: web.Request, ids: list[str]) -> web.StreamResponse:
        return web.Response(status=status, body=body, headers=headers or {})

    return handle


def ok_with_headers(hostile: Hostile, headers: dict[str, str]) -> Handler:
    """A handler giving a well-formed 200 answer with extra headers."""

    async def handle(request: web.Request, ids: list[str]) -> web.StreamResponse:
        return web.Response(
            body=hostile.body(ids), headers={"Content-Type": "application/json", **headers}
        )

    return handle

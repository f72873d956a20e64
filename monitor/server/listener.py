"""The HTTP listener under abuse: bounded heads, a deadline for them, a cap on connections.

aiohttp parses requests; this module sets its limits and adds what it lacks:
* a request head must arrive within `head_seconds` of connecting (or of the previous answer on
  a kept-alive connection): aiohttp's keep-alive timer, started at connect, closes a connection
  that is still waiting for a whole head then, so a client sending a byte a second is cut off;
* at most `max_connections` connections at once, well under the file limit: one more is
  answered 503 and closed at once, so the process never runs out of file descriptors (its
  webhooks, store and upstream need them too) and a flood cannot grow memory;
* malformed requests are a counted, summarised warning, never a traceback per request.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from monitor.clock import Clock
from monitor.core.summary import Summary
from monitor.logs import get_logger

log = get_logger("monitor.server")

#: The file limit the daemon asks for (up to the hard limit); LimitNOFILE= in the unit matches.
WANTED_FILES = 65536


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """What one client can make the server hold."""

    body_bytes: int = 1024 * 1024
    line_bytes: int = 8192
    field_bytes: int = 8192
    header_fields: int = 64
    head_seconds: float = 10.0
    body_seconds: float = 30.0
    max_connections: int = 4096


def raise_file_limit(wanted: int = WANTED_FILES) -> int:
    """Raise the soft file limit towards `wanted` (never above the hard one); the new soft."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def connection_cap(limits: ServerLimits, file_limit: int) -> int:
    """Connections allowed at once: the configured cap, and at most half the file limit."""
    return max(16, min(limits.max_connections, file_limit // 2))


_BUSY_BODY = b'{"error": "too many connections; try again"}'
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
    % (len(_BUSY_BODY), _BUSY_BODY)
)


class _Refused(asyncio.Protocol):
    """A connection over the cap: a short 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(_BUSY)
        transport.close()


class CappedSite(web.TCPSite):
    """A TCP site that accepts at most `cap` connections at once (more get a 503)."""

    __slots__ = ("_cap", "_on_refused")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        cap: int,
        on_refused: Callable[[], None],
    ) -> None:
        super().__init__(runner, host, port, backlog=1024)
        self._cap = cap
        self._on_refused = on_refused

    async def start(self) -> None:
        """Listen, handing each connection to aiohttp unless the cap is reached."""
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        cap, refused = self._cap, self._on_refused

        def protocol() -> asyncio.BaseProtocol:
            if len(server.connections) >= cap:
                refused()
                return _Refused()
            return server()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol, self._host, self._port, backlog=self._backlog
        )
        sockets = self._server.sockets
        self._bound_port = sockets[0].getsockname()[1] if sockets else self._port


class MalformedRequestLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's server logger: a malformed request is counted and summarised, not a traceback.

    aiohttp reports every request it could not parse (and every unhandled error) through
    `logger.exception`; a client sending garbage would write a traceback per request.
    """

    def __init__(self, *, clock: Clock, count: Callable[[str], None], every: float = 60) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._clock = clock
        self._count = count
        self._summary = Summary(every=every, max_keys=64)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Route aiohttp's lines: failed requests counted and summarised, the rest dropped
        below warning."""
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError) or (
            isinstance(exc, BaseException) and level >= logging.ERROR
        ):
            self._report(exc)
        elif level >= logging.WARNING:
            super().log(level, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        """aiohttp's way of reporting a request it could not handle."""
        self.log(logging.ERROR, msg, *args, exc_info=exc_info, **kwargs)

    def _report(self, exc: BaseException) -> None:
        malformed = isinstance(exc, HttpProcessingError)
        kind = "malformed" if malformed else "error"
        self._count(kind)
        held = self._summary.admit((kind, type(exc).__name__), self._clock.monotonic())
        if held is None:
            return
        fields = {"error": type(exc).__name__, "more_since_last_line": held}
        if malformed:
            log.warning("malformed HTTP request refused", **fields)
        else:
            log.error("HTTP request failed in the server", detail=str(exc)[:200], **fields)


async def start_listener(
    app: web.Application,
    host: str,
    port: int,
    *,
    limits: ServerLimits,
    clock: Clock,
    on_malformed: Callable[[str], None],
    on_refused: Callable[[], None],
) -> web.AppRunner:
    """Serve `app` on host:port within `limits`; the runner (its `cleanup` stops it)."""
    cap = connection_cap(limits, raise_file_limit())
    runner = web.AppRunner(
        app,
        access_log=None,
        handle_signals=False,
        shutdown_timeout=1.0,
        keepalive_timeout=limits.head_seconds,
        max_line_size=limits.line_bytes,
        max_field_size=limits.field_bytes,
        max_headers=limits.header_fields,
        logger=MalformedRequestLog(clock=clock, count=on_malformed),
    )
    await runner.setup()
    site = CappedSite(runner, host, port, cap=cap, on_refused=on_refused)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner

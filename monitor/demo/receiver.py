"""A local webhook receiver that verifies Standard Webhooks signatures: for the demo and tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from monitor.notify.signing import secret_key
from monitor.secrets import Secret

#: Decides the answer to a delivery: a status, or (status, headers).
Answer = int | tuple[int, dict[str, str]]
Responder = Callable[["Received"], Answer | Awaitable[Answer]]


@dataclass(slots=True)
class Received:
    """One request the receiver got."""

    path: str
    msg_id: str
    timestamp: int
    body: bytes
    content_type: str
    verified: bool
    attempt: int  # how many times this webhook-id has arrived, this one included
    signature: str = ""
    status: int = 0

    @property
    def headers(self) -> dict[str, str]:
        """The Standard Webhooks headers as sent."""
        return {
            "webhook-id": self.msg_id,
            "webhook-timestamp": str(self.timestamp),
            "webhook-signature": self.signature,
        }

    @property
    def json(self) -> Any:
        """The parsed body."""
        return orjson.loads(self.body)

    @property
    def transition(self) -> dict[str, Any]:
        """The transition, from either payload format."""
        data: dict[str, Any] = self.json["data"]
        return data


def verify(secret: Secret, msg_id: str, timestamp: str, body: bytes, header: str) -> bool:
    """True when any `v1,` signature in the header matches this secret."""
    expected = base64.b64encode(
        hmac.new(
            secret_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256
        ).digest()
    ).decode()
    return any(
        hmac.compare_digest(part.removeprefix("v1,"), expected)
        for part in header.split()
        if part.startswith("v1,")
    )


@dataclass
class Receiver:
    """An aiohttp server on loopback recording every delivery; answers as `respond` says."""

    secrets: dict[str, Secret] = field(default_factory=dict)  # path -> secret to verify with
    respond: Responder = field(default=lambda r: 200)
    received: list[Received] = field(default_factory=list)
    url: str = ""
    _runner: web.AppRunner | None = None
    _seen: dict[str, int] = field(default_factory=dict)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        msg_id = request.headers.get("webhook-id", "")
        ts = request.headers.get("webhook-timestamp", "0")
        secret = self.secrets.get(request.path)
        ok = secret is not None and verify(
            secret, msg_id, ts, body, request.headers.get("webhook-signature", "")
        )
        self._seen[msg_id] = self._seen.get(msg_id, 0) + 1
        rec = Received(
            request.path,
            msg_id,
            int(ts) if ts.isdigit() else 0,
            body,
            request.headers.get("Content-Type", ""),
            ok,
            self._seen[msg_id],
            request.headers.get("webhook-signature", ""),
        )
        answer = self.respond(rec)
        if inspect.isawaitable(answer):
            answer = await answer
        status, headers = answer if isinstance(answer, tuple) else (answer, {})
        rec.status = status
        self.received.append(rec)
        return web.Response(status=status, headers=headers, text="ok")

    async def start(self, port: int = 0) -> str:
        """Listen on 127.0.0.1; returns the base URL."""
        app = web.Application()
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        host, real_port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{real_port}"
        return self.url

    async def stop(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def ok(self, path: str | None = None) -> list[Received]:
        """Deliveries answered 2xx (optionally on one path)."""
        return [
            r for r in self.received if 200 <= r.status < 300 and (path is None or r.path == path)
        ]

    def ids(self, path: str | None = None) -> Sequence[str]:
        """webhook-ids answered 2xx, in arrival order."""
        return [r.msg_id for r in self.ok(path)]

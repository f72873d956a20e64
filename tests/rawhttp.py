"""HTTP/1.1 by hand over a loopback socket: for requests no well-behaved client would send."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import orjson


async def raw_request(url: str, request: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send `request` as is to the server of `url`; the status and the body of its answer."""
    parts = urlsplit(url)
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(request)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        body = await asyncio.wait_for(reader.readexactly(length), timeout) if length else b""
        return status, body
    finally:
        writer.close()


def request_bytes(
    method: str, path: str, *, headers: dict[str, bytes] | None = None, body: bytes = b""
) -> bytes:
    """A request with `Connection: close`; header values are raw bytes (anything goes)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(name.encode() + b": " + value)
    if body:
        lines.append(b"Content-Type: application/json")
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def json_of(body: bytes) -> object:
    """The JSON of an answer body."""
    return orjson.loads(body)

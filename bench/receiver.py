"""A webhook receiver for the latency benchmark, in its own process: answers every POST 200 at
once and notes, per delivery, how long after its `timestamp` (the moment the sender stored the
transition, millisecond precision) and after the transition's `observed_at` it arrived.

    python -m bench.receiver --port P
    GET /_stats     {"count", "duplicates", "latency": [s, ...], "since_observed": [s, ...]}
    DELETE /_stats  forget everything so far

It must not be what the benchmark measures: a burst of a thousand webhooks arrives at once, and
a receiver spending 150 µs on each (aiohttp's server, JSON and dates decoded on the spot) holds
the last one back 150 ms by itself. So it is an `asyncio.Protocol` that reads HTTP/1.1 requests
with keep-alive and Content-Length bodies (what webhook senders send), notes the arrival time and
the body, answers at once, and decodes the bodies only when asked for the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import datetime
from typing import Any

_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
_BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Receiver:
    """What arrived: (arrival time, webhook-id, body), decoded on demand."""

    def __init__(self) -> None:
        self.arrivals: list[tuple[float, bytes, bytes]] = []

    def stats(self) -> dict[str, Any]:
        latency: list[float] = []
        since_observed: list[float] = []
        seen: set[bytes] = set()
        duplicates = 0
        for arrived, msg_id, body in self.arrivals:
            if msg_id in seen:
                duplicates += 1
                continue
            seen.add(msg_id)
            try:
                payload: dict[str, Any] = json.loads(body)
                data = payload.get("data", {})
                latency.append(arrived - _epoch(payload.get("timestamp") or data["time"]))
                since_observed.append(arrived - _epoch(data["observed_at"]))
            except (ValueError, KeyError, TypeError):
                pass
        return {
            "count": len(latency),
            "duplicates": duplicates,
            "latency": latency,
            "since_observed": since_observed,
        }


class _Connection(asyncio.Protocol):
    def __init__(self, receiver: Receiver) -> None:
        self._rec = receiver
        self._buf = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        arrived = time.time()
        self._buf += data
        transport = self._transport
        assert transport is not None
        out: list[bytes] = []
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = self._buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                transport.write(_BAD)
                transport.close()
                return
            if len(self._buf) < end + 4 + length:
                break  # the rest of the body is on its way
            body = self._buf[end + 4 : end + 4 + length]
            self._buf = self._buf[end + 4 + length :]
            method, _, rest = head[0].partition(" ")
            path = rest.partition(" ")[0]
            if path == "/_stats" and method == "GET":
                reply = json.dumps(self._rec.stats()).encode()
                out.append(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                    + str(len(reply)).encode()
                    + b"\r\n\r\n"
                    + reply
                )
            elif path == "/_stats" and method == "DELETE":
                self._rec.arrivals = []
                out.append(_OK)
            elif method == "POST":
                msg_id = headers.get("webhook-id", "").encode()
                self._rec.arrivals.append((arrived, msg_id, body))
                out.append(_OK)
            else:
                out.append(_OK)
        if out:
            transport.write(b"".join(out))


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:port until killed."""
    rec = Receiver()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(rec), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.receiver")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port))


if __name__ == "__main__":
    main()

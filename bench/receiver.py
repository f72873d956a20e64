"""A webhook receiver for the latency benchmark, in its own process: answers every POST 200 at
once and notes, per delivery, how long after its `timestamp` (the moment the sender stored the
transition, millisecond precision) and after the transition's `observed_at` it arrived.

    python -m bench.receiver --port P
    GET /_stats     {"count", "duplicates", "latency": [s, ...], "since_observed": [s, ...]}
    DELETE /_stats  forget everything so far
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from typing import Any

from aiohttp import web


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Receiver:
    def __init__(self) -> None:
        self.latency: list[float] = []
        self.since_observed: list[float] = []
        self.seen: set[str] = set()
        self.duplicates = 0

    async def post(self, request: web.Request) -> web.Response:
        arrived = time.time()
        body = await request.read()
        msg_id = request.headers.get("webhook-id", "")
        if msg_id in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(msg_id)
            try:
                payload: dict[str, Any] = json.loads(body)
                data = payload.get("data", {})
                self.latency.append(arrived - _epoch(payload.get("timestamp") or data["time"]))
                self.since_observed.append(arrived - _epoch(data["observed_at"]))
            except (ValueError, KeyError, TypeError):
                pass
        return web.Response(status=200)

    async def stats(self, request: web.Request) -> web.Response:
        out = {
            "count": len(self.latency),
            "duplicates": self.duplicates,
            "latency": self.latency,
            "since_observed": self.since_observed,
        }
        return web.json_response(out)

    async def reset(self, request: web.Request) -> web.Response:
        self.latency, self.since_observed = [], []
        self.duplicates = 0
        return web.json_response({"ok": True})


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.receiver")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    rec = Receiver()
    app = web.Application()
    app.router.add_get("/_stats", rec.stats)
    app.router.add_delete("/_stats", rec.reset)
    app.router.add_post("/{tail:.*}", rec.post)
    web.run_app(app, host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

"""The OpenAPI document is the truth: schemathesis against a live daemon on the simulator.

Every check schemathesis has (server errors, status codes, content types, response schemas,
schema-valid bodies accepted, schema-violating ones refused, unsupported methods, ...) over its
examples, coverage, fuzzing and stateful phases (links between operations inferred from the
document), with a fixed seed, once with the admin token and once without it (read-only /v1).
Webhook hosts resolve to loopback, so nothing leaves the machine. At the end the daemon must
still be ready and polling, with nothing logged as a failure of the server.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp.abc import AbstractResolver
from prometheus_client import CollectorRegistry

import monitor.server
from monitor.app import Daemon
from monitor.config import parse_config
from monitor.simulator import Simulator
from monitor.simulator.marketplace import MarketplaceSim
from tests.conftest import API_KEY

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(420)]

DOC = Path(monitor.server.__file__).parent / "openapi.yaml"
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
TOKEN = "fuzz-adm1n-t0ken"
MARKET_TOKEN = "fuzz-m4rket-t0ken"
EVENTS = ["17AOv8G6G5rI0S0", "FUZZ0000000002", "FUZZ0000000003"]


class LoopbackDns(AbstractResolver):
    """Every webhook host is 127.0.0.1: generated URLs never reach another machine."""

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> Any:
        return [
            {"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
             "proto": 0, "flags": 0}
        ]  # fmt: skip

    async def close(self) -> None:
        return None


def fuzz_config(sim_url: str, state: Path, token: str | None) -> Any:
    server: dict[str, Any] = {"listen": "127.0.0.1:0"}
    if token:
        server["admin_token"] = token
    raw = {
        "upstream": {
            "base_url": sim_url, "api_key": API_KEY, "timeout_seconds": 2,
            "rate_limit": {"requests": 50, "per_seconds": 1, "margin": 0.05},
        },
        "state": {"path": str(state)},
        "server": server,
        "log": {"format": "json", "level": "info"},
        "venues": [{"id": "V1", "time_zone": "Europe/Paris"}],
        "watch_sets": [
            {"name": "main", "interval_seconds": 1,
             "events": [EVENTS[0], EVENTS[1], {"id": EVENTS[2], "venue": "V1"}]},
        ],
        "notifications": {
            "retry_schedule": [0, 1, 1],
            "webhooks": [{"name": "ops", "url": "http://127.0.0.1:9/ops",
                          "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}],
        },
        "marketplace": {"base_url": sim_url, "api_token": MARKET_TOKEN},
        "actions": [
            {"name": "reprice-on-sellout", "when": {"to": ["TICKETS_NOT_AVAILABLE"]},
             "listings": {EVENTS[0]: [101]}, "update": {"price": "150.00"}, "dry_run": True},
        ],
    }  # fmt: skip
    return parse_config(yaml.safe_dump(raw), env={})


async def run_schemathesis(url: str, token: str | None, examples: int, cwd: Path) -> str:
    headers = ["-H", f"Authorization: Bearer {token}"] if token else []
    proc = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS), "run", str(DOC), "--url", url, *headers,
        "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful",
        "--max-examples", str(examples), "--seed", "20261204", "--workers", "1",
        "--request-timeout", "10", "--no-color",
        cwd=cwd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    text = out.decode("utf-8", "replace")
    assert proc.returncode == 0, text[-8000:]
    return text


@pytest.mark.parametrize(
    ("token", "examples"), [(TOKEN, 200), (None, 100)], ids=["admin-token", "read-only"]
)
async def test_the_document_holds_against_the_live_daemon(tmp_path, log_stream, token, examples):
    sim = Simulator(seed=7, evolve=True, api_key=API_KEY, record_ids=True)
    MarketplaceSim(token=MARKET_TOKEN).add_routes(sim.app())
    await sim.start()
    daemon = Daemon(
        fuzz_config(sim.url, tmp_path / "s.db", token),
        registry=CollectorRegistry(),
        webhook_resolver=LoopbackDns(),
    )
    try:
        await daemon.start()
        output = await run_schemathesis(daemon.url, token, examples, tmp_path)
        assert "Test cases:" in output and " passed" in output
        sim.log.clear()
        await asyncio.sleep(2.5)  # interval 1 s: polling goes on after the run
        assert any(EVENTS[0] in r.ids for r in sim.log)
        async with aiohttp.ClientSession() as s, s.get(daemon.url + "/readyz") as r:
            assert r.status == 200, await r.text()
    finally:
        await daemon.stop()
        await sim.stop()
    lines = [orjson.loads(x) for x in log_stream.getvalue().splitlines() if x.startswith("{")]
    failed = [x for x in lines if x.get("logger") == "monitor.server" and x["level"] == "error"]
    assert not failed, failed[:3]
    assert "Traceback" not in log_stream.getvalue()

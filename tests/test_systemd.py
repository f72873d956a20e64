"""The daemon under a fake NOTIFY_SOCKET: READY, STATUS, watchdog only while polling, STOPPING."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

import aiohttp

from monitor.simulator import Simulator
from tests.conftest import API_KEY


def read_all(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


async def collect(sock: socket.socket, seconds: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got += read_all(sock)
        await asyncio.sleep(0.05)
    return got + read_all(sock)


async def test_ready_watchdog_while_polling_none_when_stalled_and_stopping(tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    async with Simulator(evolve=False, api_key=API_KEY) as sim:
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(
            f"upstream: {{base_url: '{sim.url}', api_key: {API_KEY}, timeout_seconds: 30,"
            " max_retries: 0}\n"
            f"state: {{path: '{tmp_path / 's.db'}'}}\n"
            "server: {listen: '127.0.0.1:0', stall_seconds: 2}\n"
            "log: {format: json, level: warning}\n"
            "watch_sets:\n  - {name: a, interval_seconds: 1, events: [SDNAAAAAAAAAAAA1]}\n"
        )
        env = {**os.environ, "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "600000"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "--config", str(cfg),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, env=env,
        )  # fmt: skip
        try:
            first = await collect(sock, 3.0)
            assert first and first[0].startswith("READY=1")
            assert any("STATUS=" in m for m in first)
            assert sum(m == "WATCHDOG=1" for m in first) >= 4  # every 0.3 s while polling

            # The upstream now hangs (30 s timeout): no request completes, polling stalls.
            async with aiohttp.ClientSession() as s:
                await s.post(sim.url + "/_sim/faults", json={"kind": "latency", "seconds": 60})
            await asyncio.sleep(3.0)  # past stall_seconds
            read_all(sock)
            stalled = await collect(sock, 2.0)
            assert "WATCHDOG=1" not in stalled

            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 15)
            last = await collect(sock, 0.2)
            assert any(m.startswith("STOPPING=1") for m in last)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            sim.faults.clear()
            sock.close()

"""Kill -9 at a busy moment: after a restart every stored transition still reaches the receiver."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import aiohttp

from monitor.demo.receiver import Receiver
from monitor.notify.signing import new_secret
from monitor.simulator import Simulator
from tests.conftest import API_KEY

SECRET = new_secret()
_DRAINS: set[asyncio.Task[None]] = set()
IDS = [f"CRASH{i:011d}" for i in range(40)]


def write_config(path: Path, sim_url: str, hook_url: str, state: Path) -> None:
    path.write_text(
        f"upstream: {{base_url: '{sim_url}', api_key: {API_KEY}, "
        "rate_limit: {requests: 50, per_seconds: 1}, batch_size: 10}\n"
        f"state: {{path: '{state}'}}\n"
        "server: {listen: '127.0.0.1:0'}\n"
        "log: {format: json}\n"
        f"watch_sets:\n  - {{name: crash, interval_seconds: 1, events: [{', '.join(IDS)}]}}\n"
        "notifications:\n"
        "  retry_schedule: [0, 0.2, 0.2, 0.5, 0.5, 1, 1, 1, 1, 1, 1, 1]\n"
        "  webhooks:\n"
        f"    - {{name: ops, url: '{hook_url}/ops', secret: '{SECRET.reveal()}', max_in_flight: 2}}\n"
    )


async def start(config: Path) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "--config", str(config),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), 20)
        if b"daemon started" in line:
            url = json.loads(line)["listen"]
            _DRAINS.add(asyncio.create_task(_drain(proc)))  # keep the pipe from filling up
            return proc, url
    raise AssertionError("daemon did not start")


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stderr is not None
    while await proc.stderr.readline():
        pass


async def pending(url: str) -> int:
    async with aiohttp.ClientSession() as s, s.get(url + "/v1/subscriptions") as r:
        data = await r.json()
    return sum(sub["pending"] for sub in data["subscriptions"])


async def test_sigkill_mid_flight_loses_no_transition_and_no_webhook(tmp_path):
    async def slow_ok(rec):
        await asyncio.sleep(0.05)
        return 500 if rec.attempt == 1 and int(rec.msg_id.split("_")[2]) % 3 == 0 else 200

    receiver = Receiver(secrets={"/ops": SECRET}, respond=slow_ok)
    await receiver.start()
    state = tmp_path / "state.db"
    config = tmp_path / "monitor.yaml"
    async with Simulator(seed=3, change_seconds=1.0, known_events=set(IDS), api_key=API_KEY) as sim:
        write_config(config, sim.url, receiver.url, state)
        proc, _ = await start(config)
        try:
            # Run until transitions and deliveries are flowing, then kill mid-flight.
            deadline = time.monotonic() + 15
            while len(receiver.received) < 15 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert len(receiver.received) >= 15, "no deliveries before the kill"
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
            killed_at = len(receiver.received)

            proc, url = await start(config)
            await asyncio.sleep(2)  # more transitions after the restart
            sim.world.evolve = False  # statuses freeze: no new transitions from here on
            await asyncio.sleep(1.5)
            deadline = time.monotonic() + 20
            while await pending(url) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert await pending(url) == 0
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            await receiver.stop()

    with sqlite3.connect(state) as db:
        sequences = [
            row[0] for row in db.execute("SELECT sequence FROM transitions ORDER BY sequence")
        ]
    assert len(sequences) >= 10
    assert sequences == list(range(1, len(sequences) + 1))  # no gap, no repeat
    # msg_<writer>_<sequence>_<subscription>: one id per transition, the same after the kill.
    ids_of: dict[int, set[str]] = {}
    for r in receiver.ok("/ops"):
        ids_of.setdefault(int(r.msg_id.split("_")[2]), set()).add(r.msg_id)
    assert set(ids_of) == set(sequences)  # each delivered, nothing that was never stored
    assert all(len(ids) == 1 for ids in ids_of.values())
    assert all(r.verified for r in receiver.received)
    assert len(receiver.received) > killed_at
    assert os.path.getsize(state) > 0

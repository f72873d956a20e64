"""Several replicas on PostgreSQL: leases, fair shares, fencing, claims, and failover."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path

import aiohttp
import asyncpg
import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitor.cluster.coordinator import Coordinator
from monitor.core.transitions import EventState
from monitor.demo.receiver import Receiver
from monitor.metrics import Metrics
from monitor.notify.signing import new_secret
from monitor.simulator import Simulator, max_in_window
from monitor.store.base import Fence, LeaseLost, NewTransition
from monitor.store.postgres import PostgresStore
from tests.conftest import API_KEY
from tests.test_store import PG_DSN, pg_schema  # noqa: F401 - the fixture

SECRET = new_secret()


async def coordinators(schema: str, n: int, lease: float = 2.0, slots: int = 5):
    stores = [PostgresStore(PG_DSN, schema=schema) for _ in range(n)]
    for s in stores:
        await s.open()
    coords = [
        Coordinator(store=s, metrics=Metrics(CollectorRegistry()), shards=16, slots=slots,
                    lease_seconds=lease, replica_id=f"r{i}")
        for i, s in enumerate(stores)
    ]  # fmt: skip
    return stores, coords


async def test_replicas_share_shards_and_budget_slots_fairly(pg_schema):  # noqa: F811
    stores, coords = await coordinators(pg_schema, 3)
    try:
        for c in coords:
            await c.start()
        for _ in range(3):  # joiners take their share as others give up their surplus
            for c in coords:
                await c.cycle()
        shards = [set(c.owned) for c in coords]
        assert set().union(*shards) == set(range(16))
        assert sum(len(s) for s in shards) == 16  # exclusive
        assert sorted(len(s) for s in shards) == [5, 5, 6]
        assert sorted(len(c.owned_slots) for c in coords) == [1, 2, 2]  # 5 requests a window
    finally:
        for c in coords:
            await c.stop()
        for s in stores:
            await s.close()


async def test_a_dead_replicas_shards_are_taken_over_within_a_lease(pg_schema):  # noqa: F811
    stores, coords = await coordinators(pg_schema, 2, lease=2.0)
    a, b = coords
    try:
        await a.start()
        await b.start()
        for _ in range(2):
            await a.cycle()
            await b.cycle()
        assert b.owned
        b._task.cancel()  # dies: no renewal, no release
        started = time.monotonic()
        while set(a.owned) != set(range(16)):
            assert time.monotonic() - started < 2.0 + 2.0, "not taken over in time"
            await asyncio.sleep(0.2)
            await a.cycle()
        assert time.monotonic() - started <= 2.0 * 1.5
    finally:
        await a.stop()
        for s in stores:
            await s.close()


async def test_a_write_with_a_stale_fencing_token_is_refused(pg_schema):  # noqa: F811
    stores, coords = await coordinators(pg_schema, 2, lease=2.0)
    a, b = coords
    store = stores[0]
    try:
        await a.start()
        eid = next(f"EV{i:014d}" for i in range(1000) if a.mine(f"EV{i:014d}"))
        stale = a.fence([eid])
        # a pauses; its lease expires; b takes the shard over (with a new token)
        a._task.cancel()
        await asyncio.sleep(2.2)
        await b.start()
        assert b.mine(eid)
        t = NewTransition(eid, "status", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", ("s",), 1.0)
        with pytest.raises(LeaseLost):
            await store.record({eid: EventState()}, [t], 1.0, fence=stale)
        assert await store.transitions_since(0, 10) == []
        assert await store.load_states([eid]) == {}
        ok = await store.record({eid: EventState()}, [t], 1.0, fence=b.fence([eid]))
        assert [x.sequence for x in ok] == [1]
        with pytest.raises(LeaseLost):  # a shard we never held
            await store.record({}, [t], 1.0, fence=Fence("nobody", {0: 1}))
    finally:
        await b.stop()
        for s in stores:
            await s.close()


async def test_two_workers_never_claim_the_same_delivery(pg_schema):  # noqa: F811
    one, two = PostgresStore(PG_DSN, schema=pg_schema), PostgresStore(PG_DSN, schema=pg_schema)
    await one.open()
    await two.open()
    try:
        news = [
            NewTransition(f"E{i}", "status", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", ("s",), 1.0)
            for i in range(20)
        ]
        await one.record({}, news, 1.0, [["hook"]] * 20, 1.0)
        a, b = await asyncio.gather(
            one.due_deliveries("hook", 10.0, 20, "r1", 60.0),
            two.due_deliveries("hook", 10.0, 20, "r2", 60.0),
        )
        assert {d.id for d in a}.isdisjoint({d.id for d in b})
        assert len(a) + len(b) == 20
        assert await two.due_deliveries("hook", 10.0, 20, "r3", 60.0) == []  # all claimed
        again = await two.due_deliveries("hook", 100.0, 20, "r2", 60.0)  # claims lapsed
        assert len(again) == 20
    finally:
        await one.close()
        await two.close()


# -- three daemon processes --------------------------------------------------------------------

IDS = [f"REPL{i:012d}" for i in range(60)]


def replica_config(path: Path, sim_url: str, hook: str, schema: str, port: int, i: int) -> None:
    path.write_text(
        yaml.safe_dump(
            {
                "upstream": {
                    "base_url": sim_url, "api_key": API_KEY, "batch_size": 10,
                    "rate_limit": {"requests": 6, "per_seconds": 1, "margin": 0.05},
                },
                "state": {"backend": "postgres", "dsn": PG_DSN, "schema": schema},
                "cluster": {"shards": 12, "lease_seconds": 3, "replica_id": f"replica-{i}"},
                "server": {"listen": f"127.0.0.1:{port}"},
                "log": {"format": "json", "level": "info"},
                "watch_sets": [{"name": "all", "interval_seconds": 1, "events": IDS}],
                "notifications": {
                    "retry_schedule": [0, 0.5, 0.5, 1, 1, 1, 1, 1],
                    "webhooks": [{"name": "ops", "url": f"{hook}/ops", "secret": SECRET.reveal()}],
                },
            }
        )
    )  # fmt: skip


async def start_replica(config: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "run", "--config", str(config),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return proc


async def metric(url: str, name: str) -> float:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


async def wait_baselines(schema: str, n: int = len(IDS), seconds: float = 20.0) -> None:
    """Until every event has its first observation stored (changes before that are baselines,
    not transitions)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn = await asyncpg.connect(PG_DSN)
        try:
            stored = await conn.fetchval(f'SELECT count(*) FROM "{schema}".event_state')
        finally:
            await conn.close()
        if stored >= n:
            return
        await asyncio.sleep(0.3)
    raise AssertionError("baselines not stored in time")


async def test_failover_three_replicas_one_killed(tmp_path, pg_schema):  # noqa: F811
    receiver = Receiver(secrets={"/ops": SECRET})
    await receiver.start()
    ports = free_ports(3)
    procs: list[asyncio.subprocess.Process] = []
    async with Simulator(evolve=False, api_key=API_KEY, record_ids=True) as sim:
        try:
            for i in range(3):
                cfg = tmp_path / f"r{i}.yaml"
                replica_config(cfg, sim.url, receiver.url, pg_schema, ports[i], i)
                procs.append(await start_replica(cfg))
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    owned = [
                        await metric(u, "availability_monitor_cluster_shards_owned") for u in urls
                    ]
                except aiohttp.ClientError:
                    owned = [0.0]
                if sum(owned) == 12 and min(owned) > 0:
                    break
                await asyncio.sleep(0.3)
            assert sum(owned) == 12 and min(owned) > 0, owned
            await wait_baselines(pg_schema)

            # Scripted changes, some before and some after one replica dies.
            for eid in IDS[:20]:
                sim.world.set_status(eid, status="FEW_TICKETS_LEFT")
            await asyncio.sleep(2.5)
            procs[0].send_signal(signal.SIGKILL)
            await procs[0].wait()
            killed_at = time.monotonic()
            for eid in IDS[20:40]:
                sim.world.set_status(eid, status="TICKETS_NOT_AVAILABLE")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                owned = [
                    await metric(u, "availability_monitor_cluster_shards_owned") for u in urls[1:]
                ]
                if sum(owned) == 12:
                    break
                await asyncio.sleep(0.2)
            takeover = time.monotonic() - killed_at
            assert sum(owned) == 12, owned
            # Within about one lease period (3 s), plus a renewal cycle and scrape slack.
            assert takeover <= 3 + 1 + 3, takeover
            await asyncio.sleep(4)  # the survivors poll the orphaned events
            deadline = time.monotonic() + 40
            expected = 40
            while len({r.msg_id for r in receiver.ok()}) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    await asyncio.wait_for(p.wait(), 15)
                except TimeoutError:
                    p.kill()
                    await p.wait()
            await receiver.stop()
        requests = [r for r in sim.log if r.api == "inventory"]

    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(
            f'SELECT sequence, event_id, field, previous, current FROM "{pg_schema}".transitions'
        )
    finally:
        await conn.close()
    seen = [(r["event_id"], r["previous"], r["current"]) for r in rows]
    assert len(seen) == len(set(seen)) == 40  # every scripted change exactly once
    assert {e for e, _, _ in seen} == set(IDS[:40])
    delivered = {int(r.msg_id.split("_")[2]) for r in receiver.ok()}  # msg_<writer>_<seq>_<sub>
    assert {r["sequence"] for r in rows} <= delivered
    assert max_in_window(requests, 1.0) <= 6  # the key's limit held across all replicas
    print(json.dumps({"takeover_seconds": round(takeover, 2), "requests": len(requests)}))


async def test_a_paused_replica_writes_nothing_after_takeover(tmp_path, pg_schema):  # noqa: F811
    receiver = Receiver(secrets={"/ops": SECRET})
    await receiver.start()
    ports = free_ports(2)
    procs: list[asyncio.subprocess.Process] = []
    async with Simulator(evolve=False, api_key=API_KEY) as sim:
        try:
            for i in range(2):
                cfg = tmp_path / f"r{i}.yaml"
                replica_config(cfg, sim.url, receiver.url, pg_schema, ports[i], i)
                procs.append(await start_replica(cfg))
            urls = [f"http://127.0.0.1:{p}" for p in ports]
            deadline = time.monotonic() + 20
            owned = [0.0, 0.0]
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    owned = [
                        await metric(u, "availability_monitor_cluster_shards_owned") for u in urls
                    ]
                if sum(owned) == 12 and min(owned) > 0:
                    break
                await asyncio.sleep(0.3)
            await wait_baselines(pg_schema)
            procs[0].send_signal(signal.SIGSTOP)  # paused mid-flight, leases run out
            for eid in IDS:
                sim.world.set_status(eid, status="FEW_TICKETS_LEFT")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                if await metric(urls[1], "availability_monitor_cluster_shards_owned") == 12:
                    break
                await asyncio.sleep(0.2)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:  # the survivor records every change
                conn = await asyncpg.connect(PG_DSN)
                try:
                    n = await conn.fetchval(f'SELECT count(*) FROM "{pg_schema}".transitions')
                finally:
                    await conn.close()
                if n >= len(IDS):
                    break
                await asyncio.sleep(0.5)
            procs[0].send_signal(signal.SIGCONT)  # wakes up with stale memory and leases
            await asyncio.sleep(4)
        finally:
            for p in procs:
                if p.returncode is None:
                    p.send_signal(signal.SIGCONT)
                    p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    await asyncio.wait_for(p.wait(), 15)
                except TimeoutError:
                    p.kill()
                    await p.wait()
            await receiver.stop()
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(f'SELECT event_id FROM "{pg_schema}".transitions')
    finally:
        await conn.close()
    events = [r["event_id"] for r in rows]
    # The fencing property: the resumed replica, with stale memory and stale tokens, wrote no
    # second copy of any transition the survivor had recorded.
    assert len(events) == len(set(events)) == len(IDS)

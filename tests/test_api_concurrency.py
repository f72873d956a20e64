"""Concurrency and intent in the API: no lost update, one winner per name, all or nothing.

Against live daemons on loopback, on SQLite and on PostgreSQL (two replicas on one schema).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from monitor.registry import KIND
from monitor.secrets import Secret
from tests.conftest import make_config
from tests.test_store import PG_DSN, backend, pg_schema  # noqa: F401 - the fixtures

TOKEN = "adm1n-t0ken-concurrency"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def with_token(cfg: Any) -> Any:
    return cfg.model_copy(
        update={"server": cfg.server.model_copy(update={"admin_token": Secret(TOKEN)})}
    )


async def call(s: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> tuple:
    async with s.request(method, url, json=body, headers=AUTH) as r:
        return r.status, (await r.json() if r.status != 204 else None)


# -- the store: create-if-absent and compare-and-swap, both backends ---------------------------


async def test_create_if_absent_and_compare_and_swap(backend):  # noqa: F811
    store = backend.make()
    await store.open()
    try:
        results = await asyncio.gather(
            *(store.create_object(KIND, "one", {"name": "one", "n": i}) for i in range(10))
        )
        assert sorted(results) == [False] * 9 + [True]
        [winner] = [i for i, ok in enumerate(results) if ok]
        assert (await store.load_objects(KIND))["one"] == {"name": "one", "n": winner}
        old = {"name": "one", "n": winner}
        assert await store.replace_object(KIND, "one", old, {"name": "one", "n": 100})
        assert not await store.replace_object(KIND, "one", old, {"name": "one", "n": 200})
        # A value compares as JSON: 100 and 100.0 are the same number.
        assert await store.replace_object(KIND, "one", {"n": 100.0, "name": "one"}, {"n": 1})
        assert not await store.replace_object(KIND, "gone", {}, {"n": 1})
        assert (await store.load_objects(KIND))["one"] == {"n": 1}
    finally:
        await store.close()


# -- one daemon --------------------------------------------------------------------------------


@pytest.fixture
async def daemon(sim, tmp_path, start_daemon):
    cfg = make_config(sim.url, tmp_path / "s.db", "watch_sets:\n  - {name: main, events: [C0]}\n")
    return await start_daemon(with_token(cfg))


async def test_concurrent_additions_are_all_kept(daemon):
    async with aiohttp.ClientSession() as s:
        status, _ = await call(s, "POST", daemon.url + "/v1/watch-sets", {"name": "w"})
        assert status == 201
        answers = await asyncio.gather(
            *(
                call(s, "POST", daemon.url + "/v1/watch-sets/w/events", {"events": [f"C{i}"]})
                for i in range(1, 101)
            )
        )
        assert answers == [(200, {"added": 1})] * 100
        status, shown = await call(s, "GET", daemon.url + "/v1/watch-sets/w")
    assert shown["event_count"] == 100
    stored = (await daemon.store.load_objects(KIND))["w"]
    assert len(stored["events"]) == 100
    assert set(daemon.catalog.sets["w"].event_ids) == {f"C{i}" for i in range(1, 101)}


async def test_concurrent_creates_of_one_name_have_one_winner(daemon):
    async with aiohttp.ClientSession() as s:
        subs = await asyncio.gather(
            *(
                call(s, "POST", daemon.url + "/v1/subscriptions",
                     {"name": "dup", "url": f"http://8.8.8.{i}/x"})
                for i in range(20)
            )
        )  # fmt: skip
        sets = await asyncio.gather(
            *(
                call(s, "POST", daemon.url + "/v1/watch-sets",
                     {"name": "dup", "events": [f"D{i}"]})
                for i in range(20)
            )
        )  # fmt: skip
    assert sorted(status for status, _ in subs) == [201] + [409] * 19
    [(_, won)] = [a for a in subs if a[0] == 201]
    stored = (await daemon.store.load_objects("subscription"))["dup"]
    assert stored["secrets"] == [won["secret"]] and stored["url"] == won["url"]
    assert sorted(status for status, _ in sets) == [201] + [409] * 19
    stored_set = (await daemon.store.load_objects(KIND))["dup"]
    assert daemon.catalog.sets["dup"].event_ids == tuple(
        e if isinstance(e, str) else e["id"] for e in stored_set["events"]
    )


async def test_a_refused_interval_stores_nothing_and_later_changes_work(daemon):
    async with aiohttp.ClientSession() as s:
        body = {"name": "huge", "interval_seconds": 5e16, "events": ["X1"]}
        status, data = await call(s, "POST", daemon.url + "/v1/watch-sets", body)
        assert status == 400 and data["field"] == "interval_seconds"
        assert "huge" not in await daemon.store.load_objects(KIND)
        assert (await call(s, "POST", daemon.url + "/v1/watch-sets", {"name": "ok"}))[0] == 201
        assert (await call(s, "DELETE", daemon.url + "/v1/watch-sets/ok"))[0] == 204


async def test_a_change_that_cannot_be_applied_is_not_stored(daemon, monkeypatch):
    def broken() -> None:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(daemon.scheduler, "reschedule", broken)
    async with aiohttp.ClientSession() as s:
        status, data = await call(s, "POST", daemon.url + "/v1/watch-sets", {"name": "x"})
        assert status == 422 and "OverflowError" in data["error"]
        assert "x" not in await daemon.store.load_objects(KIND)
        assert "x" not in daemon.catalog.sets and "x" not in daemon.registry.sets()
        monkeypatch.undo()
        assert (await call(s, "POST", daemon.url + "/v1/watch-sets", {"name": "x"}))[0] == 201
    assert "x" in daemon.catalog.sets


async def test_a_store_that_fails_changes_nothing(daemon):
    async with aiohttp.ClientSession() as s:
        assert (await call(s, "POST", daemon.url + "/v1/watch-sets", {"name": "w"}))[0] == 201
        await daemon.store._run(daemon.store._db.execute, "PRAGMA query_only = 1")
        try:
            body = {"events": ["F1"]}
            status, data = await call(s, "POST", daemon.url + "/v1/watch-sets/w/events", body)
            assert status == 503 and "nothing was changed" in data["error"]
            status, _ = await call(s, "POST", daemon.url + "/v1/watch-sets", {"name": "v"})
            assert status == 503
        finally:
            await daemon.store._run(daemon.store._db.execute, "PRAGMA query_only = 0")
        assert daemon.catalog.sets["w"].event_ids == ()
        assert "v" not in daemon.catalog.sets and "v" not in daemon.registry.sets()
        status, data = await call(s, "POST", daemon.url + "/v1/watch-sets/w/events", body)
        assert (status, data) == (200, {"added": 1})


# -- stored by an older version ----------------------------------------------------------------


async def _store_rows(path, rows: dict[str, dict[str, Any]]) -> None:
    import sqlite3

    conn = sqlite3.connect(path)
    try:
        for name, spec in rows.items():
            conn.execute(
                "INSERT INTO objects (kind, name, spec) VALUES (?, ?, ?)",
                (KIND, name, orjson.dumps(spec).decode()),
            )
        conn.commit()
    finally:
        conn.close()


async def test_stored_sets_that_no_longer_validate_are_skipped_at_start(
    sim, tmp_path, start_daemon, log_stream
):
    body = "watch_sets:\n  - {name: main, events: [{id: TZ1, time_zone: Europe/Paris}]}\n"
    cfg = with_token(make_config(sim.url, tmp_path / "s.db", body))
    first = await start_daemon(cfg)
    await first.stop()
    await _store_rows(
        tmp_path / "s.db",
        {
            "huge": {"name": "huge", "interval_seconds": 5e16, "events": ["X1"]},
            "clash": {"name": "clash", "events": [{"id": "TZ1", "time_zone": "Asia/Tokyo"}]},
            "fine": {"name": "fine", "events": ["OK1"]},
        },
    )
    d = await start_daemon(cfg)
    assert set(d.registry.sets()) == {"fine"} and "fine" in d.catalog.sets
    await d.scheduler.run_once()
    errors = [orjson.loads(x) for x in log_stream.getvalue().splitlines() if '"watch_set"' in x]
    refused = {e["watch_set"] for e in errors if "left out" in e["event"]}
    assert refused == {"huge", "clash"}
    assert all("DELETE /v1/watch-sets" in e["event"] for e in errors if "left out" in e["event"])
    async with aiohttp.ClientSession() as s:
        status, data = await call(s, "POST", d.url + "/v1/watch-sets", {"name": "huge"})
        assert status == 409 and "delete it first" in data["error"]
        assert (await call(s, "DELETE", d.url + "/v1/watch-sets/huge"))[0] == 204
        assert (await call(s, "POST", d.url + "/v1/watch-sets", {"name": "huge"}))[0] == 201
    assert set(await d.store.load_objects(KIND)) == {"huge", "clash", "fine"}
    assert (await d.store.load_objects(KIND))["huge"]["interval_seconds"] == 60


# -- two replicas on one PostgreSQL schema -------------------------------------------------------


async def test_two_replicas_one_winner_and_no_lost_update(
    sim,
    tmp_path,
    start_daemon,
    pg_schema,  # noqa: F811
):
    state = {"backend": "postgres", "dsn": PG_DSN, "schema": pg_schema}
    replicas = []
    for i in range(2):
        cfg = with_token(make_config(sim.url, tmp_path / f"r{i}.db", ""))
        cfg = cfg.model_copy(
            update={
                "state": cfg.state.model_validate(state),
                "cluster": cfg.cluster.model_copy(update={"replica_id": f"r{i}"}),
            }
        )
        replicas.append(await start_daemon(cfg))
    a, b = replicas
    async with aiohttp.ClientSession() as s:
        made = await asyncio.gather(
            *(
                call(s, "POST", d.url + "/v1/watch-sets", {"name": "shared", "events": [f"S{i}"]})
                for i, d in enumerate([a, b, a, b])
            )
        )
        assert sorted(status for status, _ in made) == [201, 409, 409, 409]
        subs = await asyncio.gather(
            *(
                call(s, "POST", d.url + "/v1/subscriptions",
                     {"name": "desk", "url": f"http://8.8.4.{i}/x"})
                for i, d in enumerate([a, b, a, b])
            )
        )  # fmt: skip
        assert sorted(status for status, _ in subs) == [201, 409, 409, 409]
        # The replica that lost the race learns of the set on reload; both then add at once.
        for d in (a, b):
            await d.registry.load()
        added = await asyncio.gather(
            call(s, "POST", a.url + "/v1/watch-sets/shared/events", {"events": ["FROM_A"]}),
            call(s, "POST", b.url + "/v1/watch-sets/shared/events", {"events": ["FROM_B"]}),
        )
        assert added == [(200, {"added": 1})] * 2
    stored = (await a.store.load_objects(KIND))["shared"]
    ids = {e if isinstance(e, str) else e["id"] for e in stored["events"]}
    assert {"FROM_A", "FROM_B"} <= ids and len(ids) == 3


async def test_stored_subscriptions_that_no_longer_validate_are_skipped_at_start(
    sim, tmp_path, start_daemon, log_stream
):
    import sqlite3

    cfg = with_token(make_config(sim.url, tmp_path / "s.db", ""))
    first = await start_daemon(cfg)
    await first.stop()
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    old = {"name": "old", "url": "http://8.8.8.8/x", "secrets": [secret],
           "filter": {"to": ["SOLD_OUT"]}}  # fmt: skip
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute(
        "INSERT INTO objects (kind, name, spec) VALUES ('subscription', 'old', ?)",
        (orjson.dumps(old).decode(),),
    )
    conn.commit()
    conn.close()
    d = await start_daemon(cfg)
    assert d.subscriptions.get("old") is None
    text = log_stream.getvalue()
    assert "a stored subscription is left out" in text and secret not in text
    async with aiohttp.ClientSession() as s:
        body = {"name": "old", "url": "http://8.8.8.8/y"}
        status, data = await call(s, "POST", d.url + "/v1/subscriptions", body)
        assert status == 409 and "delete it first" in data["error"]
        assert (await call(s, "DELETE", d.url + "/v1/subscriptions/old"))[0] == 204
        assert (await call(s, "POST", d.url + "/v1/subscriptions", body))[0] == 201


async def test_limits_on_objects_hold_under_concurrency(daemon, monkeypatch):
    import monitor.server.api
    import monitor.server.watch_sets_api

    monkeypatch.setattr(monitor.server.watch_sets_api, "MAX_WATCH_SETS", 3)
    monkeypatch.setattr(monitor.server.api, "MAX_API_SUBSCRIPTIONS", 2)
    async with aiohttp.ClientSession() as s:
        sets = await asyncio.gather(
            *(call(s, "POST", daemon.url + "/v1/watch-sets", {"name": f"s{i}"}) for i in range(10))
        )
        subs = await asyncio.gather(
            *(
                call(s, "POST", daemon.url + "/v1/subscriptions",
                     {"name": f"h{i}", "url": "http://8.8.8.8/x"})
                for i in range(10)
            )
        )  # fmt: skip
    assert sorted(status for status, _ in sets) == [201] * 2 + [409] * 8  # "main" is the third
    assert len(daemon.registry.listing()) == 3
    assert sorted(status for status, _ in subs) == [201] * 2 + [409] * 8
    assert all("at most" in data["error"] for status, data in subs if status == 409)

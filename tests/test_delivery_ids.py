"""Webhook ids are unique forever: a new, restored or other database never gives a used one.

Receivers deduplicate by `webhook-id` (as the README recommends), so a repeated id drops a real
message. Sequences start again at 1 in a new database and go back in a restored one; the ids
must not. And one delivery keeps its id across retries and restarts.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from monitor.store.base import NewTransition, Store
from monitor.store.postgres import PostgresStore
from monitor.store.sqlite import SQLiteStore
from tests.test_store import PG_DSN, _fresh_schema, _pg_sql

ID = re.compile(r"msg_[a-z2-7]{26}_(\d+)_([a-z]+)")


def tr(event_id: str) -> NewTransition:
    return NewTransition(event_id, "status", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", ("m",), 1.0)


async def deliver(store: Store, n: int, at: float = 1.0) -> list[str]:
    """Record `n` transitions for subscriptions a and b; the ids of their pending deliveries."""
    stored = await store.record({}, [tr(f"E{i}") for i in range(n)], at, [["a", "b"]] * n, at)
    seqs = {t.sequence for t in stored}
    rows = [*await store.pending_rows("a", 10_000), *await store.pending_rows("b", 10_000)]
    return sorted(r.id for r in rows if r.sequence in seqs)


async def test_the_id_names_sequence_and_subscription(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    try:
        ids = await deliver(store, 2)
        assert {(m[1], m[2]) for i in ids if (m := ID.fullmatch(i))} == {
            ("1", "a"), ("1", "b"), ("2", "a"), ("2", "b"),
        }  # fmt: skip
        assert ids == sorted(store.delivery_id(s, sub) for s in (1, 2) for sub in "ab")
    finally:
        await store.close()


async def test_a_new_or_restored_sqlite_file_never_repeats_an_id(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    seen: set[str] = set()

    async def session(n: int) -> list[str]:
        store = SQLiteStore(path)
        await store.open()
        try:
            return await deliver(store, n)
        finally:
            await store.close()

    first = await session(3)
    seen.update(first)
    shutil.copy(path, tmp_path / "backup.db")  # a backup after sequence 3 (store closed)
    seen.update(await session(4))  # sequences 4..7
    # Restored: sequences 4..7 are given again.
    shutil.copy(tmp_path / "backup.db", path)
    restored = await session(4)
    assert [int(ID.fullmatch(i)[1]) for i in restored] == [4, 4, 5, 5, 6, 6, 7, 7]  # type: ignore[index]
    assert not seen & set(restored)
    seen.update(restored)
    # A new file (the old one deleted, a new volume): sequences start at 1 again.
    for f in tmp_path.glob("state.db*"):
        f.unlink()
    fresh = await session(3)
    assert sorted(int(ID.fullmatch(i)[1]) for i in fresh) == [1, 1, 2, 2, 3, 3]  # type: ignore[index]
    assert not seen & set(fresh)


async def test_a_pending_delivery_keeps_its_id_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    await store.open()
    ids = await deliver(store, 2)
    await store.delivery_retry(ids[0], 1, 5.0, "HTTP 500")
    await store.close()
    again = SQLiteStore(path)
    await again.open()
    try:
        due = await again.due_deliveries("a", 10.0, 10) + await again.due_deliveries("b", 10.0, 10)
        assert sorted(d.id for d in due) == ids
        assert again.delivery_id(1, "a") not in ids  # new deliveries get the new writer
    finally:
        await again.close()


async def test_a_database_written_by_an_older_daemon_gets_new_ids(tmp_path: Path) -> None:
    """Its pending rows keep their `msg_<sequence>_<subscription>` ids; new ones differ from
    every id any other database gives."""
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    await store.open()
    await deliver(store, 1)
    await store.close()
    old = sqlite3.connect(path)
    old.execute("UPDATE deliveries SET id = 'msg_' || sequence || '_' || subscription")
    old.execute("DROP TABLE store_meta")
    old.execute("PRAGMA user_version = 4")  # the schema before this version
    old.commit()
    old.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        kept = sorted(r.id for r in await store.pending_rows("a", 10))
        assert kept == ["msg_1_a"]
        new = await deliver(store, 1, at=2.0)
        assert all(ID.fullmatch(i) for i in new) and "msg_2_a" not in new
    finally:
        await store.close()


@pytest.fixture
async def pg_schema_name() -> AsyncIterator[str]:
    async with _fresh_schema() as schema:
        yield schema


async def test_postgres_ids_differ_across_schemas_restores_and_replicas(
    pg_schema_name: str,
) -> None:
    schema = pg_schema_name
    one, two = PostgresStore(PG_DSN, schema=schema), PostgresStore(PG_DSN, schema=schema)
    await one.open()
    await two.open()
    try:
        seen = set(await deliver(one, 3)) | set(await deliver(two, 3))
        assert len(seen) == 12  # two replicas, one database: sequences 1..6, ids all distinct
        # Restored under the running replicas: the sequence goes back to 2.
        await _pg_sql(schema, "DELETE FROM deliveries; DELETE FROM transitions WHERE sequence > 2")
        await _pg_sql(schema, "SELECT setval('transitions_sequence_seq', 2)")
        again = await deliver(one, 3) + await deliver(two, 3)
        assert sorted({int(ID.fullmatch(i)[1]) for i in again}) == [3, 4, 5, 6, 7, 8]  # type: ignore[index]
        assert not seen & set(again)
    finally:
        await one.close()
        await two.close()
    async with _fresh_schema() as other:
        store = PostgresStore(PG_DSN, schema=other)
        await store.open()
        try:
            assert not seen & set(await deliver(store, 3))  # a new database: 1..3 again
        finally:
            await store.close()

"""The store suite: every Store method, run against SQLite and PostgreSQL alike.

PostgreSQL comes from `MONITOR_TEST_PG_DSN` (default: the loopback server as `postgres`); each
test gets a fresh schema, dropped afterwards. Its tests skip only when no server can be reached.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from monitor.core.transitions import EventState
from monitor.domain import Transition
from monitor.store import postgres_sql, sqlite_outbox
from monitor.store.base import (
    Delivery,
    NewTransition,
    PendingDelivery,
    Store,
    StoredState,
)
from monitor.store.postgres import PostgresStore
from monitor.store.sqlite import SQLiteStore

PG_DSN = os.environ.get("MONITOR_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")

AVAILABLE, FEW, NONE = "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE"


# -- backends ----------------------------------------------------------------------------------


@dataclass
class Backend:
    """One store backend under test: how to make (and re-make) its store and poke its tables."""

    name: str
    make: Callable[[], Store]
    sql: Callable[[str], Awaitable[None]]  # raw SQL on the store's tables, outside the store
    integrity_error: type[Exception]


_pg_probe: dict[str, str | None] = {}


def _masked(dsn: str) -> str:
    dsn = re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", dsn)
    return re.sub(r"(password=)[^&]*", r"\1***", dsn)


async def _pg_unreachable() -> str | None:
    """Why PostgreSQL cannot be reached (None when it can); asked once per session."""
    if PG_DSN not in _pg_probe:
        try:
            conn = await asyncpg.connect(PG_DSN, timeout=5)
        except (OSError, TimeoutError) as exc:
            # Only "no server there": a server that refuses us (auth, missing database) is a
            # broken setup and fails the tests instead.
            _pg_probe[PG_DSN] = (
                f"no PostgreSQL server reachable at {_masked(PG_DSN)} ({exc!r}); "
                "set MONITOR_TEST_PG_DSN or start one"
            )
        else:
            await conn.close()
            _pg_probe[PG_DSN] = None
    return _pg_probe[PG_DSN]


async def _pg_sql(schema: str, statement: str) -> None:
    conn = await asyncpg.connect(PG_DSN, server_settings={"search_path": schema})
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@asynccontextmanager
async def _fresh_schema() -> AsyncIterator[str]:
    reason = await _pg_unreachable()
    if reason is not None:
        pytest.skip(reason)
    schema = f"test_store_{uuid.uuid4().hex[:16]}"
    try:
        yield schema
    finally:
        await _pg_sql("public", f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A fresh, unique schema name on the test server (dropped afterwards); skips without one."""
    async with _fresh_schema() as schema:
        yield schema


def _sqlite_backend(path: Path) -> Backend:
    async def run_sql(statement: str) -> None:
        conn = sqlite3.connect(path)
        try:
            conn.execute(statement)
            conn.commit()
        finally:
            conn.close()

    return Backend("sqlite", lambda: SQLiteStore(path), run_sql, sqlite3.IntegrityError)


@pytest.fixture(params=["sqlite", "postgres"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each backend in turn, on fresh storage."""
    if request.param == "sqlite":
        yield _sqlite_backend(tmp_path / "state.db")
        return
    async with _fresh_schema() as schema:

        async def run_sql(statement: str) -> None:
            await _pg_sql(schema, statement)

        yield Backend(
            "postgres",
            lambda: PostgresStore(PG_DSN, schema=schema),
            run_sql,
            asyncpg.IntegrityConstraintViolationError,
        )


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    """An open store on the backend, closed afterwards."""
    s = backend.make()
    await s.open()
    yield s
    await s.close()


# -- helpers -----------------------------------------------------------------------------------


def state(status: str | None = AVAILABLE, pending: str | None = None, streak: int = 0,
          resale: str | None = None) -> EventState:  # fmt: skip
    return EventState((status, pending, streak), (resale, None, 0))


def tr(event_id: str, previous: str = AVAILABLE, current: str = FEW, *, field: str = "status",
       sets: tuple[str, ...] = ("main",), at: float = 1000.0,
       extra: dict[str, Any] | None = None) -> NewTransition:  # fmt: skip
    return NewTransition(event_id, field, previous, current, sets, at, extra or {})


def stored(seq: int, t: NewTransition) -> Transition:
    return Transition(
        seq, t.event_id, t.watch_sets, t.field, t.previous, t.current, t.observed_at, t.extra
    )


def pending(store: Store, seq: int, sub: str, t: NewTransition, at: float, **kw: Any) -> Delivery:
    fields: dict[str, Any] = {"attempts": 0, "next_attempt_at": at, "state": "pending", **kw}
    return Delivery(store.delivery_id(seq, sub), sub, stored(seq, t), created_at=at, **fields)


def ids(deliveries: list[Delivery]) -> list[str]:
    return [d.id for d in deliveries]


# -- states ------------------------------------------------------------------------------------


async def test_record_and_load_states_round_trip(store: Store) -> None:
    first = {
        "A": state(AVAILABLE),
        "B": EventState((FEW, NONE, 2), (AVAILABLE, FEW, 1)),
        "C": EventState((None, None, 0), (None, None, 0)),
    }
    assert await store.record(first, [], 100.5) == []
    await store.record({"A": state(FEW, AVAILABLE, 1), "D": state(NONE)}, [], 200.25)
    assert await store.load_states() == {
        "A": StoredState(state(FEW, AVAILABLE, 1), 200.25),
        "B": StoredState(EventState((FEW, NONE, 2), (AVAILABLE, FEW, 1)), 100.5),
        "C": StoredState(EventState(), 100.5),
        "D": StoredState(state(NONE), 200.25),
    }


async def test_a_batch_of_1000_states_round_trips(store: Store) -> None:
    changed = {f"EV{i:06d}": state(AVAILABLE if i % 2 else FEW, streak=i % 3) for i in range(1000)}
    await store.record(changed, [], 1.0)
    loaded = await store.load_states()
    assert {k: v.state for k, v in loaded.items()} == changed


async def test_an_empty_record_is_a_no_op(store: Store) -> None:
    assert await store.record({}, [], 5.0, [["hook"]], 1.0) == []
    assert await store.load_states() == {}
    assert await store.last_sequence() == 0
    assert await store.outbox_counts() == {}
    assert await store.transitions_since(0, 10) == []


async def test_save_observed_only_moves_observation_times_forward(store: Store) -> None:
    await store.record({"A": state(), "B": state()}, [], 100.0)
    await store.save_observed([(150.0, "A"), (50.0, "B"), (120.0, "A"), (175.0, "GHOST")])
    await store.save_observed([])
    loaded = await store.load_states()
    assert {k: v.observed_at for k, v in loaded.items()} == {"A": 150.0, "B": 100.0}
    assert loaded["A"].state == state()  # only the time moves


async def test_save_observed_takes_more_than_one_chunk(store: Store) -> None:
    await store.record({f"E{i}": state() for i in range(50)}, [], 1.0)
    items = [(2.0 + i % 7, f"E{i % 25_000}") for i in range(25_050)]
    await store.save_observed(items)
    loaded = await store.load_states()
    assert all(loaded[f"E{i}"].observed_at == 2.0 + max(j % 7 for j in (i, i + 25_000))
               for i in range(50))  # fmt: skip


# -- transitions and sequences -----------------------------------------------------------------


async def test_record_gives_ascending_sequences_and_keeps_every_field(store: Store) -> None:
    new = [
        tr("A", sets=("seattle", "all"), at=1764081868.123456),
        tr("A", FEW, NONE, field="resale_status", extra={"venue": "KovZpZA7AAEA", "n": 1}),
        tr("B", sets=()),
    ]
    got = await store.record({"A": state(NONE), "B": state(FEW)}, new, 1764081868.5)
    assert got == [stored(1, new[0]), stored(2, new[1]), stored(3, new[2])]
    assert await store.transitions_since(0, 10) == got
    assert await store.last_sequence() == 3


async def test_transitions_since_pages_oldest_first(store: Store) -> None:
    new = [tr(f"E{i}", at=float(i)) for i in range(7)]
    await store.record({}, new[:4], 1.0)
    await store.record({}, new[4:], 2.0)
    pages, since = [], 0
    while page := await store.transitions_since(since, 3):
        pages.append([t.sequence for t in page])
        since = page[-1].sequence
    assert pages == [[1, 2, 3], [4, 5, 6], [7]]
    assert [t.event_id for t in await store.transitions_since(5, 100)] == ["E5", "E6"]
    assert await store.transitions_since(7, 100) == []


async def test_sequences_continue_after_close_and_reopen(backend: Backend) -> None:
    first = backend.make()
    await first.open()
    got = await first.record({"A": state(FEW)}, [tr("A"), tr("B")], 1.0)
    assert [t.sequence for t in got] == [1, 2]
    await first.close()
    second = backend.make()
    await second.open()
    try:
        assert await second.last_sequence() == 2
        assert (await second.load_states())["A"] == StoredState(state(FEW), 1.0)
        assert [t.sequence for t in await second.record({}, [tr("C")], 2.0)] == [3]
        assert [t.sequence for t in await second.transitions_since(0, 10)] == [1, 2, 3]
    finally:
        await second.close()


async def test_sequences_never_repeat_when_rows_are_deleted(backend: Backend, store: Store) -> None:
    await store.record({}, [tr("A"), tr("B"), tr("C")], 1.0)
    await backend.sql("DELETE FROM transitions")
    assert await store.transitions_since(0, 10) == []
    assert await store.last_sequence() == 3
    assert [t.sequence for t in await store.record({}, [tr("D")], 2.0)] == [4]


async def test_a_failing_record_leaves_nothing(backend: Backend, store: Store) -> None:
    await store.record({"A": state(AVAILABLE)}, [], 1.0)
    broken = NewTransition(None, "status", AVAILABLE, FEW, ("main",), 2.0)  # type: ignore[arg-type]
    with pytest.raises(backend.integrity_error):
        await store.record(
            {"A": state(FEW), "B": state(NONE)}, [tr("A"), broken], 2.0, [["hook"], ["hook"]], 3.0
        )
    assert await store.load_states() == {"A": StoredState(state(AVAILABLE), 1.0)}
    assert await store.transitions_since(0, 10) == []
    assert await store.outbox_counts() == {}
    # The store goes on working, and a sequence it gave is never given again.
    (again,) = await store.record({}, [tr("A")], 4.0)
    assert again.sequence >= 1
    assert await store.transitions_since(0, 10) == [again]
    assert await store.last_sequence() >= again.sequence


async def test_concurrent_records_get_distinct_gap_free_sequences(store: Store) -> None:
    events = [f"E{i:02d}" for i in range(30)]

    async def batch(n: int) -> list[Transition]:
        # Every batch rewrites the same states, each in its own order: no deadlock allowed.
        mine = events[n:] + events[:n]
        changed = {e: state(FEW, streak=n) for e in mine}
        return await store.record(changed, [tr(f"B{n}-{k}") for k in range(5)], float(n))

    results = await asyncio.gather(*(batch(n) for n in range(12)))
    for got in results:
        seqs = [t.sequence for t in got]
        assert seqs == list(range(seqs[0], seqs[0] + 5)), seqs  # one block, in order
    every = sorted(t.sequence for got in results for t in got)
    assert every == list(range(1, 61))
    assert await store.transitions_since(0, 100) == sorted(
        (t for got in results for t in got), key=lambda t: t.sequence
    )
    assert len(await store.load_states()) == 30


async def test_a_reader_paging_during_writes_never_skips_a_transition(store: Store) -> None:
    writers_done = asyncio.Event()
    seen: list[int] = []

    async def reader() -> None:
        since = 0
        while True:
            done = writers_done.is_set()
            page = await store.transitions_since(since, 7)
            seen.extend(t.sequence for t in page)
            since = page[-1].sequence if page else since
            if done and not page:
                return
            await asyncio.sleep(0)

    async def writer(n: int) -> None:
        for k in range(10):
            await store.record({f"W{n}": state(FEW, streak=k)}, [tr(f"W{n}"), tr(f"W{n}")], 1.0)

    read = asyncio.create_task(reader())
    await asyncio.gather(*(writer(n) for n in range(6)))
    writers_done.set()
    await read
    assert seen == list(range(1, 121))


# -- the outbox --------------------------------------------------------------------------------


async def test_record_with_deliveries_fills_the_outbox(store: Store) -> None:
    new = [tr("A"), tr("B"), tr("C"), tr("D")]
    got = await store.record({}, new, 1.0, [["a", "b", "a"], ["a"], []], 100.0)
    assert [t.sequence for t in got] == [1, 2, 3, 4]
    assert await store.outbox_counts() == {"a": (2, 0), "b": (1, 0)}
    assert await store.due_deliveries("a", 100.0, 10) == [
        pending(store, 1, "a", new[0], 100.0),
        pending(store, 2, "a", new[1], 100.0),
    ]
    assert ids(await store.due_deliveries("b", 100.0, 10)) == [store.delivery_id(1, "b")]
    assert await store.due_deliveries("nobody", 100.0, 10) == []


async def test_due_deliveries_order_and_per_event_hold_back(store: Store) -> None:
    e1a, e1b, e2 = tr("E1"), tr("E1", FEW, NONE), tr("E2")
    await store.record({}, [e1a, e1b, e2], 1.0, [["a", "b"], ["a"], ["a"]], 100.0)
    e3 = tr("E3")
    await store.record({}, [e3], 2.0, [["a"]], 50.0)  # a later sequence due earlier
    m1, m2, m3, m4 = (store.delivery_id(n, "a") for n in (1, 2, 3, 4))

    assert await store.due_deliveries("a", 49.0, 10) == []
    # E1's second transition waits behind its first; other events do not.
    assert ids(await store.due_deliveries("a", 100.0, 10)) == [m4, m1, m3]
    assert ids(await store.due_deliveries("a", 100.0, 2)) == [m4, m1]
    # Another subscription's pending delivery holds nothing back for this one.
    assert ids(await store.due_deliveries("b", 100.0, 10)) == [store.delivery_id(1, "b")]

    await store.delivery_retry(m1, 1, 200.0, "HTTP 500")
    assert ids(await store.due_deliveries("a", 150.0, 10)) == [m4, m3]  # m2 still held back
    assert await store.due_deliveries("a", 200.0, 10) == [
        pending(store, 4, "a", e3, 50.0),
        pending(store, 3, "a", e2, 100.0),
        pending(
            store, 1, "a", e1a, 100.0, attempts=1, next_attempt_at=200.0, last_error="HTTP 500"
        ),
    ]

    await store.delivery_done(m1)
    assert ids(await store.due_deliveries("a", 150.0, 10)) == [m4, m2, m3]
    assert await store.outbox_counts() == {"a": (3, 0), "b": (1, 0)}

    # A dead letter holds nothing back.
    await store.delivery_dead(m2, 5, "HTTP 410", 160.0)
    (e1c,) = await store.record({}, [tr("E1", NONE, AVAILABLE)], 3.0, [["a"]], 150.0)
    assert ids(await store.due_deliveries("a", 150.0, 10)) == [
        m4, m3, store.delivery_id(e1c.sequence, "a")
    ]  # fmt: skip


async def test_due_deliveries_stays_quick_behind_a_backlog(store: Store) -> None:
    """600 events with 10 deliveries each waiting: the query must not be quadratic."""
    for k in range(10):
        new = [tr(f"E{i:03d}", at=float(k)) for i in range(600)]
        await store.record({}, new, float(k), [["a"]] * 600, 100.0 + k)
    begin = time.perf_counter()
    due = await store.due_deliveries("a", 1000.0, 100)
    assert time.perf_counter() - begin < 0.2  # ~10 ms here; the quadratic plan took 0.4 s
    assert [d.transition.sequence for d in due] == list(range(1, 101))


async def test_pending_deliveries_of_some_events(store: Store) -> None:
    """What the outbox reads about fresh transitions: their rows and any earlier pending one."""
    await store.record({}, [tr("E1"), tr("E2"), tr("E3")], 1.0, [["a", "b"], ["a"], ["b"]], 100.0)
    await store.delivery_done(store.delivery_id(2, "a"))
    await store.delivery_dead(store.delivery_id(3, "b"), 5, "HTTP 500", 150.0)
    await store.record({}, [tr("E1", FEW, NONE), tr("E2", FEW, NONE)], 2.0, [["a"], ["a"]], 200.0)
    await store.delivery_retry(store.delivery_id(1, "a"), 1, 300.0, "timeout")
    got = await store.pending_deliveries(["a", "b"], ["E1", "E2", "E3"], 5)
    assert sorted(got) == [
        PendingDelivery(store.delivery_id(1, "a"), "a", "E1", 1, 1, 300.0, 100.0),
        PendingDelivery(store.delivery_id(1, "b"), "b", "E1", 1, 0, 100.0, 100.0),
        PendingDelivery(store.delivery_id(4, "a"), "a", "E1", 4, 0, 200.0, 200.0),
        PendingDelivery(store.delivery_id(5, "a"), "a", "E2", 5, 0, 200.0, 200.0),
    ]  # done and dead rows are not pending
    assert ids_of(await store.pending_deliveries(["a"], ["E1"], 3)) == [store.delivery_id(1, "a")]
    assert ids_of(await store.pending_deliveries(["b", "c"], ["E2", "E1"], 9)) == [
        store.delivery_id(1, "b")
    ]
    assert await store.pending_deliveries([], ["E1"], 9) == []
    assert await store.pending_deliveries(["a"], [], 9) == []
    assert ids_of(await store.pending_rows("a", 10)) == [
        store.delivery_id(n, "a") for n in (1, 4, 5)
    ]
    assert len(await store.pending_rows("a", 2)) == 2
    assert await store.pending_rows("c", 10) == []


def ids_of(rows: list[PendingDelivery]) -> list[str]:
    return sorted(r.id for r in rows)


async def test_next_delivery_at(store: Store) -> None:
    assert await store.next_delivery_at() is None
    await store.record({}, [tr("A")], 1.0, [["a"]], 100.0)
    await store.record({}, [tr("B")], 1.0, [["a", "b"]], 50.0)
    assert await store.next_delivery_at() == 50.0
    await store.delivery_retry(store.delivery_id(2, "a"), 1, 300.0, "timeout")
    await store.delivery_dead(store.delivery_id(2, "b"), 3, "HTTP 404", 60.0)
    assert await store.next_delivery_at() == 100.0
    await store.delivery_done(store.delivery_id(1, "a"))
    assert await store.next_delivery_at() == 300.0
    await store.delivery_dead(store.delivery_id(2, "a"), 2, "timeout", 300.0)
    assert await store.next_delivery_at() is None


async def test_dead_letters(store: Store) -> None:
    new = [tr("A"), tr("B"), tr("C")]
    for n, t in enumerate(new):
        await store.record({}, [t], 1.0, [["a", "b"]], 100.0 * (n + 1))
        await store.delivery_dead(store.delivery_id(n + 1, "a"), 5, f"HTTP 50{n}", 1000.0 + n)
    assert await store.outbox_counts() == {"a": (0, 3), "b": (3, 0)}
    assert await store.dead_letters("a", 10) == [
        Delivery(store.delivery_id(n + 1, "a"), "a", stored(n + 1, t), 5, 100.0 * (n + 1),
                 100.0 * (n + 1), "dead", f"HTTP 50{n}", 1000.0 + n)
        for n, t in enumerate(new)
    ]  # fmt: skip
    assert ids(await store.dead_letters("a", 2)) == [
        store.delivery_id(1, "a"),
        store.delivery_id(2, "a"),
    ]
    assert ids(await store.dead_letters("a", 10, since=200.0)) == [
        store.delivery_id(2, "a"),
        store.delivery_id(3, "a"),
    ]
    assert await store.dead_letters("b", 10) == []
    assert await store.due_deliveries("a", 10_000.0, 10) == []


async def test_replay_by_ids_by_since_and_all(store: Store) -> None:
    for n in range(4):
        await store.record({}, [tr(f"E{n}")], 1.0, [["a", "b"]], 100.0 * (n + 1))
        for sub in ("a", "b"):
            await store.delivery_dead(store.delivery_id(n + 1, sub), 5, "HTTP 500", 900.0)

    got = await store.replay("a", 1000.0, [store.delivery_id(1, "a"), "msg_999_a", store.delivery_id(2, "b")],
                             None)  # fmt: skip
    assert got == 1
    assert await store.replay("a", 1000.0, [], None) == 0
    assert await store.due_deliveries("a", 1000.0, 10) == [
        pending(store, 1, "a", tr("E0"), 100.0, next_attempt_at=1000.0, last_error="HTTP 500")
    ]
    assert await store.replay("a", 1100.0, None, 300.0) == 2  # created at 300 and 400
    assert await store.outbox_counts() == {"a": (3, 1), "b": (0, 4)}
    assert await store.replay("a", 1200.0, None, None) == 1
    assert await store.replay("a", 1200.0, None, None) == 0
    assert await store.outbox_counts() == {"a": (4, 0), "b": (0, 4)}
    assert await store.replay("b", 1300.0, [store.delivery_id(4, "b")], 350.0) == 1
    assert await store.replay("b", 1300.0, [store.delivery_id(1, "b")], 350.0) == 0
    assert await store.outbox_counts() == {"a": (4, 0), "b": (1, 3)}


async def test_done_with_a_result_is_kept_and_listed_as_recent(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_outbox, "KEEP_DONE", 3)
    monkeypatch.setattr(postgres_sql, "KEEP_DONE", 3)
    new = [tr(f"E{n}") for n in range(5)]
    for n, t in enumerate(new):
        await store.record({}, [t], 1.0, [["action-x", "hook"]], 100.0 + n)
    x = [store.delivery_id(n, "action-x") for n in range(1, 6)]

    await store.delivery_done(x[0], {"ok": True, "ticket": {"id": 7}}, 500.0)
    await store.delivery_done(x[1])  # no result: gone
    await store.delivery_dead(x[2], 5, "HTTP 500", 501.0)
    assert await store.outbox_counts() == {"action-x": (2, 1), "hook": (5, 0)}
    assert ids(await store.due_deliveries("action-x", 1000.0, 10)) == [x[3], x[4]]
    assert await store.next_delivery_at() == 100.0  # hook's first is still pending

    recent = await store.recent_deliveries("action-", 10)
    assert [(d.id, d.state) for d in recent] == [
        (x[4], "pending"), (x[3], "pending"), (x[2], "dead"), (x[0], "done")
    ]  # fmt: skip
    assert recent[-1] == pending(store, 1, "action-x", new[0], 100.0, state="done",
                                 result={"ok": True, "ticket": {"id": 7}}, finished_at=500.0)  # fmt: skip
    assert ids(await store.recent_deliveries("hook", 2)) == [
        store.delivery_id(5, "hook"),
        store.delivery_id(4, "hook"),
    ]
    assert len(await store.recent_deliveries("", 100)) == 9
    assert await store.recent_deliveries("nobody", 10) == []

    # Only the newest KEEP_DONE finished deliveries stay.
    for n in (3, 4):
        await store.delivery_done(x[n], {"n": n}, 600.0 + n)
    await store.delivery_done(store.delivery_id(1, "hook"), {"n": 0}, 700.0)
    kept = [d.id for d in await store.recent_deliveries("", 100) if d.state == "done"]
    assert sorted(kept) == sorted([x[3], x[4], store.delivery_id(1, "hook")])
    assert await store.drop_deliveries("action-x") == 3  # done, dead and all


async def test_drop_deliveries_forgets_one_subscription(store: Store) -> None:
    await store.record({}, [tr("A"), tr("B")], 1.0, [["a", "b"], ["a"]], 100.0)
    await store.delivery_dead(store.delivery_id(2, "a"), 5, "HTTP 500", 200.0)
    assert await store.drop_deliveries("a") == 2
    assert await store.drop_deliveries("a") == 0
    assert await store.outbox_counts() == {"b": (1, 0)}
    assert await store.dead_letters("a", 10) == []
    assert ids(await store.due_deliveries("b", 100.0, 10)) == [store.delivery_id(1, "b")]


# -- runtime-managed objects -------------------------------------------------------------------


async def test_objects_save_load_replace_delete(store: Store) -> None:
    spec = {"url": "https://example.com/hook", "events": ["A", "B"], "nested": {"n": 1.5}}
    assert await store.load_objects("subscription") == {}
    await store.save_object("subscription", "hook", spec)
    await store.save_object("subscription", "alpha", {"url": "https://a.example"})
    await store.save_object("watch_set", "hook", {"events": []})
    assert await store.load_objects("subscription") == {
        "alpha": {"url": "https://a.example"},
        "hook": spec,
    }
    await store.save_object("subscription", "hook", {"url": "https://example.com/v2"})
    assert (await store.load_objects("subscription"))["hook"] == {"url": "https://example.com/v2"}
    assert await store.delete_object("subscription", "hook") is True
    assert await store.delete_object("subscription", "hook") is False
    assert await store.load_objects("subscription") == {"alpha": {"url": "https://a.example"}}
    assert await store.load_objects("watch_set") == {"hook": {"events": []}}


# -- PostgreSQL only: schema, migrations, several stores on one database -----------------------


async def _migrations(schema: str) -> list[int]:
    conn = await asyncpg.connect(PG_DSN)
    try:
        rows = await conn.fetch(f'SELECT version FROM "{schema}".schema_migrations ORDER BY 1')
    finally:
        await conn.close()
    return [r["version"] for r in rows]


@pytest.mark.parametrize("schema_exists", [False, True], ids=["new-schema", "empty-schema"])
async def test_postgres_stores_opening_at_once_migrate_once(
    pg_schema: str, schema_exists: bool
) -> None:
    if schema_exists:  # created beforehand, as an operator granting a role one schema would
        await _pg_sql("public", f'CREATE SCHEMA "{pg_schema}"')
    stores = [PostgresStore(PG_DSN, schema=pg_schema) for _ in range(3)]
    await asyncio.gather(*(s.open() for s in stores))
    try:
        assert await _migrations(pg_schema) == list(range(1, postgres_sql.SCHEMA_VERSION + 1))
        got = await asyncio.gather(*(s.record({}, [tr(f"E{n}")], 1.0) for n, s in
                                     enumerate(stores)))  # fmt: skip
        assert sorted(t.sequence for batch in got for t in batch) == [1, 2, 3]
        assert len(await stores[0].transitions_since(0, 10)) == 3
    finally:
        await asyncio.gather(*(s.close() for s in stores))
    again = PostgresStore(PG_DSN, schema=pg_schema)
    await again.open()  # an up-to-date schema: nothing to do
    await again.close()
    assert await _migrations(pg_schema) == list(range(1, postgres_sql.SCHEMA_VERSION + 1))


async def test_postgres_refuses_a_schema_newer_than_itself(pg_schema: str) -> None:
    store = PostgresStore(PG_DSN, schema=pg_schema)
    await store.open()
    await store.close()
    await _pg_sql(pg_schema, "INSERT INTO schema_migrations (version) VALUES (999)")
    with pytest.raises(RuntimeError, match="version 999, newer than this daemon's"):
        await PostgresStore(PG_DSN, schema=pg_schema).open()


async def test_postgres_schemas_are_independent(pg_schema: str) -> None:
    other = pg_schema + "_b"
    one, two = PostgresStore(PG_DSN, schema=pg_schema), PostgresStore(PG_DSN, schema=other)
    await one.open()
    await two.open()
    try:
        await one.record({"A": state()}, [tr("A")], 1.0, [["a"]], 1.0)
        assert await two.load_states() == {}
        assert await two.last_sequence() == 0
        assert [t.sequence for t in await two.record({}, [tr("B")], 1.0)] == [1]
    finally:
        await one.close()
        await two.close()
        await _pg_sql("public", f'DROP SCHEMA IF EXISTS "{other}" CASCADE')


@pytest.mark.parametrize("name", ["", "1abc", "a-b", 'x"; DROP TABLE y; --', "a" * 64])
def test_postgres_rejects_bad_schema_names(name: str) -> None:
    with pytest.raises(ValueError, match="invalid schema name"):
        PostgresStore(PG_DSN, schema=name)


async def test_recording_1000_changed_states_is_quick(store: Store) -> None:
    """A smoke bound, not a benchmark: one batch of 1000 must not take round trips per row."""
    changed = {f"EV{i:06d}": state(FEW, AVAILABLE, 1) for i in range(1000)}
    await store.record(changed, [], 1.0)  # warm up: the rows exist, the next batch updates
    changed = {k: state(AVAILABLE) for k in changed}
    begin = time.perf_counter()
    await store.record(changed, [tr(f"EV{i:06d}") for i in range(100)], 2.0, [["a"]] * 100, 2.0)
    assert time.perf_counter() - begin < 2.0


async def test_many_deliveries_done_at_once(store: Store) -> None:
    new = [tr(f"E{n}") for n in range(4)]
    await store.record({}, new, 1.0, [["hook"]] * 4, 100.0)
    done = [store.delivery_id(n, "hook") for n in range(1, 4)]
    await store.deliveries_done(done)
    await store.deliveries_done([])
    assert await store.outbox_counts() == {"hook": (1, 0)}
    assert ids(await store.due_deliveries("hook", 1000.0, 10)) == [store.delivery_id(4, "hook")]

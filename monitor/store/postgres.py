"""The PostgreSQL store: a pool of asyncpg connections, one transaction per batch.

Several daemons may share one database (and schema): migrations run under an advisory lock, and
transition sequences are handed out in commit order, so a reader paging with `since` never
skips a transition that commits late.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg
import orjson

from monitor.clock import Clock, SystemClock
from monitor.core.transitions import EventState
from monitor.domain import Transition
from monitor.logs import get_logger
from monitor.store import postgres_sql as sql
from monitor.store.base import (
    Delivery,
    Fence,
    LeaseLost,
    NewTransition,
    PendingDelivery,
    StateChunk,
    StoredState,
    chunk_from_rows,
    delivery_id,
    new_writer_id,
)
from monitor.store.health import WriteHealth, root_cause

log = get_logger("monitor.store")

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_OBSERVED_CHUNK = 20_000
#: Rows per chunk when states are loaded in bulk (`iter_states`).
STATE_CHUNK = 20_000
_CLOSE_SECONDS = 5.0


class PostgresStore:
    """The Store on PostgreSQL (asyncpg pool; every table lives in `schema`, created if missing).

    `open()` creates or migrates the schema; several stores opening at once on one database
    is safe. A transition is durable once `record` returns (the server's commit).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "public",
        min_size: int = 1,
        max_size: int = 10,
        clock: Clock | None = None,
    ) -> None:
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(
                f"invalid schema name {schema!r}: 1 to 63 characters of A-Z a-z 0-9 _, "
                "not starting with a digit"
            )
        self._dsn = dsn
        self._schema = schema
        self._min_size = min_size
        self._max_size = max_size
        self._pool: Any = None  # asyncpg.Pool
        self.health = WriteHealth(clock or SystemClock(), what="PostgreSQL state store")
        self._writer = new_writer_id()
        self._highest = 0  # the highest sequence this writer gave

    def delivery_id(self, sequence: int, subscription: str) -> str:
        """The webhook-id of a delivery this store (as opened now) writes."""
        return delivery_id(self._writer, sequence, subscription)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """Tell `health` how the write in this block went (a fenced refusal is no failure)."""
        try:
            yield
        except LeaseLost:
            raise
        except Exception as exc:
            self.health.failed(root_cause(exc))
            raise
        self.health.succeeded()

    @property
    def schema(self) -> str:
        """The schema that holds this store's tables."""
        return self._schema

    @property
    def _db(self) -> Any:
        if self._pool is None:
            raise RuntimeError("store is not open")
        return self._pool

    async def open(self) -> None:
        """Connect the pool, then create or migrate the schema."""
        quoted = f'"{self._schema}"'
        self._writer, self._highest = new_writer_id(), 0
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=self._min_size,
            max_size=self._max_size,
            server_settings={"search_path": quoted, "application_name": "availability-monitor"},
        )
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await self._migrate(conn, quoted)
        except BaseException:
            await self.close()
            raise

    async def _migrate(self, conn: Any, quoted: str) -> None:
        # Held until commit: replicas starting together migrate one after another, and each
        # later one sees the finished schema (READ COMMITTED: every statement sees the latest).
        await conn.execute(sql.XACT_LOCK, sql.MIGRATION_LOCK, self._schema)
        # Checked first because CREATE SCHEMA IF NOT EXISTS needs the CREATE privilege on the
        # database even when the schema exists, which a least-privileged role may lack.
        if not await conn.fetchval(sql.SCHEMA_EXISTS, self._schema):
            await conn.execute(f"CREATE SCHEMA {quoted}")
        await conn.execute(f"SET LOCAL search_path TO {quoted}")
        await conn.execute(sql.CREATE_MIGRATIONS_TABLE)
        version = int(await conn.fetchval(sql.APPLIED_VERSION))
        if version > sql.SCHEMA_VERSION:
            raise RuntimeError(
                f"PostgreSQL schema {self._schema} has version {version}, newer than this "
                f"daemon's {sql.SCHEMA_VERSION}: upgrade the daemon or use another schema"
            )
        for number in range(version, sql.SCHEMA_VERSION):
            await conn.execute(sql.MIGRATIONS[number])
            await conn.execute(sql.MARK_APPLIED, number + 1)

    async def close(self) -> None:
        """Close the pool, letting queries in flight finish for a few seconds."""
        pool, self._pool = self._pool, None
        if pool is not None:
            # Cancelled by the timeout, asyncpg's close terminates every connection itself.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(pool.close(), _CLOSE_SECONDS)

    async def load_states(self, event_ids: Sequence[str] | None = None) -> dict[str, StoredState]:
        """Stored event states (all, or those of `event_ids`)."""
        if event_ids is None:
            rows = await self._db.fetch(sql.LOAD_STATES)
        else:
            rows = await self._db.fetch(sql.LOAD_SOME_STATES, list(event_ids))
        return {
            eid: StoredState(EventState((s, sp, ss), (r, rp, rs)), at)
            for eid, s, sp, ss, r, rp, rs, at in rows
        }

    async def iter_states(
        self, event_ids: Sequence[str] | None = None
    ) -> AsyncIterator[StateChunk]:
        """Stored event states in chunks of up to STATE_CHUNK events (keyset pages)."""
        states: dict[tuple[Any, ...], EventState] = {}
        times: dict[float, float] = {}
        if event_ids is not None:
            ids = list(event_ids)
            for start in range(0, len(ids), STATE_CHUNK):
                rows = await self._db.fetch(sql.LOAD_SOME_STATES, ids[start : start + STATE_CHUNK])
                if rows:
                    yield chunk_from_rows(rows, states, times)
            return
        after = ""
        while True:
            rows = await self._db.fetch(sql.LOAD_STATES_AFTER, after, STATE_CHUNK)
            if not rows:
                return
            after = rows[-1][0]
            yield chunk_from_rows(rows, states, times)

    async def record(
        self,
        changed: Mapping[str, EventState],
        transitions: Sequence[NewTransition],
        observed_at: float,
        deliveries: Sequence[Sequence[str]] = (),
        delivery_at: float = 0.0,
        fence: Fence | None = None,
    ) -> list[Transition]:
        """One transaction: upsert changed states, append transitions and their deliveries.

        With a `fence`, the lease rows are checked first and held (FOR SHARE) until commit, so
        a refused write leaves nothing behind and no takeover slips in between.
        """
        if not changed and not transitions:
            return []
        async with self._writing(), self._db.acquire() as conn, conn.transaction():
            if fence is not None and fence.tokens:
                shards = list(fence.tokens)
                held = await conn.fetch(
                    sql.CHECK_FENCE, shards, [fence.tokens[s] for s in shards], fence.owner
                )
                if len(held) != len(shards):
                    raise LeaseLost(
                        f"{len(shards) - len(held)} shard lease(s) moved on; write refused"
                    )
            if changed:
                await conn.execute(sql.UPSERT_STATES, *_state_columns(changed), observed_at)
            if not transitions:
                return []
            sequences = await self._allocate(conn, len(transitions))
            await conn.execute(sql.INSERT_TRANSITIONS, sequences, *_transition_columns(transitions))
            rows = [
                (self.delivery_id(seq, sub), sub, seq, t.event_id)
                for seq, t, subs in zip(sequences, transitions, deliveries, strict=False)
                for sub in subs
            ]
            if rows:
                await conn.execute(sql.INSERT_DELIVERIES, *_columns(rows, 4), delivery_at)
        return [
            Transition(
                seq, t.event_id, t.watch_sets, t.field, t.previous, t.current, t.observed_at,
                t.extra,
            )
            for seq, t in zip(sequences, transitions, strict=True)
        ]  # fmt: skip

    async def _allocate(self, conn: Any, count: int) -> list[int]:
        # The lock, held to commit, makes sequence order commit order: were two batches to
        # interleave, a reader could page past a lower sequence that commits later. It is
        # taken after the state upsert so that it is never held while waiting for a row lock.
        await conn.execute(sql.XACT_LOCK, sql.SEQUENCE_LOCK, self._schema)
        rows = await conn.fetch(sql.ALLOCATE_SEQUENCES, count)
        sequences = sorted(int(r[0]) for r in rows)
        if sequences[0] <= self._highest:
            # The sequence went back: the database was restored under this replica. The
            # sequences given again need a new writer, or their webhook-ids would repeat.
            log.warning(
                "transition sequences went back (the database was restored?); new webhook-ids"
                " are drawn",
                sequence=sequences[0],
                highest_before=self._highest,
            )
            self._writer = new_writer_id()
        self._highest = sequences[-1]
        return sequences

    async def save_observed(self, items: Sequence[tuple[float, str]]) -> None:
        """Checkpoint observation times (only ever forward), in chunks of bounded size."""
        for start in range(0, len(items), _OBSERVED_CHUNK):
            chunk = items[start : start + _OBSERVED_CHUNK]
            async with self._writing():
                await self._db.execute(
                    sql.SAVE_OBSERVED, [eid for _, eid in chunk], [at for at, _ in chunk]
                )

    async def transitions_since(self, since: int, limit: int) -> list[Transition]:
        """Transitions after `since`, oldest first."""
        rows = await self._db.fetch(sql.TRANSITIONS_SINCE, since, limit)
        return [_transition(row) for row in rows]

    async def last_sequence(self) -> int:
        """The highest sequence given so far, including those of deleted rows."""
        async with self._db.acquire() as conn, conn.transaction():
            # Waits for a record() in flight, so the answer is never a sequence still
            # uncommitted.
            await conn.execute(sql.XACT_LOCK_SHARED, sql.SEQUENCE_LOCK, self._schema)
            return int(await conn.fetchval(sql.LAST_SEQUENCE))

    # -- the outbox ------------------------------------------------------------------------

    async def due_deliveries(
        self,
        subscription: str,
        now: float,
        limit: int,
        claimer: str | None = None,
        visibility: float = 60.0,
    ) -> list[Delivery]:
        """Pending deliveries due by `now`, never one whose event has an earlier pending one;
        with a `claimer`, claimed (SKIP LOCKED) for `visibility` seconds."""
        if claimer is not None:
            rows = await self._db.fetch(
                sql.CLAIM_DELIVERIES, subscription, now, limit, claimer, visibility
            )
            return [_delivery(row) for row in rows]
        rows = await self._db.fetch(sql.DUE_DELIVERIES, subscription, now, limit)
        return [_delivery(row) for row in rows]

    async def pending_deliveries(
        self, subscriptions: Sequence[str], event_ids: Sequence[str], max_sequence: int
    ) -> list[PendingDelivery]:
        """Pending deliveries of these subscriptions and events, up to a sequence."""
        if not subscriptions or not event_ids:
            return []
        rows = await self._db.fetch(
            sql.PENDING_OF_EVENTS, list(subscriptions), list(event_ids), max_sequence
        )
        return [_pending(r) for r in rows]

    async def pending_rows(self, subscription: str, limit: int) -> list[PendingDelivery]:
        """Pending deliveries of one subscription, at most `limit`."""
        return [_pending(r) for r in await self._db.fetch(sql.PENDING_ROWS, subscription, limit)]

    async def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due."""
        value = await self._db.fetchval(sql.NEXT_DELIVERY_AT)
        return float(value) if value is not None else None

    async def delivery_done(
        self, delivery_id: str, result: Mapping[str, Any] | None = None, now: float = 0.0
    ) -> None:
        """Remove a delivered message, or keep it as done with its result (the newest few)."""
        if result is None:
            async with self._writing():
                await self._db.execute(sql.DELIVERY_DONE, delivery_id)
            return
        spec = orjson.dumps(dict(result)).decode()
        async with self._writing(), self._db.acquire() as conn, conn.transaction():
            await conn.execute(sql.DELIVERY_DONE_WITH_RESULT, delivery_id, spec, now)
            await conn.execute(sql.PRUNE_DONE, sql.KEEP_DONE)

    async def deliveries_done(self, delivery_ids: Sequence[str]) -> None:
        """Remove many delivered messages in one statement."""
        if delivery_ids:
            async with self._writing():
                await self._db.execute(
                    "DELETE FROM deliveries WHERE id = ANY($1::text[])", list(delivery_ids)
                )

    async def recent_deliveries(self, prefix: str, limit: int) -> list[Delivery]:
        """Deliveries (any state) of targets whose name starts with `prefix`, newest first."""
        rows = await self._db.fetch(sql.RECENT_DELIVERIES, prefix, limit)
        return [_delivery(row) for row in rows]

    async def delivery_retry(
        self, delivery_id: str, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        """Record a failed attempt and when to try again."""
        async with self._writing():
            await self._db.execute(
                sql.DELIVERY_RETRY, delivery_id, attempts, next_attempt_at, error
            )

    async def delivery_dead(self, delivery_id: str, attempts: int, error: str, now: float) -> None:
        """Turn a delivery into a dead letter."""
        async with self._writing():
            await self._db.execute(sql.DELIVERY_DEAD, delivery_id, attempts, error, now)

    async def outbox_counts(self) -> dict[str, tuple[int, int]]:
        """(pending, dead) per subscription."""
        rows = await self._db.fetch(sql.OUTBOX_COUNTS)
        return {sub: (int(pending), int(dead)) for sub, pending, dead in rows}

    async def dead_letters(
        self, subscription: str, limit: int, since: float | None = None
    ) -> list[Delivery]:
        """Dead letters of a subscription, oldest first."""
        start = since if since is not None else 0.0
        rows = await self._db.fetch(sql.DEAD_LETTERS, subscription, start, limit)
        return [_delivery(row) for row in rows]

    async def replay(
        self, subscription: str, now: float, ids: Sequence[str] | None, since: float | None
    ) -> int:
        """Dead letters back to pending, due now: the given IDs, or all created since `since`."""
        id_list = list(ids) if ids is not None else None
        async with self._writing():
            status = await self._db.execute(sql.REPLAY, subscription, now, id_list, since)
        return _count(status)

    async def drop_deliveries(self, subscription: str) -> int:
        """Forget every delivery of a subscription."""
        async with self._writing():
            return _count(await self._db.execute(sql.DROP_DELIVERIES, subscription))

    # -- runtime-managed objects -----------------------------------------------------------

    async def load_objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """API-created objects of one kind, by name."""
        rows = await self._db.fetch(sql.LOAD_OBJECTS, kind)
        return {name: orjson.loads(spec) for name, spec in rows}

    async def save_object(self, kind: str, name: str, spec: Mapping[str, Any]) -> None:
        """Create or replace an API-created object."""
        async with self._writing():
            await self._db.execute(sql.SAVE_OBJECT, kind, name, orjson.dumps(dict(spec)).decode())

    async def delete_object(self, kind: str, name: str) -> bool:
        """Delete an API-created object; False when there was none."""
        async with self._writing():
            return _count(await self._db.execute(sql.DELETE_OBJECT, kind, name)) > 0

    async def create_object(self, kind: str, name: str, spec: Mapping[str, Any]) -> bool:
        """Create an object unless one exists, atomically across replicas (the row count of an
        INSERT ... ON CONFLICT DO NOTHING says which); False when it existed."""
        text = orjson.dumps(dict(spec)).decode()
        return _count(await self._db.execute(sql.CREATE_OBJECT, kind, name, text)) > 0

    async def replace_object(
        self, kind: str, name: str, expected: Mapping[str, Any], spec: Mapping[str, Any]
    ) -> bool:
        """Replace an object while it still reads `expected` (one UPDATE: atomic across
        replicas); False when it changed or went."""
        old, new = orjson.dumps(dict(expected)).decode(), orjson.dumps(dict(spec)).decode()
        return _count(await self._db.execute(sql.REPLACE_OBJECT, kind, name, old, new)) > 0

    # -- leases (several replicas) ---------------------------------------------------------

    async def ensure_leases(self, kind: str, count: int) -> None:
        """Make sure lease rows 0..count-1 of a kind exist."""
        await self._db.execute(sql.ENSURE_LEASES, kind, count)

    async def heartbeat(self, replica: str) -> None:
        """This replica is alive."""
        await self._db.execute(sql.HEARTBEAT, replica)

    async def forget_replica(self, replica: str) -> None:
        """This replica is leaving."""
        await self._db.execute(sql.FORGET_REPLICA, replica)

    async def live_replicas(self, within: float) -> list[str]:
        """Replicas seen within the last `within` seconds."""
        return [r["id"] for r in await self._db.fetch(sql.LIVE_REPLICAS, within)]

    async def lease_owners(self) -> dict[tuple[str, int], str]:
        """Unexpired leases: (kind, id) -> owner."""
        rows = await self._db.fetch(sql.LEASE_SNAPSHOT)
        return {(r["kind"], int(r["id"])): r["owner"] for r in rows}

    async def acquire_leases(
        self, kind: str, count: int, owner: str, seconds: float
    ) -> list[tuple[int, int, str | None, float | None]]:
        """Take up to `count` free or expired leases: (id, token, previous owner, seconds the
        lease had been expired)."""
        if count <= 0:
            return []
        rows = await self._db.fetch(sql.ACQUIRE_LEASES, kind, count, owner, seconds)
        return [
            (int(r[0]), int(r[1]), r[2], float(r[3]) if r[3] is not None else None) for r in rows
        ]

    async def renew_leases(self, kind: str, owner: str, seconds: float) -> dict[int, int]:
        """Extend every unexpired lease of `owner`; returns those still held (id -> token)."""
        rows = await self._db.fetch(sql.RENEW_LEASES, kind, owner, seconds)
        return {int(r[0]): int(r[1]) for r in rows}

    async def release_leases(self, kind: str, owner: str, ids: Sequence[int]) -> None:
        """Give leases up at once (another replica may take them in its next cycle)."""
        if ids:
            await self._db.execute(sql.RELEASE_LEASES, kind, owner, list(ids))


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """Rows to columns: the arrays an `unnest(...)` statement takes."""
    columns: list[list[Any]] = [[] for _ in range(width)]
    for row in rows:
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    return columns


def _state_columns(changed: Mapping[str, EventState]) -> list[list[Any]]:
    # Sorted, so that concurrent batches lock shared rows in one order and cannot deadlock.
    rows = [(eid, *st.status, *st.resale) for eid, st in sorted(changed.items())]
    return _columns(rows, 7)


def _transition_columns(transitions: Sequence[NewTransition]) -> list[list[Any]]:
    rows = [
        (
            t.event_id,
            t.field,
            t.previous,
            t.current,
            orjson.dumps(t.watch_sets).decode(),
            t.observed_at,
            orjson.dumps(dict(t.extra)).decode() if t.extra else None,
        )
        for t in transitions
    ]
    return _columns(rows, 7)


def _transition(row: Sequence[Any]) -> Transition:
    seq, eid, sets, field, prev, cur, at, extra = row
    return Transition(
        int(seq), eid, tuple(orjson.loads(sets)), field, prev, cur, at,
        orjson.loads(extra) if extra else {},
    )  # fmt: skip


def _delivery(row: Sequence[Any]) -> Delivery:
    did, sub, attempts, next_at, created, state, error, dead_at, result, finished = row[:10]
    return Delivery(
        did, sub, _transition(row[10:]), attempts, next_at, created, state, error, dead_at,
        orjson.loads(result) if result else None, finished,
    )  # fmt: skip


def _pending(r: Sequence[Any]) -> PendingDelivery:
    return PendingDelivery(r[0], r[1], r[2], int(r[3]), int(r[4]), float(r[5]), float(r[6]))


def _count(status: str) -> int:
    """The row count of a command status such as "UPDATE 3"."""
    return int(status.rsplit(" ", 1)[-1])

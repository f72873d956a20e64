"""The embedded SQLite store: one file, one writer thread, one transaction per batch."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, TypeVar

import orjson

from monitor.clock import Clock, SystemClock
from monitor.core.transitions import EventState
from monitor.domain import Transition
from monitor.logs import get_logger
from monitor.store import sqlite_outbox as outbox
from monitor.store import sqlite_states as bulk
from monitor.store.base import (
    Delivery,
    Fence,
    NewTransition,
    PendingDelivery,
    StateChunk,
    StoredState,
    delivery_id,
    new_writer_id,
)
from monitor.store.health import StateFileMoved, WriteFailure, WriteHealth, root_cause
from monitor.store.sqlite_file import FileIdentity, transaction

log = get_logger("monitor.store")

T = TypeVar("T")

#: Schema migrations, applied in order; PRAGMA user_version holds how many have run.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE event_state (
        event_id       TEXT PRIMARY KEY,
        status         TEXT,
        status_pending TEXT,
        status_streak  INTEGER NOT NULL DEFAULT 0,
        resale         TEXT,
        resale_pending TEXT,
        resale_streak  INTEGER NOT NULL DEFAULT 0,
        observed_at    REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE transitions (
        sequence    INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id    TEXT NOT NULL,
        field       TEXT NOT NULL,
        previous    TEXT NOT NULL,
        current     TEXT NOT NULL,
        watch_sets  TEXT NOT NULL,
        observed_at REAL NOT NULL,
        extra       TEXT
    );
    CREATE INDEX transitions_by_event ON transitions (event_id, sequence);
    """,
    """
    CREATE TABLE deliveries (
        id              TEXT PRIMARY KEY,
        subscription    TEXT NOT NULL,
        sequence        INTEGER NOT NULL REFERENCES transitions (sequence),
        event_id        TEXT NOT NULL,
        state           TEXT NOT NULL,
        attempts        INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        created_at      REAL NOT NULL,
        last_error      TEXT,
        dead_at         REAL
    );
    CREATE INDEX deliveries_due ON deliveries (subscription, state, next_attempt_at);
    CREATE INDEX deliveries_order ON deliveries (subscription, event_id, sequence);
    CREATE TABLE objects (
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        PRIMARY KEY (kind, name)
    );
    """,
    """
    ALTER TABLE deliveries ADD COLUMN result TEXT;
    ALTER TABLE deliveries ADD COLUMN finished_at REAL;
    CREATE INDEX deliveries_recent ON deliveries (subscription, created_at);
    """,
    """
    CREATE INDEX deliveries_next ON deliveries (state, next_attempt_at);
    """,
    """
    CREATE TABLE store_meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStore:
    """The Store on SQLite (WAL, synchronous=FULL: a transition survives a crash once stored).

    All database work runs on one dedicated thread, so the event loop never blocks on disk and
    SQLite sees a single writer. The store watches itself (`health`): every write's outcome,
    and every `check_seconds` whether the path still names the open file and, when nothing
    else wrote lately, whether a small write goes in.
    """

    def __init__(
        self, path: str | Path, *, clock: Clock | None = None, check_seconds: float = 10.0
    ) -> None:
        self._path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock: IO[bytes] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        self._clock = clock or SystemClock()
        self.health = WriteHealth(self._clock, what="state file")
        self._file = FileIdentity(Path(self._path)) if self._path != ":memory:" else None
        self._check_seconds = check_seconds
        self._watch: asyncio.Task[None] | None = None
        self._writer = new_writer_id()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    def delivery_id(self, sequence: int, subscription: str) -> str:
        """The webhook-id of a delivery this store (as opened now) writes."""
        return delivery_id(self._writer, sequence, subscription)

    async def open(self) -> None:
        """Open the file (creating folders), set pragmas and migrate; then see whether a write
        goes in (a read-only file opens fine) and start watching the file."""
        self._writer = new_writer_id()
        await self._run(self._open_sync)
        await self.check(probe=True)
        self._watch = asyncio.create_task(self._watch_loop(), name="state-file-watch")

    def _open_sync(self) -> None:
        if self._path != ":memory:":
            path = Path(self._path)
            path.parent.mkdir(parents=True, exist_ok=True)
            # The state holds webhook secrets of API-created subscriptions: owner only.
            # Created only when missing: touching a file that is there would fail on a
            # read-only one, which is to open (and be reported not ready), not to crash.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            self._lock = _lock_file(path.with_name(path.name + ".lock"))
        conn = self._connect()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            self._close_sync()
            raise RuntimeError(
                f"state file {self._path} has schema version {version}, newer than this "
                f"daemon's {SCHEMA_VERSION}: upgrade the daemon or use another state path"
            )
        for number in range(version, SCHEMA_VERSION):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(MIGRATIONS[number]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number + 1}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        self._conn = conn
        if self._file is not None:
            self._file.pin()

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def _reconnect_sync(self) -> None:
        """A new connection to the same file. SQLite opens a file it cannot write read-only,
        and that connection stays read-only after the file is made writable."""
        if self._file is not None and self._file.moved() is not None:
            return
        old, self._conn = self._conn, None
        if old is not None:
            old.close()
        self._conn = self._connect()

    async def close(self) -> None:
        """Close the connection and the writer thread."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._conn is not None:
            await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            if self._file is not None and self.health.moved is not None:
                self._file.remove_orphans()
        if self._lock is not None:
            self._lock.close()  # closing the file releases the lock
            self._lock = None

    async def load_states(self, event_ids: Sequence[str] | None = None) -> dict[str, StoredState]:
        """Stored event states (all, or those of `event_ids`)."""
        states = await self._run(self._load_states_sync)
        if event_ids is None:
            return states
        return {eid: states[eid] for eid in event_ids if eid in states}

    def _load_states_sync(self) -> dict[str, StoredState]:
        out: dict[str, StoredState] = {}
        shared: dict[tuple[object, ...], EventState] = {}
        rows = self._db.execute(
            "SELECT event_id, status, status_pending, status_streak,"
            " resale, resale_pending, resale_streak, observed_at FROM event_state"
        )
        for eid, s, sp, ss, r, rp, rs, at in rows:
            key = (s, sp, ss, r, rp, rs)
            state = shared.get(key)
            if state is None:
                state = shared[key] = EventState((s, sp, ss), (r, rp, rs))
            out[eid] = StoredState(state, at)
        return out

    async def iter_states(
        self, event_ids: Sequence[str] | None = None
    ) -> AsyncIterator[StateChunk]:
        """Stored event states in chunks of up to `bulk.STATE_CHUNK` events, in ID order.

        The store's thread reads the next chunk while the caller takes this one: SQLite runs
        without the GIL. `observed_at` comes back rounded down to the microsecond.
        """
        wanted = None if event_ids is None else set(event_ids)
        decoder = bulk.Decoder()
        loop = asyncio.get_running_loop()
        # The thread needs the GIL briefly before and after each query, while the caller
        # holds it in long C calls (dict updates of a whole chunk): a shorter switch interval
        # lets the reads go on (about a quarter off a million-event load).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, bulk.SWITCH_SECONDS))
        # run_in_executor hands the read to the thread at once (a task would wait for the
        # caller's next await): it goes on while this chunk is taken.
        ahead = loop.run_in_executor(self._executor, bulk.read_chunk, self._db, "")
        try:
            while True:
                raw = await ahead
                if raw is None:
                    return
                if raw.upto is not None:  # else this is the last chunk
                    ahead = loop.run_in_executor(
                        self._executor, bulk.read_chunk, self._db, raw.upto
                    )
                chunk = decoder.chunk(raw)
                if chunk is None:  # something the fast form cannot carry: row by row
                    rows = await self._run(bulk.read_rows, self._db, raw.after, raw.upto)
                    chunk = decoder.rows(rows)
                yield chunk if wanted is None else bulk.only(chunk, wanted)
                if raw.upto is None:
                    return
        finally:
            ahead.cancel()  # the caller stopped early; the read itself just finishes
            sys.setswitchinterval(switch)

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

        One replica only: there are no leases, so `fence` is not consulted.
        """
        if not changed and not transitions:
            return []
        return await self._write(
            self._record_sync, changed, transitions, observed_at, deliveries, delivery_at
        )

    def _record_sync(
        self,
        db: sqlite3.Connection,
        changed: Mapping[str, EventState],
        transitions: Sequence[NewTransition],
        observed_at: float,
        deliveries: Sequence[Sequence[str]],
        delivery_at: float,
    ) -> list[Transition]:
        out: list[Transition] = []
        db.executemany(
            "INSERT INTO event_state VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (event_id) DO UPDATE SET status=excluded.status,"
            " status_pending=excluded.status_pending, status_streak=excluded.status_streak,"
            " resale=excluded.resale, resale_pending=excluded.resale_pending,"
            " resale_streak=excluded.resale_streak, observed_at=excluded.observed_at",
            [(eid, *st.status, *st.resale, observed_at) for eid, st in changed.items()],
        )
        for i, t in enumerate(transitions):
            cur = db.execute(
                "INSERT INTO transitions (event_id, field, previous, current, watch_sets,"
                " observed_at, extra) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    t.event_id,
                    t.field,
                    t.previous,
                    t.current,
                    orjson.dumps(t.watch_sets).decode(),
                    t.observed_at,
                    orjson.dumps(dict(t.extra)).decode() if t.extra else None,
                ),
            )
            seq = cur.lastrowid
            assert seq is not None
            if i < len(deliveries) and deliveries[i]:
                rows = [(self.delivery_id(seq, s), s) for s in deliveries[i]]
                outbox.insert(db, seq, t.event_id, rows, delivery_at)
            out.append(
                Transition(
                    seq,
                    t.event_id,
                    t.watch_sets,
                    t.field,
                    t.previous,
                    t.current,
                    t.observed_at,
                    t.extra,
                )
            )
        return out

    async def save_observed(self, items: Sequence[tuple[float, str]]) -> None:
        """Checkpoint observation times, in chunks so transitions never wait long behind it."""
        for start in range(0, len(items), 20_000):
            await self._write(_save_observed, items[start : start + 20_000])

    async def transitions_since(self, since: int, limit: int) -> list[Transition]:
        """Transitions after `since`, oldest first."""
        return await self._run(self._since_sync, since, limit)

    def _since_sync(self, since: int, limit: int) -> list[Transition]:
        rows = self._db.execute(
            "SELECT sequence, event_id, watch_sets, field, previous, current, observed_at, extra"
            " FROM transitions WHERE sequence > ? ORDER BY sequence LIMIT ?",
            (since, limit),
        )
        return [
            Transition(
                seq,
                eid,
                tuple(orjson.loads(sets)),
                field,
                prev,
                cur,
                at,
                orjson.loads(extra) if extra else {},
            )
            for seq, eid, sets, field, prev, cur, at, extra in rows
        ]

    async def last_sequence(self) -> int:
        """The highest sequence given so far, including deleted ones (AUTOINCREMENT)."""
        return await self._run(self._last_sync)

    def _last_sync(self) -> int:
        row = self._db.execute(
            "SELECT seq FROM sqlite_sequence WHERE name='transitions'"
        ).fetchone()
        return int(row[0]) if row else 0

    # -- outbox and runtime objects: SQL in sqlite_outbox, run on the store's thread ----------

    async def _write(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(db, *args)` in one transaction on the store's thread, unless the file moved;
        the outcome goes to `health`."""
        try:
            out: T = await self._run(self._write_sync, fn, *args)
        except Exception as exc:
            self._failed(root_cause(exc))
            raise
        self.health.succeeded()
        return out

    def _write_sync(self, fn: Callable[..., T], *args: Any) -> T:
        moved = self._file.moved() if self._file is not None else None
        if moved is not None:
            raise StateFileMoved(moved)
        db = self._db
        with transaction(db):
            return fn(db, *args)

    def _failed(self, failure: WriteFailure, *, probe: bool = False) -> None:
        # A write can fail because the file went away (a new, empty file may be read-only or
        # lack the tables): the move is what to report then.
        moved = self._file.moved() if self._file is not None else None
        if moved is not None and failure.kind != "moved":
            failure = WriteFailure("moved", moved)
        self.health.failed(failure, probe=probe)

    async def check(self, *, probe: bool = False) -> None:
        """Whether the path still names the open file, and (with `probe`, when no write went
        in for a while, or when only a probe failed) whether a small write goes in."""
        if self._conn is None or self.health.moved is not None:
            return
        quiet = self._clock.monotonic() - self.health.last_success >= self._check_seconds
        if not (probe or quiet) and self.health.ok:
            moved = self._file.moved() if self._file is not None else None
            if moved is not None:
                self._failed(WriteFailure("moved", moved))
            return
        try:
            failure = self.health.failure
            if failure is not None and failure.kind == "readonly":
                await self._run(self._reconnect_sync)
            await self._run(self._write_sync, _probe, self._clock.wall())
        except Exception as exc:
            self._failed(root_cause(exc), probe=True)
        else:
            self.health.succeeded(probe=True)

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self._check_seconds)
            try:
                await self.check()
            except Exception:  # never let the watch die; the next round tries again
                log.exception("state file check failed")

    async def due_deliveries(
        self,
        subscription: str,
        now: float,
        limit: int,
        claimer: str | None = None,
        visibility: float = 60.0,
    ) -> list[Delivery]:
        """Pending deliveries due by `now`, in per-event order (one process: no claims)."""
        return await self._run(outbox.due, self._db, subscription, now, limit)

    async def pending_deliveries(
        self, subscriptions: Sequence[str], event_ids: Sequence[str], max_sequence: int
    ) -> list[PendingDelivery]:
        """Pending deliveries of these subscriptions and events, up to a sequence."""
        if not subscriptions or not event_ids:
            return []
        return await self._run(outbox.pending_of, self._db, subscriptions, event_ids, max_sequence)

    async def pending_rows(self, subscription: str, limit: int) -> list[PendingDelivery]:
        """Pending deliveries of one subscription, at most `limit`."""
        return await self._run(outbox.pending_rows, self._db, subscription, limit)

    async def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due."""
        return await self._run(outbox.next_at, self._db)

    async def delivery_done(
        self, delivery_id: str, result: Mapping[str, Any] | None = None, now: float = 0.0
    ) -> None:
        """Remove a delivered message, or keep it as done with its result."""
        await self._write(outbox.done, delivery_id, result, now)

    async def deliveries_done(self, delivery_ids: Sequence[str]) -> None:
        """Remove many delivered messages in one transaction."""
        if delivery_ids:
            await self._write(outbox.done_many, list(delivery_ids))

    async def recent_deliveries(self, prefix: str, limit: int) -> list[Delivery]:
        """Newest deliveries of targets named `prefix...`."""
        return await self._run(outbox.recent, self._db, prefix, limit)

    async def delivery_retry(
        self, delivery_id: str, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        """Record a failed attempt and when to try again."""
        await self._write(outbox.retry, delivery_id, attempts, next_attempt_at, error)

    async def delivery_dead(self, delivery_id: str, attempts: int, error: str, now: float) -> None:
        """Turn a delivery into a dead letter."""
        await self._write(outbox.dead, delivery_id, attempts, error, now)

    async def outbox_counts(self) -> dict[str, tuple[int, int]]:
        """(pending, dead) per subscription."""
        return await self._run(outbox.counts, self._db)

    async def dead_letters(
        self, subscription: str, limit: int, since: float | None = None
    ) -> list[Delivery]:
        """Dead letters, oldest first."""
        return await self._run(outbox.dead_letters, self._db, subscription, limit, since)

    async def replay(
        self, subscription: str, now: float, ids: Sequence[str] | None, since: float | None
    ) -> int:
        """Dead letters back to pending."""
        return await self._write(outbox.replay, subscription, now, ids, since)

    async def drop_deliveries(self, subscription: str) -> int:
        """Forget a subscription's deliveries."""
        return await self._write(outbox.drop, subscription)

    async def load_objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """API-created objects of one kind."""
        return await self._run(outbox.load_objects, self._db, kind)

    async def save_object(self, kind: str, name: str, spec: Mapping[str, Any]) -> None:
        """Create or replace an API-created object."""
        await self._write(outbox.save_object, kind, name, spec)

    async def delete_object(self, kind: str, name: str) -> bool:
        """Delete an API-created object."""
        return await self._write(outbox.delete_object, kind, name)

    async def create_object(self, kind: str, name: str, spec: Mapping[str, Any]) -> bool:
        """Create an object unless it exists; False when it existed."""
        return await self._write(outbox.create_object, kind, name, spec)

    async def replace_object(
        self, kind: str, name: str, expected: Mapping[str, Any], spec: Mapping[str, Any]
    ) -> bool:
        """Replace an object while it still reads `expected`; False otherwise."""
        return await self._write(outbox.replace_object, kind, name, expected, spec)


def _lock_file(path: Path) -> IO[bytes]:
    """An exclusive lock beside the state file: two daemons on one file would double every
    transition and every request."""
    handle = open(path, "ab")  # noqa: SIM115 - held open for the store's lifetime
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RuntimeError(
            f"the state file is in use by another availability-monitor process ({path})"
        ) from None
    return handle


def _save_observed(db: sqlite3.Connection, items: Sequence[tuple[float, str]]) -> None:
    db.executemany(
        "UPDATE event_state SET observed_at = ? WHERE event_id = ? AND observed_at < ?",
        [(at, eid, at) for at, eid in items],
    )


def _probe(db: sqlite3.Connection, now: float) -> None:
    """The smallest real write: when the store last found it could write."""
    db.execute(
        "INSERT INTO store_meta (key, value) VALUES ('writable_at', ?)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (repr(now),),
    )


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]

"""The embedded SQLite store: one file, one writer thread, one transaction per batch."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import orjson

from monitor.core.transitions import EventState
from monitor.domain import Transition
from monitor.store.base import NewTransition, StoredState

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
)
SCHEMA_VERSION = len(MIGRATIONS)


class SQLiteStore:
    """The Store on SQLite (WAL, synchronous=FULL: a transition survives a crash once stored).

    All database work runs on one dedicated thread, so the event loop never blocks on disk and
    SQLite sees a single writer.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("store is not open")
        return self._conn

    async def open(self) -> None:
        """Open the file (creating folders), set pragmas and migrate."""
        await self._run(self._open_sync)

    def _open_sync(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=5000")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
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
                conn.execute("ROLLBACK")
                raise
        self._conn = conn

    async def close(self) -> None:
        """Close the connection and the writer thread."""
        if self._conn is not None:
            await self._run(self._close_sync)
        self._executor.shutdown(wait=True)

    def _close_sync(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def load_states(self) -> dict[str, StoredState]:
        """Every stored event state."""
        return await self._run(self._load_states_sync)

    def _load_states_sync(self) -> dict[str, StoredState]:
        out: dict[str, StoredState] = {}
        rows = self._db.execute(
            "SELECT event_id, status, status_pending, status_streak,"
            " resale, resale_pending, resale_streak, observed_at FROM event_state"
        )
        for eid, s, sp, ss, r, rp, rs, at in rows:
            out[eid] = StoredState(EventState((s, sp, ss), (r, rp, rs)), at)
        return out

    async def record(
        self,
        changed: Mapping[str, EventState],
        transitions: Sequence[NewTransition],
        observed_at: float,
    ) -> list[Transition]:
        """One transaction: upsert changed states, append transitions, return them numbered."""
        if not changed and not transitions:
            return []
        return await self._run(self._record_sync, changed, transitions, observed_at)

    def _record_sync(
        self,
        changed: Mapping[str, EventState],
        transitions: Sequence[NewTransition],
        observed_at: float,
    ) -> list[Transition]:
        db = self._db
        out: list[Transition] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO event_state VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (event_id) DO UPDATE SET status=excluded.status,"
                " status_pending=excluded.status_pending, status_streak=excluded.status_streak,"
                " resale=excluded.resale, resale_pending=excluded.resale_pending,"
                " resale_streak=excluded.resale_streak, observed_at=excluded.observed_at",
                [(eid, *st.status, *st.resale, observed_at) for eid, st in changed.items()],
            )
            for t in transitions:
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
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return out

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


def _statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]

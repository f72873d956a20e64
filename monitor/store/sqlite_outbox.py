"""SQL for the outbox and API-created objects, run by SQLiteStore on its writer thread."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from monitor.domain import Transition
from monitor.store.base import Delivery, PendingDelivery

_COLUMNS = (
    "d.id, d.subscription, d.attempts, d.next_attempt_at, d.created_at, d.state, d.last_error,"
    " d.dead_at, d.result, d.finished_at, t.sequence, t.event_id, t.watch_sets, t.field,"
    " t.previous, t.current, t.observed_at, t.extra"
)
#: Finished deliveries kept with their result (for /v1/actions), per store.
KEEP_DONE = 5000


def _delivery(row: Sequence[Any]) -> Delivery:
    (did, sub, attempts, next_at, created, state, error, dead_at, result, finished) = row[:10]
    seq, eid, sets, field, prev, cur, at, extra = row[10:]
    transition = Transition(
        seq, eid, tuple(orjson.loads(sets)), field, prev, cur, at,
        orjson.loads(extra) if extra else {},
    )  # fmt: skip
    return Delivery(
        did, sub, transition, attempts, next_at, created, state, error, dead_at,
        orjson.loads(result) if result else None, finished,
    )  # fmt: skip


def insert(
    db: sqlite3.Connection,
    sequence: int,
    event_id: str,
    rows: Sequence[tuple[str, str]],
    at: float,
) -> None:
    """Outbox rows `(delivery id, subscription)` for one transition (inside the caller's
    transaction)."""
    db.executemany(
        "INSERT OR IGNORE INTO deliveries (id, subscription, sequence, event_id, state, attempts,"
        " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?)",
        [(did, s, sequence, event_id, at, at) for did, s in rows],
    )


def due(db: sqlite3.Connection, subscription: str, now: float, limit: int) -> list[Delivery]:
    """Due pending deliveries whose event has no earlier pending delivery (per-event order)."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM deliveries d JOIN transitions t ON t.sequence = d.sequence"  # noqa: S608
        " WHERE d.subscription = ? AND d.state = 'pending' AND d.next_attempt_at <= ?"
        " AND NOT EXISTS (SELECT 1 FROM deliveries e WHERE e.subscription = d.subscription"
        "   AND e.event_id = d.event_id AND e.state = 'pending' AND e.sequence < d.sequence)"
        " ORDER BY d.next_attempt_at, d.sequence LIMIT ?",
        (subscription, now, limit),
    )
    return [_delivery(r) for r in rows]


def pending_of(
    db: sqlite3.Connection, subscriptions: Sequence[str], event_ids: Sequence[str], max_seq: int
) -> list[PendingDelivery]:
    """Pending rows of some subscriptions and events up to a sequence."""
    # INDEXED BY: without statistics the planner would scan every pending row of the
    # subscription (deliveries_due) rather than probe each event (deliveries_order).
    rows = db.execute(
        "SELECT id, subscription, event_id, sequence, attempts, next_attempt_at, created_at"
        " FROM deliveries INDEXED BY deliveries_order"
        " WHERE subscription IN (SELECT value FROM json_each(?))"
        " AND event_id IN (SELECT value FROM json_each(?)) AND sequence <= ?"
        " AND state = 'pending'",
        (
            orjson.dumps(list(subscriptions)).decode(),
            orjson.dumps(list(event_ids)).decode(),
            max_seq,
        ),
    )
    return [PendingDelivery(*r) for r in rows]


def pending_rows(db: sqlite3.Connection, subscription: str, limit: int) -> list[PendingDelivery]:
    """Pending rows of one subscription (deliveries_due index)."""
    rows = db.execute(
        "SELECT id, subscription, event_id, sequence, attempts, next_attempt_at, created_at"
        " FROM deliveries WHERE subscription = ? AND state = 'pending' LIMIT ?",
        (subscription, limit),
    )
    return [PendingDelivery(*r) for r in rows]


def next_at(db: sqlite3.Connection) -> float | None:
    """The earliest due time of any pending delivery."""
    row = db.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE state = 'pending'")
    value = row.fetchone()[0]
    return float(value) if value is not None else None


def done(db: sqlite3.Connection, did: str, result: Mapping[str, Any] | None, now: float) -> None:
    """Delete a delivered message, or keep it as done with its result (the newest few)."""
    if result is None:
        db.execute("DELETE FROM deliveries WHERE id = ?", (did,))
        return
    db.execute(
        "UPDATE deliveries SET state = 'done', result = ?, finished_at = ? WHERE id = ?",
        (orjson.dumps(dict(result)).decode(), now, did),
    )
    db.execute(
        "DELETE FROM deliveries WHERE state = 'done' AND id NOT IN (SELECT id FROM deliveries"
        " WHERE state = 'done' ORDER BY finished_at DESC LIMIT ?)",
        (KEEP_DONE,),
    )


def done_many(db: sqlite3.Connection, ids: Sequence[str]) -> None:
    """Delete many delivered messages."""
    db.executemany("DELETE FROM deliveries WHERE id = ?", [(i,) for i in ids])


def recent(db: sqlite3.Connection, prefix: str, limit: int) -> list[Delivery]:
    """Newest deliveries of targets whose name starts with `prefix`."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM deliveries d JOIN transitions t ON t.sequence = d.sequence"  # noqa: S608
        " WHERE d.subscription >= ? AND d.subscription < ? ORDER BY d.created_at DESC,"
        " d.sequence DESC LIMIT ?",
        (prefix, prefix + "\uffff", limit),
    )
    return [_delivery(r) for r in rows]


def retry(db: sqlite3.Connection, did: str, attempts: int, next_at: float, error: str) -> None:
    """Record a failed attempt."""
    db.execute(
        "UPDATE deliveries SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
        (attempts, next_at, error, did),
    )


def dead(db: sqlite3.Connection, did: str, attempts: int, error: str, now: float) -> None:
    """Make a dead letter."""
    db.execute(
        "UPDATE deliveries SET state = 'dead', attempts = ?, last_error = ?, dead_at = ?"
        " WHERE id = ?",
        (attempts, error, now, did),
    )


def counts(db: sqlite3.Connection) -> dict[str, tuple[int, int]]:
    """(pending, dead) per subscription."""
    out: dict[str, tuple[int, int]] = {}
    for sub, state, n in db.execute(
        "SELECT subscription, state, COUNT(*) FROM deliveries WHERE state != 'done'"
        " GROUP BY subscription, state"
    ):
        pending, dead_n = out.get(sub, (0, 0))
        out[sub] = (pending + n, dead_n) if state == "pending" else (pending, dead_n + n)
    return out


def dead_letters(
    db: sqlite3.Connection, subscription: str, limit: int, since: float | None
) -> list[Delivery]:
    """Dead letters, oldest first."""
    rows = db.execute(
        f"SELECT {_COLUMNS} FROM deliveries d JOIN transitions t ON t.sequence = d.sequence"  # noqa: S608
        " WHERE d.subscription = ? AND d.state = 'dead' AND d.created_at >= ?"
        " ORDER BY d.sequence LIMIT ?",
        (subscription, since if since is not None else 0.0, limit),
    )
    return [_delivery(r) for r in rows]


def replay(
    db: sqlite3.Connection,
    subscription: str,
    now: float,
    ids: Sequence[str] | None,
    since: float | None,
) -> int:
    """Dead letters back to pending with a fresh schedule."""
    sql = (
        "UPDATE deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?,"
        " dead_at = NULL WHERE subscription = ? AND state = 'dead'"
    )
    args: list[Any] = [now, subscription]
    if ids is not None:
        sql += f" AND id IN ({','.join('?' * len(ids))})"
        args += list(ids)
    if since is not None:
        sql += " AND created_at >= ?"
        args.append(since)
    return db.execute(sql, args).rowcount


def drop(db: sqlite3.Connection, subscription: str) -> int:
    """Delete every delivery of a subscription."""
    return db.execute("DELETE FROM deliveries WHERE subscription = ?", (subscription,)).rowcount


def load_objects(db: sqlite3.Connection, kind: str) -> dict[str, dict[str, Any]]:
    """API-created objects of a kind."""
    rows = db.execute("SELECT name, spec FROM objects WHERE kind = ? ORDER BY name", (kind,))
    return {name: orjson.loads(spec) for name, spec in rows}


def save_object(db: sqlite3.Connection, kind: str, name: str, spec: Mapping[str, Any]) -> None:
    """Upsert an object."""
    db.execute(
        "INSERT INTO objects (kind, name, spec) VALUES (?, ?, ?)"
        " ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec",
        (kind, name, orjson.dumps(dict(spec)).decode()),
    )


def create_object(db: sqlite3.Connection, kind: str, name: str, spec: Mapping[str, Any]) -> bool:
    """Insert an object unless it exists; whether it was inserted."""
    cur = db.execute(
        "INSERT INTO objects (kind, name, spec) VALUES (?, ?, ?)"
        " ON CONFLICT (kind, name) DO NOTHING",
        (kind, name, orjson.dumps(dict(spec)).decode()),
    )
    return cur.rowcount > 0


def replace_object(
    db: sqlite3.Connection,
    kind: str,
    name: str,
    expected: Mapping[str, Any],
    spec: Mapping[str, Any],
) -> bool:
    """Replace an object that still reads `expected` (compared as JSON values)."""
    row = db.execute(
        "SELECT spec FROM objects WHERE kind = ? AND name = ?", (kind, name)
    ).fetchone()
    if row is None or orjson.loads(row[0]) != dict(expected):
        return False
    db.execute(
        "UPDATE objects SET spec = ? WHERE kind = ? AND name = ?",
        (orjson.dumps(dict(spec)).decode(), kind, name),
    )
    return True


def delete_object(db: sqlite3.Connection, kind: str, name: str) -> bool:
    """Delete an object."""
    return db.execute("DELETE FROM objects WHERE kind = ? AND name = ?", (kind, name)).rowcount > 0

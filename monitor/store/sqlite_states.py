"""Loading every stored state of the SQLite store at start-up, a million in about a second.

A Python object per row and column is what makes a plain SELECT slow (about 1.5 µs a row). So
SQLite hands over each chunk of rows as three strings: the IDs, each row's whole state as one
integer code, and the observation times in microseconds, comma-separated. `str.split` then
makes the ID strings at C speed, and the few distinct codes and times are decoded once each.
Reading runs on the store's thread and SQLite works without the GIL, so the next chunk is read
while the event loop takes this one.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from monitor.core.transitions import EventState
from monitor.domain import STATUSES
from monitor.store.base import StateChunk, chunk_from_rows

#: Rows per chunk.
STATE_CHUNK = 50_000
#: The interpreter's thread switch interval while a load runs (the default is 5 ms).
SWITCH_SECONDS = 0.0005


def _status_code(column: str) -> str:
    # 0 for NULL, 1-4 for the known statuses (?1-?4), 5 for anything else.
    return (
        f"CASE {column} WHEN ?1 THEN 1 WHEN ?2 THEN 2 WHEN ?3 THEN 3 WHEN ?4 THEN 4"
        f" ELSE ({column} IS NOT NULL) * 5 END"
    )


# A whole state as one integer, digits of mixed radix: status, pending (base 6), streak (base
# 1024), resale, pending (base 6), streak. -1 when a streak does not fit (never, in practice:
# streaks stay below confirm_after, at most 100).
_FULL_CODE = (
    "CASE WHEN status_streak BETWEEN 0 AND 1023 AND resale_streak BETWEEN 0 AND 1023 THEN "
    f"{_status_code('status')} + 6 * ({_status_code('status_pending')} + 6 * (status_streak"
    f" + 1024 * ({_status_code('resale')} + 6 * ({_status_code('resale_pending')}"
    " + 6 * resale_streak)))) ELSE -1 END"
)
# The same value, computed faster for the usual state: nothing pending.
_STATE_CODE = (
    "CASE WHEN status_pending IS NULL AND resale_pending IS NULL AND status_streak = 0"
    f" AND resale_streak = 0 THEN {_status_code('status')} + 36864 * {_status_code('resale')}"
    f" ELSE {_FULL_CODE} END"
)
# ?5 < event_id (<= ?6). The three group_concats see the rows in one order: they line up.
_CHUNK = (
    "SELECT group_concat(event_id, ','),"  # noqa: S608 - constant text, no input
    f" group_concat({_STATE_CODE}, ','),"
    " group_concat(CAST(observed_at * 1000000 AS INTEGER), ',')"
    " FROM event_state WHERE event_id > ?5"
)
_CHUNK_UPTO = _CHUNK + " AND event_id <= ?6"
# Where a chunk ends: found first, so that the chunk query is a plain range.
_CHUNK_END = (
    "SELECT event_id FROM event_state WHERE event_id > ? ORDER BY event_id LIMIT 1 OFFSET ?"
)
_ROWS = (
    "SELECT event_id, status, status_pending, status_streak, resale, resale_pending,"
    " resale_streak, observed_at FROM event_state WHERE event_id > ?"
)
_ROWS_UPTO = _ROWS + " AND event_id <= ?"
_STATUS_OF = (None, *STATUSES)


class RawChunk(NamedTuple):
    """A chunk as SQLite gives it: rows `after` < event_id <= `upto` (None: to the end, the
    last chunk)."""

    after: str
    upto: str | None
    ids: str
    codes: str
    times: str


def read_chunk(db: sqlite3.Connection, after: str) -> RawChunk | None:
    """The chunk after the ID `after` ("" for the first); None when there are no rows.

    Runs on the store's thread and does no per-row work in Python.
    """
    end = db.execute(_CHUNK_END, (after, STATE_CHUNK - 1)).fetchone()
    upto: str | None = end[0] if end else None
    if upto is None:
        row = db.execute(_CHUNK, (*STATUSES, after)).fetchone()
    else:
        row = db.execute(_CHUNK_UPTO, (*STATUSES, after, upto)).fetchone()
    ids, codes, times = row
    if ids is None:
        return None
    return RawChunk(after, upto, ids, codes, times)


def read_rows(db: sqlite3.Connection, after: str, upto: str | None) -> list[Any]:
    """A chunk's rows one by one (the slow way, for what the fast form cannot carry)."""
    if upto is None:
        return db.execute(_ROWS, (after,)).fetchall()
    return db.execute(_ROWS_UPTO, (after, upto)).fetchall()


def decode_state(code: str) -> EventState | None:
    """The state a `_STATE_CODE` stands for; None when it holds a value it cannot express."""
    c = int(code)
    if c < 0:
        return None
    c, s = divmod(c, 6)
    c, sp = divmod(c, 6)
    c, ss = divmod(c, 1024)
    c, r = divmod(c, 6)
    rs, rp = divmod(c, 6)
    if 5 in (s, sp, r, rp):
        return None
    status = (_STATUS_OF[s], _STATUS_OF[sp], ss)
    return EventState(status, (_STATUS_OF[r], _STATUS_OF[rp], rs))


class Decoder:
    """Turns the raw chunks of one load into StateChunks; keeps one object per distinct state
    and time across its chunks."""

    def __init__(self) -> None:
        self._by_code: dict[str, EventState | None] = {}
        self._times: dict[str, float] = {}
        self._by_row: dict[tuple[Any, ...], EventState] = {}
        self._row_times: dict[float, float] = {}

    def chunk(self, raw: RawChunk) -> StateChunk | None:
        """The chunk as columns; None when it must be read row by row (an ID with a comma in
        it, or a value the code cannot express)."""
        ids = raw.ids.split(",")
        codes = raw.codes.split(",")
        if len(ids) != len(codes):  # an ID with a comma in it
            return None
        by_code = self._by_code
        tally: Counter[EventState] = Counter()
        for code, n in Counter(codes).items():
            state = by_code.get(code)
            if state is None:
                state = by_code[code] = decode_state(code)
                if state is None:
                    return None
            tally[state] += n
        times = raw.times.split(",")
        known = self._times
        for text in set(times).difference(known):
            known[text] = int(text) / 1_000_000
        return StateChunk(
            ids,
            list(map(by_code.__getitem__, codes)),  # type: ignore[arg-type]  # no None left
            list(map(known.__getitem__, times)),
            tally,
        )

    def rows(self, rows: Iterable[Sequence[Any]]) -> StateChunk:
        """A chunk from rows read one by one."""
        return chunk_from_rows(rows, self._by_row, self._row_times)


def only(chunk: StateChunk, wanted: set[str]) -> StateChunk:
    """The part of a chunk about the `wanted` events."""
    keep = [i for i, eid in enumerate(chunk.event_ids) if eid in wanted]
    states = [chunk.states[i] for i in keep]
    return StateChunk(
        [chunk.event_ids[i] for i in keep],
        states,
        [chunk.observed_at[i] for i in keep],
        Counter(states),
    )

"""The baseline: a plain, straightforward poller doing the daemon's job, the way one would first
write it. Every benchmark figure is reported beside this program's, measured in the same run.

What it does, all in one thread, one thing after another:

- reads the watched IDs from a CSV file (header `id`) and the last statuses from SQLite;
- forever: for each batch of `--batch-size` IDs, waits for its slot (requests spaced evenly,
  `per_seconds / requests` apart), sends one GET with `http.client` on a kept-alive connection,
  decodes the answer with the standard `json` module, and for every event in it executes one
  SQLite upsert (state and observation time) and, when a status changed, one INSERT of the
  transition; one commit per batch (WAL, synchronous=FULL, as durable as the daemon);
- after the commit, POSTs each transition as a signed Standard Webhooks message, one at a time;
- when a round took less than `--interval`, sleeps for the rest of it.

Transition rules are the daemon's defaults: the first value is the baseline, `UNKNOWN` is no
data, any other change is a transition (confirm_after 1).

Protocol with the benchmark (stdout, one JSON object a line): `{"event": "loaded", ...}` once
the IDs and state are in memory, `{"event": "first_answer"}` after the first answer was stored,
`{"event": "round", ...}` after each round, and `{"event": "stats", ...}` (counters) whenever the
process gets SIGUSR1.

    python -m bench.baseline --base-url URL --api-key KEY --events-file IDS.csv --db STATE.db
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import hmac
import http.client
import json
import signal
import sqlite3
import sys
import time
import types
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

PATH = "/inventory-status/v1/availability"
UNKNOWN = "UNKNOWN"

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS event_state (event_id TEXT PRIMARY KEY, status TEXT,"
    " resale TEXT, observed_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS transitions (sequence INTEGER PRIMARY KEY AUTOINCREMENT,"
    " event_id TEXT NOT NULL, field TEXT NOT NULL, previous TEXT NOT NULL,"
    " current TEXT NOT NULL, observed_at REAL NOT NULL)",
)
UPSERT = (
    "INSERT INTO event_state (event_id, status, resale, observed_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (event_id) DO UPDATE SET status = excluded.status, resale = excluded.resale,"
    " observed_at = excluded.observed_at"
)
INSERT_TRANSITION = (
    "INSERT INTO transitions (event_id, field, previous, current, observed_at)"
    " VALUES (?, ?, ?, ?, ?)"
)


def open_db(path: str) -> sqlite3.Connection:
    """The state file, with the baseline's schema."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    for statement in SCHEMA:
        db.execute(statement)
    db.commit()
    return db


def iso(epoch: float) -> str:
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def emit(event: str, **fields: object) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class Counters:
    observations = 0
    requests = 0
    failed_requests = 0
    transitions = 0
    webhooks = 0


class Connection:
    """One kept-alive HTTP connection, opened again after an error."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.timeout = timeout
        self.conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, resp.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def read_ids(path: str) -> list[str]:
    with open(path, newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        col = header.index("id")
        return [row[col] for row in reader if row]


State = dict[str, tuple[str | None, str | None]]


def judge(
    rows: list[dict[str, str]],
    state: State,
    watched: set[str],
    db: sqlite3.Connection,
    observed_at: float,
) -> list[tuple[str, str, str, str]]:
    """One decoded answer: new states, one upsert per event, transitions; one commit."""
    changes: list[tuple[str, str, str, str]] = []
    for row in rows:
        eid = row.get("eventId") or row.get("eventid")
        if eid not in watched:
            continue
        old_status, old_resale = state.get(eid, (None, None))
        status_now = row.get("status")
        resale_now = row.get("resaleStatus")
        new_status, new_resale = old_status, old_resale
        if status_now and status_now != UNKNOWN:
            if old_status is not None and status_now != old_status:
                changes.append((eid, "status", old_status, status_now))
            new_status = status_now
        if resale_now and resale_now != UNKNOWN:
            if old_resale is not None and resale_now != old_resale:
                changes.append((eid, "resale_status", old_resale, resale_now))
            new_resale = resale_now
        state[eid] = (new_status, new_resale)
        db.execute(UPSERT, (eid, new_status, new_resale, observed_at))
    for change in changes:
        db.execute(INSERT_TRANSITION, (*change, observed_at))
    db.commit()
    return changes


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--events-file", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--rate", default="5/1", help="REQUESTS/SECONDS")
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--webhook-url")
    parser.add_argument("--webhook-secret")
    args = parser.parse_args()

    count, _, per = args.rate.partition("/")
    spacing = float(per or 1) / int(count)
    ids = read_ids(args.events_file)
    db = open_db(args.db)
    state: State = {}
    for eid, status, resale in db.execute("SELECT event_id, status, resale FROM event_state"):
        state[eid] = (status, resale)
    watched = set(ids)
    upstream = Connection(args.base_url)
    hook = Connection(args.webhook_url) if args.webhook_url else None
    hook_path = urlsplit(args.webhook_url).path if args.webhook_url else ""
    key = b""
    if args.webhook_secret:
        key = base64.b64decode(args.webhook_secret.removeprefix("whsec_"))
    stats = Counters()

    def report(signum: int, frame: types.FrameType | None) -> None:
        emit(
            "stats",
            observations=stats.observations,
            requests=stats.requests,
            failed_requests=stats.failed_requests,
            transitions=stats.transitions,
            webhooks=stats.webhooks,
        )

    signal.signal(signal.SIGUSR1, report)
    emit("loaded", events=len(ids), states=len(state))
    prefix = urlsplit(args.base_url).path.rstrip("/")
    query = f"{prefix}{PATH}?apikey={quote(args.api_key, safe='')}&events="
    next_slot = time.monotonic()
    first = True
    sequence = db.execute("SELECT COALESCE(MAX(sequence), 0) FROM transitions").fetchone()[0]

    while True:
        round_started = time.monotonic()
        for start in range(0, len(ids), args.batch_size):
            batch = ids[start : start + args.batch_size]
            body = b""
            for _attempt in range(5):
                now = time.monotonic()
                if next_slot > now:
                    time.sleep(next_slot - now)
                next_slot = max(next_slot, now) + spacing
                stats.requests += 1
                try:
                    status, body = upstream.request("GET", query + ",".join(batch))
                except (OSError, http.client.HTTPException):
                    status = 0
                if status == 200:
                    break
                stats.failed_requests += 1
                time.sleep(1.0 if status == 429 else 0.5)
            else:
                continue  # give up on this batch until the next round

            rows = json.loads(body)
            observed_at = time.time()
            changes = judge(rows, state, watched, db, observed_at)
            stats.observations += len(rows)
            stored_at = time.time()
            stats.transitions += len(changes)
            if first:
                emit("first_answer")
                first = False
            if hook is None:
                sequence += len(changes)
                continue
            for eid, fld, previous, current in changes:
                sequence += 1
                msg_id = f"msg_{sequence}_baseline"
                payload = json.dumps(
                    {
                        "type": "availability.changed",
                        "timestamp": iso(stored_at),
                        "data": {
                            "sequence": sequence,
                            "event_id": eid,
                            "field": fld,
                            "previous": previous,
                            "current": current,
                            "observed_at": iso(observed_at),
                        },
                    }
                ).encode()
                stamp = str(int(time.time()))
                digest = hmac.new(key, f"{msg_id}.{stamp}.".encode() + payload, hashlib.sha256)
                headers = {
                    "Content-Type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": stamp,
                    "webhook-signature": "v1," + base64.b64encode(digest.digest()).decode(),
                }
                try:
                    hook.request("POST", hook_path, payload, headers)
                    stats.webhooks += 1
                except (OSError, http.client.HTTPException):
                    pass  # a plain poller drops what it cannot deliver
        emit("round", observations=stats.observations)
        rest = args.interval - (time.monotonic() - round_started)
        if rest > 0:
            time.sleep(rest)


if __name__ == "__main__":
    main()

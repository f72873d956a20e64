"""Events files (`events_file:`): read at C speed when they hold bare IDs, kept as ID strings.

Such files hold up to millions of rows, nearly all of them a bare ID. A file whose header is
`id` alone and whose every line is one valid ID is read with bytes.translate and str.split;
any other file goes through the csv module, which also names the line and column of every
problem. Rows are kept as ListedEvents: one ID string per row, a FileEntry only for rows that
give more than an ID.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import NamedTuple

from pydantic import ValidationError

from monitor.config import limits as L
from monitor.config.errors import ConfigIssue
from monitor.config.files import FileProblem, decode_text, read_bounded
from monitor.config.listed import FileEntry, ListedEvents
from monitor.config.models import EVENT_ID_RE, Config, EventEntry, check_time_zone

__all__ = ["FileEntry", "ListedEvents", "load_event_files", "read_events_csv"]

#: Problems reported per file before the rest are summed up in one line.
MAX_REPORTED = 100
CSV_COLUMNS = ("id", "venue", "time_zone", "region", "partner_event_id")


def load_event_files(
    config: Config, issues: list[ConfigIssue], origins: dict[tuple[int, int], tuple[str, str]]
) -> Config:
    """Append the rows of each watch set's `events_file` to its events (as ListedEvents).

    `origins` learns, for each appended row with attributes, the key path and "file line N" to
    name in errors (a bare ID row can give no cross-reference error).
    """
    sets = []
    changed = False
    for i, ws in enumerate(config.watch_sets):
        if ws.events_file is None:
            sets.append(ws)
            continue
        key = f"watch_sets[{i}].events_file"
        rows = read_events_csv(ws.events_file, key, issues)
        base = len(ws.events)
        for row, line in rows.lines.items():
            origins[(i, base + row)] = (key, f"{ws.events_file} line {line}")
        events = _listed(ws.events).extended(rows.ids, rows.attributed)
        sets.append(ws.model_copy(update={"events": events}))
        changed = True
    return config.model_copy(update={"watch_sets": sets}) if changed else config


def _listed(events: Sequence[EventEntry | FileEntry]) -> ListedEvents:
    return events if isinstance(events, ListedEvents) else ListedEvents(events, (), {})


_REGION_RE = re.compile(r"[A-Za-z]{2,8}")
#: Every byte an event ID may have (EVENT_ID_RE), for the fast path of plain ID files.
_ID_BYTES = bytes(sorted(set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")))
_BOM = b"\xef\xbb\xbf"


class FileRows(NamedTuple):
    """The events of an `events_file`: every row's ID in file order; the rows that give more
    than an ID by their index in `ids`, with their file lines (for error messages)."""

    ids: tuple[str, ...]
    attributed: dict[int, FileEntry]
    lines: dict[int, int]


def _valid_zone(name: str, known: dict[str, bool]) -> bool:
    ok = known.get(name)
    if ok is None:
        try:
            check_time_zone(name)
            ok = True
        except ValueError:
            ok = False
        known[name] = ok
    return ok


def _fast_entry(values: Mapping[str, str], zones: dict[str, bool]) -> FileEntry | None:
    """A CSV row as an entry without pydantic's per-row cost, or None to take the slow path
    (which also produces the error messages). Same rules as EventEntry's validators."""
    eid = values.get("id")
    if eid is None or not EVENT_ID_RE.fullmatch(eid):
        return None
    venue = values.get("venue")
    tz = values.get("time_zone")
    region = values.get("region")
    pid = values.get("partner_event_id")
    if venue is not None and not EVENT_ID_RE.fullmatch(venue):
        return None
    if pid is not None and not EVENT_ID_RE.fullmatch(pid):
        return None
    if tz is not None and not _valid_zone(tz, zones):
        return None
    if region is not None:
        if not _REGION_RE.fullmatch(region):
            return None
        region = region.upper()
    return FileEntry(eid, venue, tz, region, pid)


def _plain_ids(data: bytes) -> tuple[str, ...] | None:
    """The IDs of a file whose header is `id` alone and whose every line is one valid ID (or
    empty), read at C speed; None for any other file, which the csv module then reads (and
    reports on, line by line)."""
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    end = data.find(b"\n")
    header, body = (data, b"") if end < 0 else (data[:end], data[end + 1 :])
    if header.strip() != b"id":
        return None
    # Left after deleting every ID byte: line ends only, or some line is not a plain ID.
    if body.translate(None, _ID_BYTES).translate(None, b"\r\n"):
        return None
    ids = body.decode("ascii").split()
    if ids and max(map(len, ids)) > 64:
        return None
    return tuple(ids)


def read_events_csv(path: str, key: str, issues: list[ConfigIssue]) -> FileRows:
    """Events from a CSV file with a header (`id` and optional venue, time_zone, region,
    partner_event_id). Problems are appended to `issues`, naming the file line and column."""
    try:
        data = read_bounded(path, L.EVENTS_FILE_BYTES_MAX)
        plain = _plain_ids(data)
        if plain is not None:
            return FileRows(plain, {}, {})
        # Spreadsheets like to start the file with a byte-order mark: decode_text drops it.
        text = decode_text(data, path)
    except FileProblem as exc:
        issues.append(ConfigIssue(key, str(exc)))
        return FileRows((), {}, {})
    del data
    found: list[ConfigIssue] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        return _read_rows(reader, path, key, found)
    except csv.Error as exc:  # a field over the csv module's limit, a NUL byte
        found.append(ConfigIssue(key, f"{path} line {reader.line_num}: {exc}"))
        return FileRows((), {}, {})
    finally:
        issues.extend(found[:MAX_REPORTED])
        if len(found) > MAX_REPORTED:
            issues.append(ConfigIssue(key, f"{path}: {len(found) - MAX_REPORTED:,} more problems"))


def _read_rows(
    reader: Iterator[list[str]], path: str, key: str, issues: list[ConfigIssue]
) -> FileRows:
    """The rows of a CSV events file that is not plain IDs (csv.Error for a broken file)."""
    ids: list[str] = []
    attributed: dict[int, FileEntry] = {}
    lines: dict[int, int] = {}
    zones: dict[str, bool] = {}
    header = next(reader, None)
    if header is None:
        issues.append(ConfigIssue(key, f"{path} is empty (expected a header with id)"))
        return FileRows((), {}, {})
    columns = [h.strip() for h in header]
    bad = [c for c in columns if c not in CSV_COLUMNS]
    if bad or "id" not in columns:
        issues.append(
            ConfigIssue(
                key,
                f"{path} line 1: the header must have id and may have "
                f"{', '.join(CSV_COLUMNS[1:])}; got {', '.join(columns)}",
            )
        )
        return FileRows((), {}, {})
    for row in reader:
        line = reader.line_num  # type: ignore[attr-defined]
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) != len(columns):
            issues.append(
                ConfigIssue(
                    key, f"{path} line {line}: {len(row)} fields, header has {len(columns)}"
                )
            )
            continue
        values = {c: v.strip() for c, v in zip(columns, row, strict=True) if v.strip()}
        entry = _fast_entry(values, zones)
        if entry is None:
            try:
                checked = EventEntry.model_validate(values)
            except ValidationError as exc:
                for err in exc.errors(include_url=False):
                    column = err["loc"][0] if err["loc"] else "id"
                    msg = err["msg"].removeprefix("Value error, ")
                    if err["type"] == "missing":
                        msg = "required value is missing"
                    issues.append(ConfigIssue(key, f"{path} line {line}, column {column}: {msg}"))
                continue
            entry = FileEntry(
                checked.id, checked.venue, checked.time_zone, checked.region,
                checked.partner_event_id,
            )  # fmt: skip
        if entry[1:] != _NO_ATTRS:
            attributed[len(ids)] = entry
            lines[len(ids)] = line
        ids.append(entry.id)
    return FileRows(tuple(ids), attributed, lines)


_NO_ATTRS = (None, None, None, None)

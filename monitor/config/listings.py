"""An action's `listings_file`: `event_id,listing_id` rows, bounded and checked row by row."""

from __future__ import annotations

import csv
import io

from monitor.config import limits as L
from monitor.config.errors import ConfigIssue
from monitor.config.fields import EVENT_ID_RE
from monitor.config.files import FileProblem, read_text

#: Problems reported per file before the rest are summed up in one line.
MAX_REPORTED = 100


def read_listings_csv(path: str, key: str, issues: list[ConfigIssue]) -> dict[str, list[int]]:
    """`event_id,listing_id` rows (with that header) into a mapping; problems are appended to
    `issues` at `key`, naming the file line."""
    out: dict[str, list[int]] = {}
    try:
        text = read_text(path, L.EVENTS_FILE_BYTES_MAX)
    except FileProblem as exc:
        issues.append(ConfigIssue(key, str(exc)))
        return out
    found: list[ConfigIssue] = []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
        if header != ["event_id", "listing_id"]:
            issues.append(
                ConfigIssue(key, f"{path} line 1: the header must be event_id,listing_id")
            )
            return out
        for row in reader:
            problem = _add_row(row, out)
            if problem is not None:
                found.append(ConfigIssue(key, f"{path} line {reader.line_num}{problem}"))
    except csv.Error as exc:
        found.append(ConfigIssue(key, f"{path} line {reader.line_num}: {exc}"))
    issues.extend(found[:MAX_REPORTED])
    if len(found) > MAX_REPORTED:
        issues.append(ConfigIssue(key, f"{path}: {len(found) - MAX_REPORTED:,} more problems"))
    return out


def _add_row(row: list[str], out: dict[str, list[int]]) -> str | None:
    """Add one row to `out`; the problem (", column ...: why") when it is not valid."""
    if not row or all(not c.strip() for c in row):
        return None
    if len(row) != 2:
        return ": expected 2 fields"
    eid, listing = row[0].strip(), row[1].strip()
    if not EVENT_ID_RE.fullmatch(eid):
        shown = eid if len(eid) <= 80 else eid[:80] + "..."
        return f", column event_id: invalid event ID {shown!r}"
    if not (listing.isascii() and listing.isdigit()) or not (
        len(listing) <= 19 and 1 <= int(listing) <= L.LISTING_ID_MAX
    ):
        return f", column listing_id: must be a whole number from 1 to {L.LISTING_ID_MAX}"
    ids = out.setdefault(eid, [])
    if len(ids) >= L.LISTINGS_PER_EVENT_MAX:
        return f": more than {L.LISTINGS_PER_EVENT_MAX:,} listings for event {eid}"
    ids.append(int(listing))
    return None

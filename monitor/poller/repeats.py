"""Answers seen before: a batch whose answer is byte for byte the last one needs no judging.

Most polls find nothing new, and the upstream's answer then repeats exactly (it holds statuses
only, no timestamps). When the same IDs, in the same order and region, get an answer with the
same digest, and the states those events are remembered at are still the very ones they were
after that answer was judged (and found to change nothing), judging it again would find nothing
again: `detect` is a pure function of the observations, the states and the rules. So the
decoding and judging are skipped, and only the observation times move.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from monitor.core.transitions import EventState
from monitor.upstream.delta import Layout


@dataclass(slots=True)
class Seen:
    """A judged answer that changed nothing, and what it was judged against."""

    ids: list[str]
    digest: bytes
    states: list[EventState]  # each event's remembered state, then and (unchanged) after
    rules_from: object  # the catalog whose rules judged it
    unknown_statuses: int
    missing: list[str]


_Key = tuple[str | None, int, str | None, str | None]


class _HasIds(Protocol):
    ids: list[str]


V = TypeVar("V", bound=_HasIds)


class _Table(Generic[V]):
    """Entries by request, least recently put first out: at most `max_entries` of them, and
    (when `max_ids` is set) at most that many IDs over all of them."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.max_ids: int | None = None
        self.held = 0  # IDs over all entries
        self._entries: dict[_Key, V] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: _Key, ids: list[str]) -> V | None:
        """The entry for this request (keys may collide: its IDs are compared)."""
        entry = self._entries.get(key)
        return entry if entry is not None and entry.ids == ids else None

    def put(self, key: _Key, entry: V | None) -> None:
        """Replace the key's entry (None: just drop it), making room first."""
        gone = self._entries.pop(key, None)
        if gone is not None:
            self.held -= len(gone.ids)
        if entry is not None:
            self.trim(len(entry.ids))
            self._entries[key] = entry
            self.held += len(entry.ids)

    def trim(self, coming: int = 0) -> None:
        """Drop the oldest entries until one of `coming` IDs fits (0: until within bounds)."""
        room = 1 if coming else 0
        entries = self._entries
        while entries and (
            len(entries) + room > self.max_entries
            or (self.max_ids is not None and self.held + coming > self.max_ids)
        ):
            self.held -= len(entries.pop(next(iter(entries))).ids)


class RepeatMemo:
    """Per request (region and ID list): the last answer that changed nothing, and the layout
    of the last answer decoded. Least recently kept first out, within bounds.

    Memory: about 16 bytes per event of a remembered answer (two pointers: the request's IDs
    and states are shared objects) and 32 per event of a layout. Requests change as events come
    and go (maintenance windows, reloads), so entries for requests no longer made would pile
    up: besides `max_entries`, the IDs held in each table stay under `max_ids` (`limit_ids`;
    the processor gives twice the watched events), so the memo stays within about 100 bytes
    per watched event however the requests churn, and about half that when they do not.
    """

    def __init__(self, max_entries: int = 4096, max_ids: int | None = None) -> None:
        self._seen: _Table[Seen] = _Table(max_entries)
        # The layout of the last decoded answer per request, for decoding the next one as a
        # delta (`monitor.upstream.delta`).
        self._layouts: _Table[Layout] = _Table(max_entries)
        if max_ids is not None:
            self.limit_ids(max_ids)

    def __len__(self) -> int:
        return len(self._seen)

    def limit_ids(self, max_ids: int) -> None:
        """Hold at most this many IDs in each table (the oldest entries go now if over)."""
        for table in (self._seen, self._layouts):
            table.max_ids = max_ids
            table.trim()

    @staticmethod
    def _key(region: str | None, ids: Sequence[str]) -> _Key:
        # O(1), not a hash of the whole list: the tables compare the IDs of what they find, so
        # requests that share a key only take each other's place.
        if not ids:
            return (region, 0, None, None)
        return (region, len(ids), ids[0], ids[-1])

    def recall(self, region: str | None, ids: list[str], digest: bytes) -> Seen | None:
        """The entry for this request if its answer had this digest."""
        seen = self._seen.get(self._key(region, ids), ids)
        return seen if seen is not None and seen.digest == digest else None

    def remember(self, region: str | None, seen: Seen) -> None:
        """Keep an answer that changed nothing (replacing the request's entry)."""
        self._seen.put(self._key(region, seen.ids), seen)

    def layout(self, region: str | None, ids: list[str]) -> Layout | None:
        """The layout of the last decoded answer to this request, if kept."""
        return self._layouts.get(self._key(region, ids), ids)

    def keep_layout(self, region: str | None, ids: list[str], layout: Layout | None) -> None:
        """Keep (or, with None, forget) the layout of the answer just decoded for a request."""
        if layout is not None and layout.ids != ids:
            raise ValueError("a layout of another request")
        self._layouts.put(self._key(region, ids), layout)

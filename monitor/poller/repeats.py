"""Answers seen before: a batch whose answer is byte for byte the last one needs no judging.

Most polls find nothing new, and the upstream's answer then repeats exactly (it holds statuses
only, no timestamps). When the same IDs, in the same order and region, get an answer with the
same digest, and the states those events are remembered at are still the very ones they were
after that answer was judged (and found to change nothing), judging it again would find nothing
again: `detect` is a pure function of the observations, the states and the rules. So the
decoding and judging are skipped, and only the observation times move.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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


_Key = tuple[str | None, int, int]


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
        self._max = max_entries
        self._max_ids = max_ids
        self._seen: dict[_Key, Seen] = {}
        self._seen_ids = 0
        # The layout of the last decoded answer per request, for decoding the next one as a
        # delta (`monitor.upstream.delta`).
        self._layouts: dict[_Key, Layout] = {}
        self._layout_ids = 0

    def __len__(self) -> int:
        return len(self._seen)

    def limit_ids(self, max_ids: int) -> None:
        """Hold at most this many IDs in each table (the oldest entries go now if over)."""
        self._max_ids = max_ids
        self._seen_ids = self._trim(self._seen, self._seen_ids, 0, _seen_len)
        self._layout_ids = self._trim(self._layouts, self._layout_ids, 0, _layout_len)

    @staticmethod
    def _key(region: str | None, ids: Sequence[str]) -> _Key:
        return (region, len(ids), hash(tuple(ids)))

    def recall(self, region: str | None, ids: list[str], digest: bytes) -> Seen | None:
        """The entry for this request if its answer had this digest."""
        seen = self._seen.get(self._key(region, ids))
        if seen is None or seen.digest != digest or seen.ids != ids:
            return None
        return seen

    def remember(self, region: str | None, seen: Seen) -> None:
        """Keep an answer that changed nothing (replacing the request's entry)."""
        key = self._key(region, seen.ids)
        gone = self._seen.pop(key, None)
        held = self._seen_ids - (len(gone.ids) if gone is not None else 0)
        held = self._trim(self._seen, held, len(seen.ids), _seen_len)
        self._seen[key] = seen
        self._seen_ids = held + len(seen.ids)

    def layout(self, region: str | None, ids: list[str]) -> Layout | None:
        """The layout of the last decoded answer to this request, if kept."""
        kept = self._layouts.get(self._key(region, ids))
        if kept is None or kept.ids != ids:
            return None
        return kept

    def keep_layout(self, region: str | None, ids: list[str], layout: Layout | None) -> None:
        """Keep (or, with None, forget) the layout of the answer just decoded for a request."""
        key = self._key(region, ids)
        gone = self._layouts.pop(key, None)
        held = self._layout_ids - (len(gone.ids) if gone is not None else 0)
        if layout is not None:
            if layout.ids != ids:
                raise ValueError("a layout of another request")
            held = self._trim(self._layouts, held, len(ids), _layout_len)
            self._layouts[key] = layout
            held += len(ids)
        self._layout_ids = held

    def _trim(
        self, table: dict[_Key, Any], held: int, coming: int, size: Callable[[Any], int]
    ) -> int:
        """Drop the oldest entries until one of `coming` IDs fits (0: until within bounds);
        returns the IDs still held."""
        room = 1 if coming else 0
        limit = self._max_ids
        while table and (
            len(table) + room > self._max or (limit is not None and held + coming > limit)
        ):
            held -= size(table.pop(next(iter(table))))
        return held


def _seen_len(seen: Seen) -> int:
    return len(seen.ids)


def _layout_len(kept: Layout) -> int:
    return len(kept.ids)

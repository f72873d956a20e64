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


class RepeatMemo:
    """The last unchanged answer per request (region and ID list), a bounded number of them.

    Memory: two pointers per event of a remembered request (the request's IDs and states are
    shared objects), so about 16 bytes per watched event; and a layout per request.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self._max = max_entries
        self._seen: dict[tuple[str | None, int, int], Seen] = {}
        # The layout of the last decoded answer per request, for decoding the next one as a
        # delta (`monitor.upstream.delta`): 24 bytes per event of a remembered request.
        self._layouts: dict[tuple[str | None, int, int], tuple[list[str], Layout]] = {}

    def __len__(self) -> int:
        return len(self._seen)

    @staticmethod
    def _key(region: str | None, ids: Sequence[str]) -> tuple[str | None, int, int]:
        return (region, len(ids), hash(tuple(ids)))

    def recall(self, region: str | None, ids: list[str], digest: bytes) -> Seen | None:
        """The entry for this request if its answer had this digest."""
        seen = self._seen.get(self._key(region, ids))
        if seen is None or seen.digest != digest or seen.ids != ids:
            return None
        return seen

    def remember(self, region: str | None, seen: Seen) -> None:
        """Keep an answer that changed nothing (the oldest entry goes when full)."""
        key = self._key(region, seen.ids)
        self._seen.pop(key, None)
        if len(self._seen) >= self._max:
            del self._seen[next(iter(self._seen))]
        self._seen[key] = seen

    def layout(self, region: str | None, ids: list[str]) -> Layout | None:
        """The layout of the last decoded answer to this request, if kept."""
        kept = self._layouts.get(self._key(region, ids))
        if kept is None or kept[0] != ids:
            return None
        return kept[1]

    def keep_layout(self, region: str | None, ids: list[str], layout: Layout | None) -> None:
        """Keep (or, with None, forget) the layout of the answer just decoded for a request."""
        key = self._key(region, ids)
        self._layouts.pop(key, None)
        if layout is None:
            return
        if len(self._layouts) >= self._max:
            del self._layouts[next(iter(self._layouts))]
        self._layouts[key] = (ids, layout)

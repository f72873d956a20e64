"""The simulated inventory: which IDs are events and what their statuses are at a given time.

Statuses are a pure function of (seed, event ID, wall time), so two simulators with the same
seed answer alike in any process, and a test can predict an answer without asking for it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final

from monitor.domain import FEW_TICKETS_LEFT, TICKETS_AVAILABLE, TICKETS_NOT_AVAILABLE, UNKNOWN

EVENT_ID_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""What a well-formed event ID looks like; anything else is answered UNKNOWN."""

RESALE_STATUSES: Final = (TICKETS_AVAILABLE, TICKETS_NOT_AVAILABLE, UNKNOWN)

# Cumulative weights over 2**32: 45% / 30% / 20% / 5% for the primary status and
# 60% / 35% / 5% for resale.
_SCALE: Final = 1 << 32
_STATUS_STEPS: Final = (
    (int(0.45 * _SCALE), TICKETS_AVAILABLE),
    (int(0.75 * _SCALE), FEW_TICKETS_LEFT),
    (int(0.95 * _SCALE), TICKETS_NOT_AVAILABLE),
    (_SCALE, UNKNOWN),
)
_RESALE_STEPS: Final = (
    (int(0.60 * _SCALE), TICKETS_AVAILABLE),
    (int(0.95 * _SCALE), TICKETS_NOT_AVAILABLE),
    (_SCALE, UNKNOWN),
)

Pair = tuple[str, str]
"""(status, resaleStatus) of one event."""

UNKNOWN_PAIR: Final[Pair] = (UNKNOWN, UNKNOWN)
STEADY_PAIR: Final[Pair] = (TICKETS_AVAILABLE, TICKETS_AVAILABLE)

# Bound on the per-event cache: enough for any benchmark's working set, and a flood of
# distinct junk IDs cannot grow memory without limit.
_CACHE_LIMIT: Final = 500_000
_MASK64: Final = (1 << 64) - 1


def _pick(steps: tuple[tuple[int, str], ...], draw: int) -> str:
    for bound, value in steps:
        if draw < bound:
            return value
    return steps[-1][1]


def _digest(data: str) -> int:
    # blake2b, not hash(): hash() of str is salted per process and would break determinism.
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "big")


def _override(pair: Pair, script: tuple[str | None, str | None]) -> Pair:
    status, resale = script
    return (pair[0] if status is None else status, pair[1] if resale is None else resale)


def _mix(key: int, bucket: int) -> int:
    """A 64-bit hash of (event key, bucket): splitmix64's finaliser, much cheaper than blake2b."""
    x = (key ^ (bucket * 0x9E3779B97F4A7C15)) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


class _Entry:
    """What we remember about one ID: its constants and its answer for the current bucket.

    `row` is the answer object itself, shared by every response that includes this ID, so a
    1000-ID answer builds no dicts; nobody may mutate it.
    """

    __slots__ = ("bucket", "inv_period", "key", "pair", "phase", "row")

    def __init__(self, event_id: str, pair: Pair, inv_period: float, phase: float, key: int):
        self.inv_period = inv_period  # 0.0 marks an ID whose answer never evolves
        self.phase = phase
        self.key = key
        self.bucket: int | None = None
        self.set(event_id, pair)

    def set(self, event_id: str, pair: Pair) -> None:
        self.pair = pair
        self.row = {"eventId": event_id, "status": pair[0], "resaleStatus": pair[1]}


class World:
    """Deterministic statuses for event IDs, with scripted overrides.

    With `evolve`, every event's period is in [0.5, 1.5] x `change_seconds` and its phase is
    fixed, both from a stable hash of (seed, ID); in each period a status and a resale status
    are drawn by a weighted hash of (seed, ID, period number). Without `evolve`, every event is
    TICKETS_AVAILABLE / TICKETS_AVAILABLE. IDs that are malformed, or absent from an explicit
    `known_events`, are UNKNOWN / UNKNOWN. Scripted fields win over all of this, for any ID.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        evolve: bool = True,
        change_seconds: float = 60.0,
        known_events: Iterable[str] | None = None,
    ) -> None:
        if not change_seconds > 0:
            raise ValueError(f"change_seconds must be positive, got {change_seconds!r}")
        self.seed = seed
        self._evolve = evolve
        self.change_seconds = float(change_seconds)
        self.known_events: frozenset[str] | None = (
            None if known_events is None else frozenset(known_events)
        )
        self._cache: dict[str, _Entry] = {}
        self._scripted: dict[str, tuple[str | None, str | None]] = {}

    @property
    def evolve(self) -> bool:
        """Whether statuses change over time; may be switched while running."""
        return self._evolve

    @evolve.setter
    def evolve(self, value: bool) -> None:
        self._evolve = value
        self._cache.clear()

    # -- queries -----------------------------------------------------------------------------

    def is_event(self, event_id: str) -> bool:
        """Whether the ID names an event (well formed, and known if the world has a list)."""
        if EVENT_ID_RE.fullmatch(event_id) is None:
            return False
        return self.known_events is None or event_id in self.known_events

    def status_of(self, event_id: str, now_wall: float) -> Pair:
        """(status, resaleStatus) of one ID at `now_wall` (epoch seconds)."""
        return self.statuses((event_id,), now_wall)[0]

    def statuses(self, event_ids: Sequence[str], now_wall: float) -> list[Pair]:
        """(status, resaleStatus) of each ID at `now_wall`, in order."""
        pairs = [entry.pair for entry in self._entries(event_ids, now_wall)]
        if self._scripted:
            for i, script in self._scripts(event_ids):
                pairs[i] = _override(pairs[i], script)
        return pairs

    def rows(self, event_ids: Sequence[str], now_wall: float) -> list[dict[str, str]]:
        """The answer objects `{"eventId", "status", "resaleStatus"}` of each ID, in order:
        the hot path. The objects are shared and must not be mutated."""
        rows = [entry.row for entry in self._entries(event_ids, now_wall)]
        if self._scripted:
            for i, script in self._scripts(event_ids):
                status, resale = _override((rows[i]["status"], rows[i]["resaleStatus"]), script)
                rows[i] = {"eventId": event_ids[i], "status": status, "resaleStatus": resale}
        return rows

    def _entries(self, event_ids: Sequence[str], now_wall: float) -> list[_Entry]:
        cache = self._cache
        if len(cache) > _CACHE_LIMIT:
            cache.clear()
        evolve = self._evolve
        out: list[_Entry] = []
        append = out.append
        for event_id in event_ids:
            entry = cache.get(event_id)
            if entry is None:
                entry = cache[event_id] = self._new_entry(event_id)
            if evolve and entry.inv_period:
                bucket = int(now_wall * entry.inv_period + entry.phase)
                if bucket != entry.bucket:
                    entry.bucket = bucket
                    h = _mix(entry.key, bucket)
                    pair = (_pick(_STATUS_STEPS, h & 0xFFFFFFFF), _pick(_RESALE_STEPS, h >> 32))
                    entry.set(event_id, pair)
            append(entry)
        return out

    def _new_entry(self, event_id: str) -> _Entry:
        if not self.is_event(event_id):
            return _Entry(event_id, UNKNOWN_PAIR, 0.0, 0.0, 0)
        if not self._evolve:
            return _Entry(event_id, STEADY_PAIR, 0.0, 0.0, 0)
        h = _digest(f"event\x00{self.seed}\x00{event_id}")
        period = self.change_seconds * (0.5 + (h & 0xFFFFFFFF) / _SCALE)
        phase = (h >> 32) / _SCALE
        key = _digest(f"key\x00{self.seed}\x00{event_id}")
        return _Entry(event_id, STEADY_PAIR, 1.0 / period, phase, key)

    def _scripts(
        self, event_ids: Sequence[str]
    ) -> Iterator[tuple[int, tuple[str | None, str | None]]]:
        scripted = self._scripted
        for i, event_id in enumerate(event_ids):
            script = scripted.get(event_id)
            if script is not None:
                yield i, script

    # -- scripting ---------------------------------------------------------------------------

    def set_status(
        self, event_id: str, status: str | None = None, resale_status: str | None = None
    ) -> None:
        """Pin a field of one ID to a value until changed again; None leaves that field as is.

        Works for any ID, even one the world would otherwise answer UNKNOWN. Any non-empty
        string is accepted, so a test can script a status the API does not document.
        """
        for name, value in (("status", status), ("resale_status", resale_status)):
            if value is not None and (not isinstance(value, str) or not value):
                raise ValueError(f"{name} must be a non-empty string or None, got {value!r}")
        old_status, old_resale = self._scripted.get(event_id, (None, None))
        self._scripted[event_id] = (
            old_status if status is None else status,
            old_resale if resale_status is None else resale_status,
        )

    def clear_scripted(self, event_id: str | None = None) -> None:
        """Drop the scripts of one ID, or of all IDs when none is given."""
        if event_id is None:
            self._scripted.clear()
        else:
            self._scripted.pop(event_id, None)

    @property
    def scripted(self) -> Mapping[str, tuple[str | None, str | None]]:
        """A copy of the scripted (status, resaleStatus) per ID; None means not pinned."""
        return dict(self._scripted)

"""The store interface every backend implements, and the records it takes and gives."""

from __future__ import annotations

import base64
import secrets
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, NamedTuple, Protocol

from monitor.core.transitions import EventState
from monitor.domain import Transition
from monitor.store.health import WriteHealth


@dataclass(frozen=True, slots=True)
class NewTransition:
    """A detected transition on its way into the store, which gives it its sequence."""

    event_id: str
    field: str
    previous: str
    current: str
    watch_sets: tuple[str, ...]
    observed_at: float
    extra: Mapping[str, Any] = dc_field(default_factory=dict)


class StoredState(NamedTuple):
    """An event's remembered state and when it was last written (a tuple: a restart makes a
    million of them)."""

    state: EventState
    observed_at: float


class StateChunk(NamedTuple):
    """Remembered states of a run of events, as columns: `states[i]` and `observed_at[i]` are
    those of `event_ids[i]`. Equal states are one object, and so are equal times; `tally`
    counts the rows of each state."""

    event_ids: list[str]
    states: list[EventState]
    observed_at: list[float]
    tally: Mapping[EventState, int]


#: A stored state row: event_id, status, status_pending, status_streak, resale,
#: resale_pending, resale_streak, observed_at.
StateRow = Sequence[Any]


def chunk_from_rows(
    rows: Iterable[StateRow],
    states: dict[tuple[Any, ...], EventState],
    times: dict[float, float],
) -> StateChunk:
    """Columns from state rows. `states` and `times` hold the one object of each distinct
    state and time, across chunks (pass the same dicts for every chunk of one load)."""
    ids: list[str] = []
    column: list[EventState] = []
    seen: list[float] = []
    tally: dict[EventState, int] = {}
    for eid, s, sp, ss, r, rp, rs, at in rows:
        key = (s, sp, ss, r, rp, rs)
        state = states.get(key)
        if state is None:
            state = states[key] = EventState((s, sp, ss), (r, rp, rs))
        ids.append(eid)
        column.append(state)
        seen.append(times.setdefault(at, at))
        tally[state] = tally.get(state, 0) + 1
    return StateChunk(ids, column, seen, tally)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One webhook message to one subscription: the outbox row and its transition."""

    id: str
    subscription: str
    transition: Transition
    attempts: int
    next_attempt_at: float
    created_at: float
    state: str  # pending | dead | done (kept only when a result was recorded)
    last_error: str | None = None
    dead_at: float | None = None
    result: Mapping[str, Any] | None = None
    finished_at: float | None = None


class PendingDelivery(NamedTuple):
    """A pending outbox row without its transition: what the in-memory hand-off checks."""

    id: str
    subscription: str
    event_id: str
    sequence: int
    attempts: int
    next_attempt_at: float
    created_at: float


def new_writer_id() -> str:
    """128 random bits as 26 lowercase base32 characters: who wrote a delivery. A store draws
    one each time it opens, so no two databases, restores or replicas share one."""
    return base64.b32encode(secrets.token_bytes(16)).decode().rstrip("=").lower()


def delivery_id(writer: str, sequence: int, subscription: str) -> str:
    """The webhook-id of a new delivery: `msg_<writer>_<sequence>_<subscription>`.

    Stored with the delivery, so every retry, replay and restart sends the same. The writer
    makes it unique forever: a sequence alone starts again at 1 in a new database and repeats
    in a restored one, and a receiver that deduplicates would drop the new messages.
    """
    return f"msg_{writer}_{sequence}_{subscription}"


@dataclass(frozen=True, slots=True)
class Fence:
    """The leases a write depends on: it is refused unless `owner` still holds every shard
    with the same token (a replica that lost them, paused or cut off, writes nothing)."""

    owner: str
    tokens: Mapping[int, int]


class LeaseLost(Exception):
    """A fenced write was refused: some shard's lease has moved on."""


class Store(Protocol):
    """Durable state: per-event confirmed values and streaks, and the transition log.

    `record` is the one write of the polling hot path: a batch's changed states and its
    transitions in one transaction, transitions durable before it returns.

    `health` says whether writes go in (readiness reads it); `delivery_id` names the outbox
    rows `record` makes.
    """

    health: WriteHealth

    def delivery_id(self, sequence: int, subscription: str) -> str:
        """The webhook-id `record` gives the delivery of transition `sequence` to
        `subscription` (what the outbox hands over from memory must carry the stored one)."""
        ...

    async def open(self) -> None:
        """Connect, create or migrate the schema."""
        ...

    async def close(self) -> None:
        """Flush and release everything."""
        ...

    async def load_states(self, event_ids: Sequence[str] | None = None) -> dict[str, StoredState]:
        """Remembered event states (all, or those of `event_ids`), for a restart or takeover."""
        ...

    def iter_states(self, event_ids: Sequence[str] | None = None) -> AsyncIterator[StateChunk]:
        """Remembered event states (all, or those of `event_ids`) chunk by chunk: what a start
        with a million events loads, with no object per event beyond its ID string.
        `observed_at` may be rounded down to the microsecond."""
        ...

    async def record(
        self,
        changed: Mapping[str, EventState],
        transitions: Sequence[NewTransition],
        observed_at: float,
        deliveries: Sequence[Sequence[str]] = (),
        delivery_at: float = 0.0,
        fence: Fence | None = None,
    ) -> list[Transition]:
        """Store changed states, new transitions and their outbox rows in one transaction.

        `deliveries[i]` names the subscriptions that get transitions[i]; their first attempt
        is due at `delivery_at`. With a `fence`, the write is refused (LeaseLost, nothing
        stored) unless the leases still hold. Returns the transitions with their sequences.
        """
        ...

    async def save_observed(self, items: Sequence[tuple[float, str]]) -> None:
        """Checkpoint last-observation times `(observed_at, event_id)` of unchanged events."""
        ...

    async def transitions_since(self, since: int, limit: int) -> list[Transition]:
        """Transitions with sequence > `since`, oldest first, at most `limit`."""
        ...

    async def last_sequence(self) -> int:
        """The highest sequence ever given (0 when none)."""
        ...

    # -- the outbox ------------------------------------------------------------------------

    async def due_deliveries(
        self,
        subscription: str,
        now: float,
        limit: int,
        claimer: str | None = None,
        visibility: float = 60.0,
    ) -> list[Delivery]:
        """Pending deliveries due by `now`, never one whose event has an earlier pending one.

        With a `claimer` (several replicas), the rows are claimed for `visibility` seconds so
        no other worker attempts them meanwhile.
        """
        ...

    async def pending_deliveries(
        self, subscriptions: Sequence[str], event_ids: Sequence[str], max_sequence: int
    ) -> list[PendingDelivery]:
        """Pending deliveries of these subscriptions and events, sequence <= `max_sequence`.

        What the outbox asks about freshly stored transitions before it sends them straight
        from memory: which rows they made, and whether an earlier one of the event still waits.
        """
        ...

    async def pending_rows(self, subscription: str, limit: int) -> list[PendingDelivery]:
        """Pending deliveries of one subscription, in no particular order, at most `limit`."""
        ...

    async def next_delivery_at(self) -> float | None:
        """When the earliest pending delivery is due (None when there is none)."""
        ...

    async def delivery_done(
        self, delivery_id: str, result: Mapping[str, Any] | None = None, now: float = 0.0
    ) -> None:
        """Success: the delivery leaves the outbox; with a `result` it is kept as `done` (the
        most recent few thousand), so `recent_deliveries` can show what happened."""
        ...

    async def deliveries_done(self, delivery_ids: Sequence[str]) -> None:
        """Many successes at once (one transaction): the deliveries leave the outbox."""
        ...

    async def recent_deliveries(self, prefix: str, limit: int) -> list[Delivery]:
        """Deliveries (any state) of targets whose name starts with `prefix`, newest first."""
        ...

    async def delivery_retry(
        self, delivery_id: str, attempts: int, next_attempt_at: float, error: str
    ) -> None:
        """A failed attempt with more to come."""
        ...

    async def delivery_dead(self, delivery_id: str, attempts: int, error: str, now: float) -> None:
        """The schedule is spent: keep it as a dead letter."""
        ...

    async def outbox_counts(self) -> dict[str, tuple[int, int]]:
        """Per subscription: (pending, dead)."""
        ...

    async def dead_letters(
        self, subscription: str, limit: int, since: float | None = None
    ) -> list[Delivery]:
        """Dead letters of a subscription, oldest first (optionally created at/after `since`)."""
        ...

    async def replay(
        self, subscription: str, now: float, ids: Sequence[str] | None, since: float | None
    ) -> int:
        """Dead letters back to pending, due now: the given IDs, or all created since `since`."""
        ...

    async def drop_deliveries(self, subscription: str) -> int:
        """Forget every delivery of a subscription (it was deleted)."""
        ...

    # -- runtime-managed objects -----------------------------------------------------------

    async def load_objects(self, kind: str) -> dict[str, dict[str, Any]]:
        """API-created objects of a kind ("subscription", "watch_set"), by name."""
        ...

    async def save_object(self, kind: str, name: str, spec: Mapping[str, Any]) -> None:
        """Create or replace an API-created object."""
        ...

    async def delete_object(self, kind: str, name: str) -> bool:
        """Delete an API-created object; False when there was none."""
        ...

    async def create_object(self, kind: str, name: str, spec: Mapping[str, Any]) -> bool:
        """Create an object unless one of that kind and name exists (atomically, for every
        replica); False when it existed."""
        ...

    async def replace_object(
        self, kind: str, name: str, expected: Mapping[str, Any], spec: Mapping[str, Any]
    ) -> bool:
        """Replace an object only while it still reads `expected` (compare and swap); False
        when it changed or went in the meantime."""
        ...

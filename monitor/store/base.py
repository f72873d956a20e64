"""The store interface every backend implements, and the records it takes and gives."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Protocol

from monitor.core.transitions import EventState
from monitor.domain import Transition


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


@dataclass(frozen=True, slots=True)
class StoredState:
    """An event's remembered state and when it was last written."""

    state: EventState
    observed_at: float


class Store(Protocol):
    """Durable state: per-event confirmed values and streaks, and the transition log.

    `record` is the one write of the polling hot path: a batch's changed states and its
    transitions in one transaction, transitions durable before it returns.
    """

    async def open(self) -> None:
        """Connect, create or migrate the schema."""
        ...

    async def close(self) -> None:
        """Flush and release everything."""
        ...

    async def load_states(self) -> dict[str, StoredState]:
        """Every remembered event state, for a restart to resume from."""
        ...

    async def record(
        self,
        changed: Mapping[str, EventState],
        transitions: Sequence[NewTransition],
        observed_at: float,
    ) -> list[Transition]:
        """Store changed states and new transitions atomically; returns them with sequences."""
        ...

    async def transitions_since(self, since: int, limit: int) -> list[Transition]:
        """Transitions with sequence > `since`, oldest first, at most `limit`."""
        ...

    async def last_sequence(self) -> int:
        """The highest sequence ever given (0 when none)."""
        ...

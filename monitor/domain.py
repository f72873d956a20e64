"""The records every part of the daemon speaks: statuses, observations, transitions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dc_field
from typing import Any, Final, NamedTuple

from monitor.clock import iso_utc

TICKETS_AVAILABLE: Final = "TICKETS_AVAILABLE"
FEW_TICKETS_LEFT: Final = "FEW_TICKETS_LEFT"
TICKETS_NOT_AVAILABLE: Final = "TICKETS_NOT_AVAILABLE"
UNKNOWN: Final = "UNKNOWN"

STATUSES: Final = (TICKETS_AVAILABLE, FEW_TICKETS_LEFT, TICKETS_NOT_AVAILABLE, UNKNOWN)
STATUS_SET: Final = frozenset(STATUSES)

FIELD_STATUS: Final = "status"
FIELD_RESALE: Final = "resale_status"
FIELDS: Final = (FIELD_STATUS, FIELD_RESALE)


class Observation(NamedTuple):
    """One event's answer in one upstream response. A field is None when the answer lacked it.

    A NamedTuple: a thousand are made per request, and tuples are the cheapest to build.
    """

    event_id: str
    status: str | None
    resale_status: str | None


@dataclass(frozen=True, slots=True)
class Transition:
    """A confirmed change of one field of one event, as stored and as published."""

    sequence: int
    event_id: str
    watch_sets: tuple[str, ...]
    field: str
    previous: str
    current: str
    observed_at: float
    extra: Mapping[str, Any] = dc_field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The transition format of the external contract (optional fields only when known)."""
        out: dict[str, Any] = {
            "sequence": self.sequence,
            "event_id": self.event_id,
            "watch_sets": list(self.watch_sets),
            "field": self.field,
            "previous": self.previous,
            "current": self.current,
            "observed_at": iso_utc(self.observed_at),
        }
        out.update({k: v for k, v in self.extra.items() if v is not None})
        return out

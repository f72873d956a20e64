"""Watched events as given: plain IDs (checked at C speed, kept as strings) or mappings."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, ValidationError, field_validator
from pydantic_core import InitErrorDetails

from monitor.config import limits as L
from monitor.config.base import Strict, custom_error
from monitor.config.fields import EVENT_ID_RE, EventId, TimeZone, check_event_id, event_id_text
from monitor.config.listed import FileEntry, ListedEvents


class EventEntry(Strict):
    """One watched event: a plain ID in YAML, or a mapping with more."""

    id: EventId
    venue: EventId | None = None
    time_zone: TimeZone | None = None
    region: str | None = None
    partner_event_id: EventId | None = None

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not _REGION_RE.fullmatch(v):
            shown = v if len(v) <= 20 else v[:20] + "..."
            raise ValueError(f"invalid region {shown!r}: expected a short code such as UK")
        return v.upper() if v is not None else None

    def has_attributes(self) -> bool:
        """Whether the entry gives more than its ID."""
        return (self.venue, self.time_zone, self.region, self.partner_event_id) != _NO_ATTRS


_NO_ATTRS = (None, None, None, None)
_REGION_RE = re.compile(r"[A-Za-z]{2,8}")


def _event_entry(value: Any) -> Any:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return {"id": value}
    return value


#: An event as listed: a plain ID in YAML, or a mapping.
EventItem = Annotated[EventEntry, BeforeValidator(_event_entry)]


def _entry_errors(index: int, exc: ValidationError) -> list[InitErrorDetails]:
    return [
        custom_error(err["type"], err["msg"], (index, *err["loc"]), err.get("input"))
        for err in exc.errors(include_url=False)
    ]


def _slow_entry(index: int, item: Any, errors: list[InitErrorDetails]) -> EventEntry | str | None:
    """One event that is not a valid plain ID string: a number, a mapping, or an error."""
    try:
        if isinstance(item, dict | EventEntry):
            entry = EventEntry.model_validate(item)
            return entry if entry.has_attributes() else entry.id
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise ValueError("expected an event ID or a mapping with id")
        return check_event_id(event_id_text(item))
    except ValidationError as exc:
        errors.extend(_entry_errors(index, exc))
    except ValueError as exc:
        errors.append(custom_error("value_error", str(exc), (index,), item))
    return None


#: Problems reported per list before the rest are summed up in one.
ERRORS_MAX = 1_000


def validate_events(value: Any) -> ListedEvents:
    """A watch set's `events`: plain IDs are checked at C speed and kept as strings; only
    mappings become EventEntry objects. Every problem is reported with its index."""
    if isinstance(value, ListedEvents):
        return value
    if not isinstance(value, list | tuple):
        raise ValueError("expected a list of event IDs")
    if len(value) > L.INLINE_EVENTS_MAX:
        raise ValueError(
            f"at most {L.INLINE_EVENTS_MAX:,} events inline per watch set; use events_file"
        )
    ids: list[str] = []
    attributed: dict[int, EventEntry | FileEntry] = {}
    errors: list[InitErrorDetails] = []
    more = 0  # problems past ERRORS_MAX, counted rather than kept
    match = EVENT_ID_RE.fullmatch
    for index, item in enumerate(value):
        if type(item) is str and match(item):
            ids.append(item)
            continue
        got = _slow_entry(index, item, errors)
        if isinstance(got, EventEntry):
            attributed[len(ids)] = got
            ids.append(got.id)
        elif got is not None:
            ids.append(got)
        if len(errors) > ERRORS_MAX:
            more += len(errors) - ERRORS_MAX
            del errors[ERRORS_MAX:]
    if more:
        note = f"and {more:,} more problems in this list"
        errors.append(custom_error("value_error", note, (), None))
    if errors:
        raise ValidationError.from_exception_data("events", errors)
    return ListedEvents((), tuple(ids), attributed)

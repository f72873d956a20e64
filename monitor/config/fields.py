"""Field types shared by every config section (and so by the API's bodies): bounded numbers,
event IDs, names, URLs, labels. Each refuses NaN, infinity, booleans-as-numbers and oversized
strings with a message that never repeats a secret."""

from __future__ import annotations

import re
from datetime import time
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator, Field, StringConstraints
from pydantic import Strict as StrictMode

from monitor.config import limits as L
from monitor.config.urls import check_url_shape

EVENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAME_RE = re.compile(r"[a-z0-9_-]{1,64}")
_ZONE_MAX = 128


def _no_bool(value: Any) -> Any:
    # Pydantic's lax mode takes true as 1: in a config that is always a mistake.
    if isinstance(value, bool):
        raise ValueError("expected a number, got a boolean")
    return value


#: An integer or a float that is not a boolean (NaN and infinity are refused by the models).
Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
#: A whole number only: no boolean, no fraction, no numeric string.
StrictInt = Annotated[int, StrictMode()]


def check_event_id(value: str) -> str:
    """Event IDs are 1-64 characters of [A-Za-z0-9_-]."""
    if not EVENT_ID_RE.fullmatch(value):
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise ValueError(
            f"invalid event ID {shown!r}: must be 1 to 64 characters of A-Z a-z 0-9 _ -"
        )
    return value


def event_id_text(value: Any) -> Any:
    """An event ID as given: a string, or a whole number >= 0 meaning its decimal digits
    (`12345` and `"12345"` are the same event, in YAML, in CSV and in JSON)."""
    if isinstance(value, bool | float):
        raise ValueError("an event ID is a string (or a whole number): quote it")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("an event ID given as a number must not be negative: quote it")
        return str(value)
    return value


def check_time_zone(value: str) -> str:
    """An IANA time zone name that zoneinfo knows."""
    try:
        if len(value) > _ZONE_MAX:
            raise ValueError
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a tzdata folder
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise ValueError(
            f"unknown time zone {shown!r} (expected an IANA name such as Europe/Berlin)"
        ) from None
    return value


def parse_clock(value: Any) -> time:
    """`HH:MM` or `HH:MM:SS` as a time of day."""
    if isinstance(value, str) and len(value) <= 16:
        m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", value.strip())
        if m and int(m[1]) < 24 and int(m[2]) < 60 and int(m[3] or 0) < 60:
            return time(int(m[1]), int(m[2]), int(m[3] or 0))
    shown = value if not isinstance(value, str) or len(value) <= 20 else value[:20] + "..."
    raise ValueError(f"expected a time HH:MM, got {shown!r}")


def _http_url(value: str) -> str:
    check_url_shape(value)
    return value.rstrip("/")


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise ValueError(f"invalid name {shown!r}: use 1 to 64 characters of a-z 0-9 _ -")
    return value


#: A time of day.
ClockTime = Annotated[time, BeforeValidator(parse_clock)]
#: The name of a watch set, webhook, action or channel: 1-64 of [a-z0-9_-].
Name = Annotated[str, AfterValidator(_name)]
#: An http(s) base URL, without a trailing slash.
HttpUrl = Annotated[str, AfterValidator(_http_url)]
#: An event (or venue) ID: 1-64 of [A-Za-z0-9_-]; a whole number stands for its digits.
EventId = Annotated[str, BeforeValidator(event_id_text), AfterValidator(check_event_id)]
#: A time zone name.
TimeZone = Annotated[str, AfterValidator(check_time_zone)]
#: A free text (a venue's name, an alert name).
FreeString = Annotated[str, StringConstraints(min_length=1, max_length=L.FREE_STRING_MAX)]
#: A file path.
FilePath = Annotated[str, StringConstraints(min_length=1, max_length=4096)]
#: An Alertmanager label name and value.
LabelKey = Annotated[
    str,
    StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=L.LABEL_KEY_MAX),
]
LabelValue = Annotated[str, StringConstraints(max_length=L.LABEL_VALUE_MAX)]
#: A marketplace listing ID: a positive signed 64-bit integer.
ListingId = Annotated[int, BeforeValidator(_no_bool), Field(ge=1, le=L.LISTING_ID_MAX)]

"""Typed config models. Unknown keys are errors; every number, string and list is bounded
(monitor/config/limits.py); NaN and infinity are refused everywhere.

The HTTP API validates its bodies with these same models, so a bound here is a bound there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    PlainValidator,
    SerializationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from monitor.config import limits as L
from monitor.config.base import KeyedApi, RateLimit, Strict
from monitor.config.events import EventEntry, EventItem, validate_events
from monitor.config.fields import (
    EVENT_ID_RE,
    NAME_RE,
    ClockTime,
    EventId,
    FilePath,
    Float,
    FreeString,
    HttpUrl,
    Int,
    Name,
    StrictInt,
    TimeZone,
    check_event_id,
    check_time_zone,
)
from monitor.config.listed import FileEntry, ListedEvents
from monitor.config.outputs import (
    DEFAULT_RETRY_SCHEDULE,
    FIELD_NAMES,
    STATUS_NAMES,
    Action,
    Alertmanager,
    Filter,
    Marketplace,
    Notifications,
    Webhook,
    When,
    check_webhook_secret,
)
from monitor.config.urls import check_host
from monitor.core.maintenance import DEFAULT_WINDOW, Window
from monitor.secrets import Secret

__all__ = [
    "DEFAULT_RETRY_SCHEDULE",
    "EVENT_ID_RE",
    "FIELD_NAMES",
    "NAME_RE",
    "STATUS_NAMES",
    "Action",
    "Alertmanager",
    "ClockTime",
    "EventEntry",
    "EventId",
    "EventItem",
    "Filter",
    "HttpUrl",
    "Marketplace",
    "Name",
    "Notifications",
    "Strict",
    "Webhook",
    "When",
    "check_event_id",
    "check_time_zone",
    "check_webhook_secret",
]


class MaintenanceWindow(Strict):
    """A daily window in venue-local time; start after end crosses midnight."""

    start: ClockTime = DEFAULT_WINDOW.start
    end: ClockTime = DEFAULT_WINDOW.end

    @model_validator(mode="after")
    def _not_empty(self) -> MaintenanceWindow:
        if self.start == self.end:
            raise ValueError("start and end are equal: the window would be empty")
        return self

    def window(self) -> Window:
        """The core's window value."""
        return Window(self.start, self.end)


class Upstream(KeyedApi):
    """The Inventory Status API and how to talk to it."""

    base_url: HttpUrl = "https://app.ticketmaster.com"
    api_key: Secret
    rate_limit: RateLimit = RateLimit()
    batch_size: Int = Field(1000, ge=1, le=1000)
    timeout_seconds: Float = Field(10.0, gt=0, le=L.TIMEOUT_MAX)
    method: Literal["GET", "POST", "POST_QUERY"] = "GET"
    max_retries: Int = Field(4, ge=0, le=20)
    max_in_flight: Int = Field(4, ge=1, le=64)
    backoff_base_seconds: Float = Field(0.5, gt=0, le=L.BACKOFF_BASE_MAX)
    backoff_max_seconds: Float = Field(30.0, gt=0, le=L.BACKOFF_MAX_MAX)
    auth_backoff_seconds: Float = Field(60.0, gt=0, le=L.AUTH_BACKOFF_MAX)
    daily_quota: Int | None = Field(None, ge=1, le=L.DAILY_QUOTA_MAX)
    quarantine_seconds: Float = Field(3600.0, ge=0, le=L.QUARANTINE_MAX)
    max_url_bytes: Int = Field(8192, ge=1024, le=65536)
    max_answer_bytes: Int = Field(4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    max_retry_after_seconds: Float = Field(300.0, ge=1, le=3600)
    pause_unready_seconds: Float = Field(60.0, ge=1, le=86400)
    long_unknown_seconds: Float = Field(86400.0, ge=60, le=90 * 86400)


class Venue(Strict):
    """A venue: its time zone and, optionally, its own maintenance window."""

    id: EventId
    name: FreeString | None = None
    time_zone: TimeZone | None = None
    maintenance: MaintenanceWindow | None = None


STATUS_KEYS = ("TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE", "UNKNOWN")
Interval = Annotated[Float, Field(ge=L.INTERVAL_MIN, le=L.INTERVAL_MAX)]


class WatchSet(Strict):
    """A named set of events polled at one interval."""

    name: Name
    interval_seconds: Interval = 60.0
    events: Annotated[Sequence[EventEntry | FileEntry], PlainValidator(validate_events)] = (
        ListedEvents((), (), {})
    )
    events_file: FilePath | None = None
    confirm_after: Int = Field(1, ge=L.CONFIRM_AFTER_MIN, le=L.CONFIRM_AFTER_MAX)
    track_unknown: bool = False
    priority: StrictInt = Field(0, ge=L.PRIORITY_MIN, le=L.PRIORITY_MAX)
    intervals: dict[Literal[STATUS_KEYS], Interval] = {}  # type: ignore[valid-type]

    @field_serializer("events")
    def _events(
        self, events: Sequence[EventEntry | FileEntry], info: SerializationInfo
    ) -> list[str | dict[str, Any]]:
        # A bare ID as its string (as it would be written), an entry with more as a mapping.
        out: list[str | dict[str, Any]] = []
        for e in events:
            dumped = e.model_dump(exclude_none=True)
            out.append(e.id if len(dumped) == 1 else e.model_dump(exclude_none=info.exclude_none))
        return out


class State(Strict):
    """Where the state lives: a SQLite file (one replica) or PostgreSQL (several)."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: FilePath = "./data/monitor.db"
    dsn: Secret | None = None
    schema_: str = Field("public", alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    pool_size: Int = Field(10, ge=2, le=100)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _dsn(self) -> State:
        if self.backend == "postgres" and self.dsn is None:
            raise ValueError("backend postgres needs dsn (or dsn_file)")
        return self


class Server(Strict):
    """The HTTP server for metrics, health and the API."""

    listen: str = Field("127.0.0.1:9108", max_length=300)
    admin_token: Secret | None = None
    stall_seconds: Float | None = Field(None, gt=0, le=L.STALL_MAX)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        host, _ = parse_listen(v)
        check_host(host)
        return v


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` -> (host, port)."""
    m = re.fullmatch(r"(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]\s]*)):(\d{1,5})", value.strip())
    if not m or int(m[3]) > 65535:
        shown = value if len(value) <= 80 else value[:80] + "..."
        raise ValueError(f"expected host:port, got {shown!r}")
    host = m[1] or m[2] or "0.0.0.0"
    return host, int(m[3])


class Logging(Strict):
    """Log format and level."""

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


class Partner(KeyedApi):
    """The Partner API: event details, for venue time zones and event dates."""

    base_url: HttpUrl = "https://app.ticketmaster.com/partners/v1"
    api_key: Secret
    client_secret: Secret
    rate_limit: RateLimit = RateLimit(requests=3600, per_seconds=3600)
    timeout_seconds: Float = Field(10.0, gt=0, le=L.TIMEOUT_MAX)
    refresh_hours: Float = Field(24.0, gt=0, le=L.PARTNER_HOURS_MAX)
    not_found_retry_hours: Float = Field(6.0, gt=0, le=L.PARTNER_HOURS_MAX)
    retire_past_events: bool = True
    max_answer_bytes: Int = Field(1024 * 1024, ge=16 * 1024, le=64 * 1024 * 1024)
    max_retry_after_seconds: Float = Field(300.0, ge=1, le=3600)


class Cluster(Strict):
    """Several replicas on PostgreSQL (used with `state.backend: postgres`)."""

    shards: Int = Field(64, ge=1, le=4096)
    lease_seconds: Float = Field(15.0, ge=L.LEASE_MIN, le=L.LEASE_MAX)
    replica_id: str | None = Field(None, min_length=1, max_length=L.FREE_STRING_MAX)
    claim_seconds: Float = Field(60.0, gt=0, le=L.CLAIM_MAX)


class Config(Strict):
    """The whole config file."""

    upstream: Upstream
    maintenance: MaintenanceWindow = MaintenanceWindow()
    venues: list[Venue] = Field([], max_length=L.VENUES_MAX)
    watch_sets: list[WatchSet] = Field([], max_length=L.WATCH_SETS_MAX)
    state: State = State()
    server: Server = Server()
    log: Logging = Logging()
    notifications: Notifications = Notifications()
    marketplace: Marketplace | None = None
    actions: list[Action] = Field([], max_length=L.ACTIONS_MAX)
    partner: Partner | None = None
    cluster: Cluster = Cluster()

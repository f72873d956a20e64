"""Typed config models. Unknown keys are errors; defaults follow INTERFACES.md."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import time
from typing import TYPE_CHECKING, Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializationInfo,
    StrictInt,
    field_serializer,
    field_validator,
    model_validator,
)

from monitor.core.maintenance import DEFAULT_WINDOW, Window
from monitor.secrets import Secret

if TYPE_CHECKING:
    from monitor.config.event_files import FileEntry

EVENT_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAME_RE = re.compile(r"[a-z0-9_-]+")


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, models are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


def check_event_id(value: str) -> str:
    """Event IDs are 1-64 characters of [A-Za-z0-9_-]."""
    if not EVENT_ID_RE.fullmatch(value):
        raise ValueError(
            f"invalid event ID {value!r}: must be 1 to 64 characters of A-Z a-z 0-9 _ -"
        )
    return value


def check_time_zone(value: str) -> str:
    """An IANA time zone name that zoneinfo knows."""
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # "Europe" is a tzdata folder
        raise ValueError(
            f"unknown time zone {value!r} (expected an IANA name such as Europe/Berlin)"
        ) from None
    return value


def _parse_clock(value: Any) -> time:
    if isinstance(value, str):
        m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", value.strip())
        if m and int(m[1]) < 24 and int(m[2]) < 60 and int(m[3] or 0) < 60:
            return time(int(m[1]), int(m[2]), int(m[3] or 0))
    raise ValueError(f"expected a time HH:MM, got {value!r}")


ClockTime = Annotated[time, BeforeValidator(_parse_clock)]


def _http_url(value: str) -> str:
    if not re.match(r"https?://[^/\s]+", value):
        raise ValueError("must be an http(s) URL")
    return value.rstrip("/")


def _name(value: str) -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(f"invalid name {value!r}: use a-z 0-9 _ -")
    return value


#: The name of a watch set, webhook or action: [a-z0-9_-]+.
Name = Annotated[str, AfterValidator(_name)]

#: An http(s) base URL, without a trailing slash.
HttpUrl = Annotated[str, AfterValidator(_http_url)]
EventId = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]


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


class RateLimit(Strict):
    """At most `requests` requests in any `per_seconds` window."""

    requests: int = Field(5, ge=1)
    per_seconds: float = Field(1.0, gt=0)
    margin: float = Field(0.01, ge=0, le=0.5)


class Upstream(Strict):
    """The Inventory Status API and how to talk to it."""

    base_url: HttpUrl = "https://app.ticketmaster.com"
    api_key: Secret
    rate_limit: RateLimit = RateLimit()
    batch_size: int = Field(1000, ge=1, le=1000)
    timeout_seconds: float = Field(10.0, gt=0)
    method: Literal["GET", "POST"] = "GET"
    max_retries: int = Field(4, ge=0, le=20)
    max_in_flight: int = Field(4, ge=1, le=64)
    backoff_base_seconds: float = Field(0.5, gt=0)
    backoff_max_seconds: float = Field(30.0, gt=0)
    auth_backoff_seconds: float = Field(60.0, gt=0)
    daily_quota: int | None = Field(None, ge=1)
    quarantine_seconds: float = Field(3600.0, ge=0)


class Venue(Strict):
    """A venue: its time zone and, optionally, its own maintenance window."""

    id: EventId
    name: str | None = None
    time_zone: str | None = None
    maintenance: MaintenanceWindow | None = None

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return v if v is None else check_time_zone(v)


def _event_entry(value: Any) -> Any:
    if isinstance(value, str | int) and not isinstance(value, bool):
        return {"id": str(value)}
    return value


class EventEntry(Strict):
    """One watched event: a plain ID in YAML, or a mapping with more."""

    id: EventId
    venue: EventId | None = None
    time_zone: str | None = None
    region: str | None = None
    partner_event_id: EventId | None = None

    @field_validator("partner_event_id")
    @classmethod
    def _partner_id(cls, v: str | None) -> str | None:
        return v if v is None else check_event_id(v)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        return check_event_id(v)

    @field_validator("time_zone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return v if v is None else check_time_zone(v)

    @field_validator("region")
    @classmethod
    def _region(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z]{2,8}", v):
            raise ValueError(f"invalid region {v!r}: expected a short code such as UK")
        return v.upper() if v is not None else None


#: An event as listed: a plain ID or a mapping.
EventItem = Annotated[EventEntry, BeforeValidator(_event_entry)]


STATUS_KEYS = ("TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE", "UNKNOWN")


class WatchSet(Strict):
    """A named set of events polled at one interval."""

    name: Name
    interval_seconds: float = Field(60.0, ge=1, le=2_592_000)
    events: list[EventItem] = []
    events_file: str | None = None
    confirm_after: int = Field(1, ge=1, le=100)
    track_unknown: bool = False
    priority: StrictInt = Field(0, ge=-1000, le=1000)
    intervals: dict[Literal[STATUS_KEYS], Annotated[float, Field(ge=1, le=2_592_000)]] = {}  # type: ignore[valid-type]

    @field_serializer("events")
    def _events(
        self, events: Sequence[EventEntry | FileEntry], info: SerializationInfo
    ) -> list[dict[str, Any]]:
        # Entries one by one: an events file's rows are ListedEvents, not a list.
        return [e.model_dump(exclude_none=info.exclude_none) for e in events]


class State(Strict):
    """Where the state lives: a SQLite file (one replica) or PostgreSQL (several)."""

    backend: Literal["sqlite", "postgres"] = "sqlite"
    path: str = "./data/monitor.db"
    dsn: Secret | None = None
    schema_: str = Field("public", alias="schema", pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    pool_size: int = Field(10, ge=2, le=100)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _dsn(self) -> State:
        if self.backend == "postgres" and self.dsn is None:
            raise ValueError("backend postgres needs dsn (or dsn_file)")
        return self


class Server(Strict):
    """The HTTP server for metrics, health and the API."""

    listen: str = "127.0.0.1:9108"
    admin_token: Secret | None = None
    stall_seconds: float | None = Field(None, gt=0)

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        parse_listen(v)
        return v


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` -> (host, port)."""
    m = re.fullmatch(r"(?:\[([0-9a-fA-F:.]+)\]|([^:\[\]]*)):(\d{1,5})", value.strip())
    if not m or int(m[3]) > 65535:
        raise ValueError(f"expected host:port, got {value!r}")
    host = m[1] or m[2] or "0.0.0.0"
    return host, int(m[3])


class Logging(Strict):
    """Log format and level."""

    format: Literal["auto", "json", "console"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"


# -- notifications ---------------------------------------------------------------------------

FIELD_NAMES = ("status", "resale_status")
STATUS_NAMES = ("TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE", "UNKNOWN")
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


def check_webhook_secret(value: Secret) -> Secret:
    """`whsec_` + base64 of at least 24 bytes (the Standard Webhooks form)."""
    import base64
    import binascii

    text = value.reveal()
    if not text.startswith("whsec_"):
        raise ValueError("must start with whsec_ (whsec_ + base64 of at least 24 random bytes)")
    try:
        raw = base64.b64decode(text[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not valid base64") from None
    if len(raw) < 24:
        raise ValueError(f"too short: {len(raw)} bytes after whsec_, at least 24 are needed")
    return value


class Filter(Strict):
    """Which transitions a subscription (or an action) wants; empty lists mean "any"."""

    watch_sets: list[str] = []
    event_ids: list[EventId] = []
    fields: list[Literal["status", "resale_status"]] = []
    from_: list[Literal[STATUS_NAMES]] = Field([], alias="from")  # type: ignore[valid-type]
    to: list[Literal[STATUS_NAMES]] = []  # type: ignore[valid-type]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Webhook(Strict):
    """A webhook subscription defined in the config file."""

    name: Name
    url: str
    secret: Secret | None = None
    secrets: list[Secret] = []
    filter: Filter = Filter()
    format: Literal["standard", "cloudevents"] = "standard"
    max_in_flight: int = Field(64, ge=1, le=64)
    enabled: bool = True

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from monitor.notify.ssrf import check_url_syntax

        check_url_syntax(v)
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: Secret | None) -> Secret | None:
        return v if v is None else check_webhook_secret(v)

    @field_validator("secrets")
    @classmethod
    def _secrets(cls, v: list[Secret]) -> list[Secret]:
        return [check_webhook_secret(s) for s in v]

    @model_validator(mode="after")
    def _one_secret(self) -> Webhook:
        if self.secret is None and not self.secrets:
            raise ValueError("give secret (or secret_file), or secrets: a list during rotation")
        if self.secret is not None and self.secrets:
            raise ValueError("give either secret or secrets, not both")
        return self

    def all_secrets(self) -> list[Secret]:
        """Every current secret (each one signs during a rotation)."""
        return [self.secret] if self.secret is not None else list(self.secrets)


class Alertmanager(Strict):
    """Keep an alert firing on Alertmanager while an event's status is in `alert_on`."""

    url: HttpUrl
    alert_on: list[Literal[STATUS_NAMES]] = ["FEW_TICKETS_LEFT"]  # type: ignore[valid-type]
    labels: dict[str, str] = {}
    alertname: str = "TicketAvailability"
    resend_seconds: float = Field(60.0, ge=1)
    timeout_seconds: float = Field(10.0, gt=0)


class Notifications(Strict):
    """Webhooks, their retry schedule and safety net, and Alertmanager."""

    webhooks: list[Webhook] = []
    alertmanager: Alertmanager | None = None
    retry_schedule: list[float] = list(DEFAULT_RETRY_SCHEDULE)
    timeout_seconds: float = Field(15.0, gt=0)
    deny_private_networks: bool = False

    @field_validator("retry_schedule")
    @classmethod
    def _schedule(cls, v: list[float]) -> list[float]:
        if not v:
            raise ValueError("needs at least one entry (the delay before the first attempt)")
        if any(x < 0 for x in v):
            raise ValueError("delays must be >= 0 seconds")
        return v


# -- marketplace actions -----------------------------------------------------------------------


class Marketplace(Strict):
    """A broker marketplace's inventory API (seeds 002 and 003)."""

    base_url: HttpUrl
    api_token: Secret
    rate_limit: RateLimit = RateLimit(requests=10, per_seconds=1)
    timeout_seconds: float = Field(15.0, gt=0)


class When(Strict):
    """An action's trigger: like a webhook filter, with `field` as one name or a list."""

    watch_sets: list[str] = []
    event_ids: list[EventId] = []
    field: list[Literal["status", "resale_status"]] = []
    from_: list[Literal[STATUS_NAMES]] = Field([], alias="from")  # type: ignore[valid-type]
    to: list[Literal[STATUS_NAMES]] = []  # type: ignore[valid-type]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("field", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class Action(Strict):
    """A rule: when a transition matches, apply `update` to the listings linked to its event."""

    name: Name
    when: When = When()
    listings: dict[EventId, list[int]] = {}
    listings_file: str | None = None
    update: dict[str, Any]
    dry_run: bool = False

    @field_validator("listings")
    @classmethod
    def _ids(cls, v: dict[str, list[int]]) -> dict[str, list[int]]:
        for eid, ids in v.items():
            check_event_id(eid)
            if any(i <= 0 for i in ids):
                raise ValueError(f"listing IDs of {eid} must be positive integers")
        return v


class Partner(Strict):
    """The Partner API (seed 004): event details, for venue time zones and event dates."""

    base_url: HttpUrl = "https://app.ticketmaster.com/partners/v1"
    api_key: Secret
    client_secret: Secret
    rate_limit: RateLimit = RateLimit(requests=3600, per_seconds=3600)
    timeout_seconds: float = Field(10.0, gt=0)
    refresh_hours: float = Field(24.0, gt=0)
    not_found_retry_hours: float = Field(6.0, gt=0)
    retire_past_events: bool = True


class Cluster(Strict):
    """Several replicas on PostgreSQL (used with `state.backend: postgres`)."""

    shards: int = Field(64, ge=1, le=4096)
    lease_seconds: float = Field(15.0, ge=2)
    replica_id: str | None = None
    claim_seconds: float = Field(60.0, gt=0)


class Config(Strict):
    """The whole config file."""

    upstream: Upstream
    maintenance: MaintenanceWindow = MaintenanceWindow()
    venues: list[Venue] = []
    watch_sets: list[WatchSet] = []
    state: State = State()
    server: Server = Server()
    log: Logging = Logging()
    notifications: Notifications = Notifications()
    marketplace: Marketplace | None = None
    actions: list[Action] = []
    partner: Partner | None = None
    cluster: Cluster = Cluster()

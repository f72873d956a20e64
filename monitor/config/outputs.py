"""Config models of what the daemon sends out: webhooks, Alertmanager, marketplace actions."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from monitor.config import limits as L
from monitor.config.base import KeyedApi, RateLimit, Strict
from monitor.config.fields import (
    EventId,
    FilePath,
    Float,
    FreeString,
    HttpUrl,
    Int,
    LabelKey,
    LabelValue,
    ListingId,
    Name,
)
from monitor.secrets import Secret

# -- notifications ----------------------------------------------------------------------

FIELD_NAMES = ("status", "resale_status")
STATUS_NAMES = ("TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE", "UNKNOWN")
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
_FILTER = L.FILTER_ENTRIES_MAX


def check_webhook_secret(value: Secret) -> Secret:
    """`whsec_` + base64 of at least 24 bytes (the Standard Webhooks form)."""
    import base64
    import binascii

    text = value.reveal()
    if not text.startswith("whsec_"):
        raise ValueError("must start with whsec_ (whsec_ + base64 of at least 24 random bytes)")
    if len(text) > 1024:
        raise ValueError("too long: at most 1,024 characters")
    try:
        raw = base64.b64decode(text[len("whsec_") :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not valid base64") from None
    if len(raw) < 24:
        raise ValueError(f"too short: {len(raw)} bytes after whsec_, at least 24 are needed")
    return value


class Filter(Strict):
    """Which transitions a subscription (or an action) wants; empty lists mean "any"."""

    watch_sets: list[Name] = Field([], max_length=_FILTER)
    event_ids: list[EventId] = Field([], max_length=_FILTER)
    fields: list[Literal["status", "resale_status"]] = Field([], max_length=_FILTER)
    from_: list[Literal[STATUS_NAMES]] = Field([], alias="from", max_length=_FILTER)  # type: ignore[valid-type]
    to: list[Literal[STATUS_NAMES]] = Field([], max_length=_FILTER)  # type: ignore[valid-type]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Webhook(Strict):
    """A webhook subscription defined in the config file."""

    name: Name
    url: str = Field(max_length=L.URL_MAX)
    secret: Secret | None = None
    secrets: list[Secret] = Field([], max_length=L.SECRETS_MAX)
    filter: Filter = Filter()
    format: Literal["standard", "cloudevents"] = "standard"
    max_in_flight: Int = Field(64, ge=1, le=64)
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
    alert_on: list[Literal[STATUS_NAMES]] = Field(["FEW_TICKETS_LEFT"], max_length=_FILTER)  # type: ignore[valid-type]
    labels: dict[LabelKey, LabelValue] = Field({}, max_length=L.LABELS_MAX)
    alertname: FreeString = "TicketAvailability"
    resend_seconds: Float = Field(60.0, ge=L.RESEND_MIN, le=L.RESEND_MAX)
    timeout_seconds: Float = Field(10.0, gt=0, le=L.TIMEOUT_MAX)


RetryDelay = Annotated[Float, Field(ge=0, le=L.RETRY_DELAY_MAX)]


class Notifications(Strict):
    """Webhooks, their retry schedule and safety net, and Alertmanager."""

    webhooks: list[Webhook] = Field([], max_length=L.WEBHOOKS_MAX)
    alertmanager: Alertmanager | None = None
    retry_schedule: list[RetryDelay] = Field(
        list(DEFAULT_RETRY_SCHEDULE), min_length=1, max_length=L.RETRY_ENTRIES_MAX
    )
    timeout_seconds: Float = Field(15.0, gt=0, le=L.TIMEOUT_MAX)
    deny_private_networks: bool = False


# -- marketplace actions -----------------------------------------------------------------------


class Marketplace(KeyedApi):
    """A broker marketplace's inventory API."""

    base_url: HttpUrl
    api_token: Secret
    rate_limit: RateLimit = RateLimit(requests=10, per_seconds=1)
    timeout_seconds: Float = Field(15.0, gt=0, le=L.TIMEOUT_MAX)
    max_answer_bytes: Int = Field(8 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    max_retry_after_seconds: Float = Field(300.0, ge=1, le=3600)


class When(Strict):
    """An action's trigger: like a webhook filter, with `field` as one name or a list."""

    watch_sets: list[Name] = Field([], max_length=_FILTER)
    event_ids: list[EventId] = Field([], max_length=_FILTER)
    field: list[Literal["status", "resale_status"]] = Field([], max_length=_FILTER)
    from_: list[Literal[STATUS_NAMES]] = Field([], alias="from", max_length=_FILTER)  # type: ignore[valid-type]
    to: list[Literal[STATUS_NAMES]] = Field([], max_length=_FILTER)  # type: ignore[valid-type]

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("field", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


def check_update_size(update: dict[str, Any]) -> dict[str, Any]:
    """At most 64 attributes and 16 KB once serialised as JSON."""
    if len(update) > L.UPDATE_KEYS_MAX:
        raise ValueError(f"at most {L.UPDATE_KEYS_MAX} attributes, got {len(update)}")
    try:
        size = len(json.dumps(update, default=str, allow_nan=False).encode())
    except (ValueError, TypeError, RecursionError):
        raise ValueError("cannot be sent as JSON (NaN, infinity, or nested too deep)") from None
    if size > L.UPDATE_BYTES_MAX:
        raise ValueError(f"at most {L.UPDATE_BYTES_MAX:,} bytes as JSON, got {size:,}")
    return update


ListingIds = Annotated[list[ListingId], Field(max_length=L.LISTINGS_PER_EVENT_MAX)]


class Action(Strict):
    """A rule: when a transition matches, apply `update` to the listings linked to its event."""

    name: Name
    when: When = When()
    listings: dict[EventId, ListingIds] = Field({}, max_length=L.LISTING_EVENTS_MAX)
    listings_file: FilePath | None = None
    update: dict[str, Any]
    dry_run: bool = False

    @field_validator("update")
    @classmethod
    def _update(cls, v: dict[str, Any]) -> dict[str, Any]:
        return check_update_size(v)

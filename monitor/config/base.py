"""The base of every config model, and errors placed at one field."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from monitor.config import limits as L
from monitor.config.fields import Float, HttpUrl, Int
from monitor.config.urls import is_loopback_host


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, models are immutable, no NaN or
    infinity, and a validation error's text never shows the value given (it may be a secret)."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        arbitrary_types_allowed=True,
        allow_inf_nan=False,
        hide_input_in_errors=True,
    )


def field_error(name: str, message: str, value: Any = None) -> ValidationError:
    """A validation error at one field of the model being validated (for model validators
    whose finding belongs to a field rather than to the section)."""
    detail = InitErrorDetails(
        type=PydanticCustomError("value_error", message),
        loc=(name,),
        input=value,
    )
    return ValidationError.from_exception_data("config", [detail])


def custom_error(
    kind: str, message: str, loc: tuple[str | int, ...], value: Any
) -> InitErrorDetails:
    """One error of a ValidationError built by hand (`kind` as pydantic names it)."""
    return InitErrorDetails(type=PydanticCustomError(kind, message), loc=loc, input=value)


class KeyedApi(Strict):
    """A section that sends a key to `base_url`: plain http only to loopback, or when
    `allow_insecure_http` says so."""

    base_url: HttpUrl
    allow_insecure_http: bool = False

    def sends_key_in_clear(self) -> bool:
        """Whether `base_url` is plain http to a host other than this machine."""
        url = self.base_url
        return url.startswith("http://") and not is_loopback_host(urlsplit(url).hostname or "")

    @model_validator(mode="after")
    def _https(self) -> KeyedApi:
        if self.sends_key_in_clear() and not self.allow_insecure_http:
            raise field_error(
                "base_url",
                "plain http:// would send the key in the clear: use https://, or set "
                "allow_insecure_http: true in this section",
                self.base_url,
            )
        return self


class RateLimit(Strict):
    """At most `requests` requests in any `per_seconds` window."""

    requests: Int = Field(5, ge=L.REQUESTS_MIN, le=L.REQUESTS_MAX)
    per_seconds: Float = Field(1.0, ge=L.PER_SECONDS_MIN, le=L.PER_SECONDS_MAX)
    margin: Float = Field(0.01, ge=0, le=L.MARGIN_MAX)

"""What can go wrong with an upstream request, classified for the retry policy.

Messages never contain the request URL (it carries the API key).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.core.backoff import ServerWait


@dataclass(frozen=True, slots=True)
class RateHeaders:
    """Ticketmaster's quota headers (`Rate-Limit*`), when an answer carried them."""

    limit: int | None
    available: int | None
    over: int | None
    reset_epoch: float | None


class UpstreamError(Exception):
    """A request that did not produce usable observations.

    `outcome` is the metrics label; `retry` says whether trying again may help; `retry_after`
    is how long the upstream asked us to wait, when it said.
    """

    outcome = "error"
    retry = True
    wait: ServerWait | None = None  # what the upstream asked for, and what we will wait

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        rate: RateHeaders | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.rate = rate


class TransientError(UpstreamError):
    """Timeouts, connection errors, 5xx, malformed answers: retried with backoff."""


class TimeoutFailure(TransientError):
    """No answer within the timeout."""

    outcome = "timeout"


class ConnectionFailure(TransientError):
    """Could not connect, or the connection broke."""

    outcome = "connection_error"


class ServerError(TransientError):
    """A 5xx answer."""

    outcome = "server_error"


class MalformedAnswer(TransientError):
    """A 2xx whose body is not a JSON array of objects."""

    outcome = "malformed"


class AnswerTooLarge(TransientError):
    """A 2xx whose body, as declared or decoded, passed the size cap."""

    outcome = "too_large"


class TooManyObjects(MalformedAnswer):
    """A 2xx holding far more objects or arrays than events were asked for (or nested deep)."""

    outcome = "too_many_objects"


class Redirected(UpstreamError):
    """A 3xx: never followed (the request URL carries the API key)."""

    outcome = "redirect"
    retry = False


class RequestTooLarge(UpstreamError):
    """414 or 413: the request (its URL, or its body) is too large for the upstream's gateway;
    the dispatcher splits the batch and remembers a size that works."""

    outcome = "request_too_large"
    retry = False


class RateLimited(UpstreamError):
    """429: wait as told (Retry-After or Rate-Limit-Reset), then retry."""

    outcome = "rate_limited"


class AuthFailed(UpstreamError):
    """401/403: the key is refused. Not retried in a loop."""

    outcome = "auth_failed"
    retry = False


class BadRequest(UpstreamError):
    """400: something in the batch is refused; the dispatcher bisects to find it."""

    outcome = "bad_request"
    retry = False


class ClientError(UpstreamError):
    """Any other 4xx: retrying the same request will not help."""

    outcome = "client_error"
    retry = False

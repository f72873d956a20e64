"""The Partner API client: OAuth client-credentials tokens and event details (name, venue, venue
time zone, dates), so the daemon can learn each event's time zone by itself.

Seed 004: `POST {base}/oauth/accesstoken?apikey=KEY` with `grant_type=client_credentials` and
`Authorization: Basic base64(KEY:SECRET)` gives a token good for one hour with no refresh;
`GET {base}/event/{id}?apikey=KEY` with `Authorization: Bearer TOKEN` gives the details. `base` is
`https://app.ticketmaster.com/partners/v1` (production) or `.../partners-sandbox/v1` (staging).

Messages of the errors raised here never contain the URL, the key, the secret or a token.
"""

from __future__ import annotations

import asyncio
import base64
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiohttp
import orjson
from yarl import URL

from monitor.clock import Clock, SystemClock
from monitor.core.backoff import MAX_RETRY_AFTER, retry_after_seconds
from monitor.logs import get_logger, redact
from monitor.poller.budget import RateBudget
from monitor.secrets import Secret
from monitor.upstream.body import AnswerTooLarge, read_capped

DEFAULT_MAX_ANSWER_BYTES: Final = 1024 * 1024
"""An event-details document is a few KB; nothing past this is read."""

PRODUCTION_URL: Final = "https://app.ticketmaster.com/partners/v1"
SANDBOX_URL: Final = "https://app.ticketmaster.com/partners-sandbox/v1"
OAUTH_PATH: Final = "/oauth/accesstoken"
EVENT_PATH: Final = "/event/"
DEFAULT_RATE: Final = (3600, 3600.0)
"""The Partner API's own budget when none is given: 3600 requests per hour."""
DEFAULT_TOKEN_SECONDS: Final = 3600.0
"""A token's lifetime when an answer does not say (seed 004: one hour)."""

log = get_logger("monitor.partner")

RequestObserver = Callable[[str, str, float], None]
"""Called after every HTTP request with (endpoint "token" or "event", outcome, seconds)."""


# -- errors -----------------------------------------------------------------------------------


class PartnerError(Exception):
    """A Partner API request that gave no usable answer.

    `outcome` is a metrics label; `retry` says whether trying again later may help; `status`
    is the HTTP status when there was one; `retry_after` is how long the upstream asked us to
    wait, when it said. Messages are redacted: no URL, key, secret or token.
    """

    outcome = "error"
    retry = False

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(redact(message))
        self.status = status
        self.retry_after = retry_after


class PartnerAuthError(PartnerError):
    """The credentials were refused: the token endpoint answered 401/403, or event details
    answered 401 again with a brand-new token, or 403."""

    outcome = "auth_failed"


class EventNotFound(PartnerError):
    """404: the Partner API does not know this event ID."""

    outcome = "not_found"

    def __init__(self, event_id: str) -> None:
        super().__init__(f"partner event {event_id!r} not found", status=404)
        self.event_id = event_id


class PartnerRequestError(PartnerError):
    """Any other 4xx: asking again the same way will not help."""

    outcome = "client_error"


class PartnerUnavailable(PartnerError):
    """Transient: 429, 5xx, timeouts, connection errors, malformed answers. Try again later
    (after `retry_after` when set). `outcome` says which: `rate_limited`, `server_error`,
    `timeout`, `connection_error` or `malformed`."""

    retry = True

    def __init__(
        self,
        message: str,
        *,
        outcome: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.outcome = outcome


# -- event details ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventDetails:
    """What the Partner API says about one event; anything it did not say (usably) is None.

    `event_id` is the partner event ID that was asked for. `time_zone` is a valid IANA name.
    `event_date` and `offsale` are epoch seconds.
    """

    event_id: str
    name: str | None = None
    venue_id: str | None = None
    venue_name: str | None = None
    time_zone: str | None = None
    event_date: float | None = None
    offsale: float | None = None
    api_transactable: bool | None = None


_MAX_ZONE_LENGTH: Final = 64


def valid_time_zone(value: Any) -> str | None:
    """`value` if it names a time zone zoneinfo knows, else None."""
    if not isinstance(value, str):
        return None
    name = value.strip()
    if not name or len(name) > _MAX_ZONE_LENGTH:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # OSError: some names are directories or unreadable files under the zone database.
        return None
    return name


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return None


def _identifier(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return _text(value)


def _instant(value: Any) -> float | None:
    """Epoch seconds from `{"format": "datetime", "value": "2015-08-21T02:00:00Z"}`, a bare
    ISO 8601 string, or epoch seconds/milliseconds. A time without an offset is ambiguous
    (venue-local or UTC?) and gives None rather than a guess."""
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = float(value)
        if not math.isfinite(seconds) or seconds <= 0:
            return None
        return seconds / 1000.0 if seconds > 1e11 else seconds
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


def _flag(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def parse_event_details(data: Any, event_id: str) -> EventDetails:
    """Read an event-details document (seed 004's model) into EventDetails (pure).

    Lenient inside the event: missing or ill-typed pieces become None and an unknown time zone
    is None. The document must be a JSON object holding an `event` object, else
    PartnerUnavailable (outcome `malformed`): such an answer says nothing about the event.
    """
    if not isinstance(data, Mapping):
        raise PartnerUnavailable(
            f"event details are a JSON {type(data).__name__}, not an object", outcome="malformed"
        )
    event = data.get("event")
    if not isinstance(event, Mapping):
        raise PartnerUnavailable("event details lack an 'event' object", outcome="malformed")
    venue = event.get("venue")
    if not isinstance(venue, Mapping):
        venue = {}
    location = venue.get("location")
    if not isinstance(location, Mapping):
        location = {}
    transactable = _flag(data.get("api_transactable"))
    if transactable is None:
        transactable = _flag(event.get("api_transactable"))
    return EventDetails(
        event_id=event_id,
        name=_text(event.get("name")),
        venue_id=_identifier(venue.get("id")),
        venue_name=_text(venue.get("name")),
        time_zone=valid_time_zone(location.get("time_zone")),
        event_date=_instant(event.get("eventdate")),
        offsale=_instant(event.get("offsale")),
        api_transactable=transactable,
    )


# -- tokens -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class _Token:
    value: Secret
    renew_at: float
    """Monotonic time after which the token is not used any more."""


def _seconds_field(value: Any) -> float | None:
    """`expires_in` arrives as a string ("3599"); numbers are taken too."""
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


# -- lookups that miss ------------------------------------------------------------------------


class NotFoundWatch:
    """Whether most recent event lookups answer 404 (pure: fed one outcome at a time).

    The Partner API has its own 16-character event IDs; asked about Discovery IDs, it answers
    404 for nearly all of them. Over the last `window` lookups (at least `least`), a share of
    404s above `most` is worth saying once: `record` answers True then, and again only after
    the share fell below half of `most`.
    """

    def __init__(self, window: int = 100, least: int = 20, most: float = 0.5) -> None:
        self._recent: deque[bool] = deque(maxlen=window)
        self._missed = 0
        self._least = least
        self._most = most
        self._said = False

    @property
    def share(self) -> float:
        """The share of 404s among the recent lookups (0 before any)."""
        return self._missed / len(self._recent) if self._recent else 0.0

    def record(self, not_found: bool) -> bool:
        """Count one lookup; True when the share of 404s just became worth saying."""
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0]:
            self._missed -= 1
        recent.append(not_found)
        self._missed += not_found
        if len(recent) < self._least:
            return False
        if self._said:
            self._said = self.share >= self._most / 2
            return False
        self._said = self.share > self._most
        return self._said


# -- the client -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Answer:
    status: int
    headers: Mapping[str, str]
    body: bytes
    sent: float
    """Monotonic time (of the client's clock) at which the request was sent."""
    seconds: float
    """How long the request took (real time)."""


class PartnerClient:
    """Event details from the Partner API, with the OAuth token handled inside.

    One token is shared by all callers: it is fetched on first use, renewed
    `renew_margin_seconds` before it expires (counted on the monotonic clock from when the
    token request was sent, whatever the answer's `issued_at` says; at most half the lifetime)
    and after a 401 on event details, which is then retried once with the new token.
    Concurrent callers that need a token share one token request. Every HTTP request,
    token requests included, first takes a slot of `budget` (default 3600 per hour).

    No other retries: transient failures raise PartnerUnavailable and the caller decides
    when to try again.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: Secret,
        client_secret: Secret,
        clock: Clock | None = None,
        timeout_seconds: float = 10.0,
        budget: RateBudget | None = None,
        renew_margin_seconds: float = 60.0,
        on_request: RequestObserver | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_retry_after: float = MAX_RETRY_AFTER,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._key = api_key
        self._secret = client_secret
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.budget = budget if budget is not None else RateBudget(*DEFAULT_RATE)
        self._margin = max(0.0, renew_margin_seconds)
        self._on_request = on_request
        self._token: _Token | None = None
        self._refresh: asyncio.Task[_Token] | None = None
        self._max_bytes = max_answer_bytes
        self._max_retry_after = max_retry_after
        self.not_found = NotFoundWatch()

    # -- public ------------------------------------------------------------------------------

    async def get_event(self, partner_event_id: str) -> EventDetails:
        """The details of one event.

        Raises EventNotFound (404), PartnerAuthError (credentials refused), PartnerUnavailable
        (transient: 429, 5xx, timeout, connection error, malformed answer) or
        PartnerRequestError (another 4xx); all are PartnerError.
        """
        if not partner_event_id:
            raise ValueError("partner_event_id must not be empty")
        token = await self._get_token(stale=None)
        answer = await self._details(partner_event_id, token)
        if answer.status == 401:
            # The token may have been revoked or expired early: one new token, one retry.
            log.info("partner token refused: renewing it")
            token = await self._get_token(stale=token)
            answer = await self._details(partner_event_id, token)
            if answer.status == 401:
                raise PartnerAuthError(
                    "event details refused with 401 even with a new token", status=401
                )
        return self._classify_details(partner_event_id, answer)

    async def close(self) -> None:
        """Stop a token request still running after all its callers gave up."""
        task, self._refresh = self._refresh, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task])

    def invalidate_token(self) -> None:
        """Forget the current token: the next call fetches a new one."""
        self._token = None

    # -- tokens ------------------------------------------------------------------------------

    async def _get_token(self, *, stale: _Token | None) -> _Token:
        """A usable token: the current one unless it is `stale` or due for renewal; otherwise
        the result of the one token request in flight, started here if there is none."""
        token = self._token
        if token is not None and token is not stale and self._clock.monotonic() < token.renew_at:
            return token
        task = self._refresh
        if task is None:
            task = asyncio.create_task(self._fetch_token(), name="partner-token")
            self._refresh = task
            task.add_done_callback(self._refresh_done)
        # shield: a caller that is cancelled must not cancel the request others wait for.
        return await asyncio.shield(task)

    def _refresh_done(self, task: asyncio.Task[_Token]) -> None:
        if self._refresh is task:
            self._refresh = None
        if not task.cancelled():
            task.exception()  # retrieved, so a failure nobody awaited is not reported as lost

    async def _fetch_token(self) -> _Token:
        key = self._key.reveal()
        basic = base64.b64encode(f"{key}:{self._secret.reveal()}".encode()).decode()
        answer = await self._request(
            "token",
            "POST",
            URL(f"{self._base}{OAUTH_PATH}?apikey={quote(key, safe='')}", encoded=True),
            headers={
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            data=b"grant_type=client_credentials",
        )
        status = answer.status
        if status in (401, 403):
            self._observe("token", "auth_failed", answer.seconds)
            raise PartnerAuthError(
                f"token request refused with {status}: check partner api_key and client_secret",
                status=status,
            )
        if not 200 <= status < 300:
            raise self._failure("token", answer)
        try:
            data = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            data = None
        value = data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(value, str) or not value.strip():
            self._observe("token", "malformed", answer.seconds)
            raise PartnerUnavailable(
                "token answer holds no access_token", outcome="malformed", status=status
            )
        assert isinstance(data, dict)
        self._observe("token", "ok", answer.seconds)
        lifetime = _seconds_field(data.get("expires_in"))
        if lifetime is None:
            lifetime = DEFAULT_TOKEN_SECONDS
        # A margin as large as the lifetime would mean a new token for every request.
        margin = min(self._margin, lifetime / 2)
        token = _Token(Secret(value.strip()), answer.sent + lifetime - margin)
        self._token = token
        log.info("partner token obtained", expires_in=lifetime, renew_in=lifetime - margin)
        return token

    # -- requests ----------------------------------------------------------------------------

    async def _details(self, event_id: str, token: _Token) -> _Answer:
        key = quote(self._key.reveal(), safe="")
        url = URL(f"{self._base}{EVENT_PATH}{quote(event_id, safe='')}?apikey={key}", encoded=True)
        headers = {
            "Authorization": f"Bearer {token.value.reveal()}",
            "Accept": "application/json",
        }
        answer = await self._request("event", "GET", url, headers=headers)
        if answer.status == 401:
            self._observe("event", "auth_failed", answer.seconds)
        return answer

    async def _request(
        self,
        endpoint: str,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str],
        data: bytes | None = None,
    ) -> _Answer:
        """One HTTP request within the budget. Timeouts and connection errors raise
        PartnerUnavailable."""
        slot = await self.budget.acquire()
        sent = self._clock.monotonic()
        started = time.monotonic()
        try:
            async with self._session.request(
                method,
                url,
                headers=headers,
                data=data,
                timeout=self._timeout,
                allow_redirects=False,
                # The session's budget trace hook (if installed) marks the slot when the
                # headers leave; otherwise `finally` does when the attempt ends.
                trace_request_ctx={"slot": slot},
            ) as resp:
                status, resp_headers = resp.status, resp.headers
                body = await read_capped(resp, self._max_bytes)
        except AnswerTooLarge as exc:
            self._observe(endpoint, "too_large", time.monotonic() - started)
            raise PartnerUnavailable(
                f"partner {endpoint} answer refused: {exc}", outcome="too_large", status=status
            ) from None
        except TimeoutError:
            self._observe(endpoint, "timeout", time.monotonic() - started)
            raise PartnerUnavailable(
                f"partner {endpoint} request: no answer within the timeout", outcome="timeout"
            ) from None
        except aiohttp.ClientError as exc:
            self._observe(endpoint, "connection_error", time.monotonic() - started)
            # aiohttp's messages may carry the URL, and with it the key: masked by PartnerError.
            raise PartnerUnavailable(
                f"partner {endpoint} request failed: {type(exc).__name__}: {exc}",
                outcome="connection_error",
            ) from None
        finally:
            slot.sent()
        return _Answer(status, resp_headers, body, sent, time.monotonic() - started)

    def _observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        if self._on_request is not None:
            self._on_request(endpoint, outcome, seconds)

    def _failure(self, endpoint: str, answer: _Answer) -> PartnerError:
        """The error for a non-2xx answer other than 401 (and 404 for details)."""
        status = answer.status
        snippet = redact(answer.body[:200].decode("utf-8", "replace")).replace("\n", " ")
        wait = retry_after_seconds(
            answer.headers, self._clock.wall(), max_retry_after=self._max_retry_after
        )
        err: PartnerError
        if status == 429:
            err = PartnerUnavailable(
                f"partner {endpoint} request rate limited (429): {snippet}",
                outcome="rate_limited",
                status=status,
                retry_after=wait,
            )
        elif status >= 500:
            err = PartnerUnavailable(
                f"partner {endpoint} request failed with {status}: {snippet}",
                outcome="server_error",
                status=status,
                retry_after=wait,
            )
        elif status == 403:
            err = PartnerAuthError(f"partner {endpoint} request forbidden (403)", status=status)
        else:
            err = PartnerRequestError(
                f"partner {endpoint} request refused with {status}: {snippet}", status=status
            )
        self._observe(endpoint, err.outcome, answer.seconds)
        return err

    def _classify_details(self, event_id: str, answer: _Answer) -> EventDetails:
        status = answer.status
        if self.not_found.record(status == 404):
            log.warning(
                "most Partner API event lookups answer 404: the Partner API has its own "
                "16-character event IDs; give each event its partner_event_id",
                not_found_share=round(self.not_found.share, 2),
            )
        if status == 404:
            self._observe("event", "not_found", answer.seconds)
            raise EventNotFound(event_id)
        if not 200 <= status < 300:
            raise self._failure("event", answer)
        try:
            data = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            self._observe("event", "malformed", answer.seconds)
            raise PartnerUnavailable(
                "event details are not valid JSON", outcome="malformed", status=status
            ) from None
        try:
            details = parse_event_details(data, event_id)
        except PartnerUnavailable as exc:
            exc.status = status
            self._observe("event", "malformed", answer.seconds)
            raise
        self._observe("event", "ok", answer.seconds)
        return details

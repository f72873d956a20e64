"""The simulated Partner API: OAuth client-credentials tokens and event details with venues in
time zones around the world, behind the same fault switches as the inventory endpoint.

    POST {prefix}/oauth/accesstoken?apikey=KEY   (grant_type=client_credentials, Basic auth)
    GET  {prefix}/event/{event_id}?apikey=KEY    (Authorization: Bearer TOKEN)

Faults with `api: "partner"` hit both endpoints, `"partner.oauth"` only token requests and
`"partner.event"` only event details. Every request is logged with `api="partner"` and its path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import math
import re
import secrets
import string
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from urllib.parse import parse_qs
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from monitor.clock import Clock
from monitor.simulator import faults as fk
from monitor.simulator.faults import FaultPlan
from monitor.simulator.inventory import (
    _DEFAULT_SPIKE,
    _HTML_PAGE,
    _HTML_TYPE,
    _JSON,
    _QUOTA_FAULT,
    NO_ANSWER,
    RequestLog,
    RequestRecord,
    SpikeArrest,
    _error_body,
    _reason,
    _seconds,
)
from monitor.simulator.world import World

API: Final = "partner"
OAUTH_API: Final = "partner.oauth"
EVENT_API: Final = "partner.event"
PREFIX: Final = "/partners/v1"
SANDBOX_PREFIX: Final = "/partners-sandbox/v1"
OAUTH_PATH: Final = "/oauth/accesstoken"
EVENT_PATH: Final = "/event/"
DEFAULT_TOKEN_SECONDS: Final = 3599.0
PARTNER_ID_RE: Final = re.compile(r"[0-9A-F]{16}")
"""The Partner API's own event IDs: 16 hexadecimal characters, e.g. 3F004EC9D1EBBC76."""


@dataclass(frozen=True, slots=True)
class Venue:
    """A simulated venue: its ID as the Partner API gives it (a number), name, place and zone."""

    id: int
    name: str
    city: str
    country: str
    time_zone: str


VENUES: Final[tuple[Venue, ...]] = (
    # One zone without daylight saving per whole UTC offset from -11 to +12, so that at any
    # moment one of these venues is between 02:00 and 03:00 local time.
    Venue(300101, "Pago Pago Park", "Pago Pago", "AS", "Pacific/Pago_Pago"),
    Venue(300102, "Aloha Stadium", "Honolulu", "US", "Pacific/Honolulu"),
    Venue(300103, "Rikitea Hall", "Rikitea", "PF", "Pacific/Gambier"),
    Venue(300104, "Adamstown Pavilion", "Adamstown", "PN", "Pacific/Pitcairn"),
    Venue(300105, "Desert Dome", "Phoenix", "US", "America/Phoenix"),
    Venue(300106, "Prairie Arena", "Regina", "CA", "America/Regina"),
    Venue(300107, "Coliseo Bogota", "Bogota", "CO", "America/Bogota"),
    Venue(300108, "Teatro La Paz", "La Paz", "BO", "America/La_Paz"),
    Venue(300109, "Arena Sao Paulo", "Sao Paulo", "BR", "America/Sao_Paulo"),
    Venue(300110, "Grytviken Hut", "Grytviken", "GS", "Atlantic/South_Georgia"),
    Venue(300111, "Praia Stage", "Praia", "CV", "Atlantic/Cape_Verde"),
    Venue(300112, "Palais Abidjan", "Abidjan", "CI", "Africa/Abidjan"),
    Venue(300113, "Lagos Hall", "Lagos", "NG", "Africa/Lagos"),
    Venue(300114, "Johannesburg Bowl", "Johannesburg", "ZA", "Africa/Johannesburg"),
    Venue(300115, "Nairobi Grounds", "Nairobi", "KE", "Africa/Nairobi"),
    Venue(300116, "Dubai Opera", "Dubai", "AE", "Asia/Dubai"),
    Venue(300117, "Karachi Club", "Karachi", "PK", "Asia/Karachi"),
    Venue(300118, "Dhaka Centre", "Dhaka", "BD", "Asia/Dhaka"),
    Venue(300119, "Bangkok Hall", "Bangkok", "TH", "Asia/Bangkok"),
    Venue(300120, "Singapore Indoor", "Singapore", "SG", "Asia/Singapore"),
    Venue(300121, "Tokyo Dome", "Tokyo", "JP", "Asia/Tokyo"),
    Venue(300122, "Brisbane Oval", "Brisbane", "AU", "Australia/Brisbane"),
    Venue(300123, "Noumea Arena", "Noumea", "NC", "Pacific/Noumea"),
    Venue(300124, "Suva Stadium", "Suva", "FJ", "Pacific/Fiji"),
    # Zones with daylight saving, north and south.
    Venue(516191, "CenturyLink Field", "Seattle", "US", "America/Los_Angeles"),
    Venue(300126, "Madison Square Garden", "New York", "US", "America/New_York"),
    Venue(300127, "United Center", "Chicago", "US", "America/Chicago"),
    Venue(300128, "The O2", "London", "GB", "Europe/London"),
    Venue(300129, "Uber Arena", "Berlin", "DE", "Europe/Berlin"),
    Venue(300130, "Sydney Opera House", "Sydney", "AU", "Australia/Sydney"),
)
"""Venues an event is placed in (by a stable hash of seed and event ID)."""

_ACTS: Final = (
    "The Simulated Orchestra",
    "Deterministic Beats",
    "The Seeded Strings",
    "Jitter & The Backoffs",
    "Spike Arrest",
    "The Retry-Afters",
    "Full Jitter Quartet",
    "Null Island Choir",
)

_BUCKET_DAYS: Final = 30
_TOKEN_ALPHABET: Final = string.ascii_letters + string.digits
_TOKEN_LENGTH: Final = 28

_INVALID_KEY: Final = orjson.dumps(
    {"fault": {"faultstring": "Invalid ApiKey", "detail": {"errorcode": "oauth.v2.InvalidApiKey"}}}
)
_INVALID_CLIENT: Final = orjson.dumps(
    {"ErrorCode": "invalid_client", "Error": "Client credentials are invalid"}
)
_NO_TOKEN: Final = orjson.dumps(
    {
        "fault": {
            "faultstring": "Invalid access token",
            "detail": {"errorcode": "oauth.v2.InvalidAccessToken"},
        }
    }
)
_BAD_TOKEN: Final = orjson.dumps(
    {
        "fault": {
            "faultstring": "Invalid Access Token",
            "detail": {"errorcode": "keymanagement.service.invalid_access_token"},
        }
    }
)
_EXPIRED_TOKEN: Final = orjson.dumps(
    {
        "fault": {
            "faultstring": "Access Token expired",
            "detail": {"errorcode": "keymanagement.service.access_token_expired"},
        }
    }
)


def _not_found(event_id: str) -> bytes:
    return orjson.dumps(
        {"errors": [{"code": "EVENT_NOT_FOUND", "message": f"Event {event_id} not found"}]}
    )


def _digest(data: str) -> int:
    # blake2b, not hash(): hash() of str is salted per process and would break determinism.
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "big")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def epoch(value: float | datetime | str) -> float:
    """An instant given as epoch seconds, an aware datetime or an ISO 8601 string (with an
    offset or Z); ValueError otherwise."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"a datetime needs a time zone, got {value.isoformat()}")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"expected epoch seconds, an aware datetime or ISO 8601, got {value!r}")
    return float(value)


class _Unset(enum.Enum):
    UNSET = 0


UNSET: Final = _Unset.UNSET
"""Leaves a scripted field as it is (None means "absent from the answer")."""


@dataclass(frozen=True, slots=True)
class EventScript:
    """Scripted overrides of one event's details; UNSET fields follow the seed.

    `venue=None` leaves the venue out of the answer; `time_zone=None` leaves only the zone out;
    `event_date`/`offsale` None leave them out; `found=False` answers 404 and `found=True`
    answers even for an ID the world does not know.
    """

    found: bool | _Unset = UNSET
    name: str | _Unset | None = UNSET
    venue: Venue | _Unset | None = UNSET
    time_zone: str | _Unset | None = UNSET
    event_date: float | _Unset | None = UNSET
    offsale: float | _Unset | None = UNSET
    api_transactable: bool | _Unset | None = UNSET

    def to_json(self) -> dict[str, Any]:
        """The set fields, as the control endpoint shows them."""
        out: dict[str, Any] = {}
        for name in (f.name for f in fields(self)):
            value = getattr(self, name)
            if value is UNSET:
                continue
            if isinstance(value, Venue):
                value = value.id
            elif name in ("event_date", "offsale") and value is not None:
                value = _iso(value)
            out[name] = value
        return out


@dataclass(slots=True)
class _Issued:
    client_id: str
    expires_wall: float


class PartnerSim:
    """The Partner API's OAuth and event-details endpoints over a world, faults and a log.

    Credentials: any non-empty API key and client secret are accepted unless `api_key` /
    `client_secret` name the only ones. Tokens live `token_seconds` of the clock's wall time.
    Events: those the world knows (its `known_events`, or any well-formed ID), plus scripted
    ones; each gets a venue from `VENUES` and a date 30 to 390 days ahead, both from a stable
    hash of (seed, event ID), unless scripted with `set_event`. `token_requests` and
    `details_requests` count requests to each endpoint, whatever their outcome;
    `tokens_issued` counts tokens handed out and `recent_tokens` keeps the latest ones.

    Order of checks: method (405), `apikey` (401), spike arrest (429), faults, then client
    credentials (401 `invalid_client`) and grant type (400), or the bearer token (401) and
    the event (404).
    """

    def __init__(
        self,
        *,
        world: World,
        faults: FaultPlan,
        log: RequestLog,
        clock: Clock,
        api_key: str | None = None,
        client_secret: str | None = None,
        token_seconds: float = DEFAULT_TOKEN_SECONDS,
        record_ids: bool = False,
        spike_arrest: SpikeArrest | None = None,
    ) -> None:
        if not token_seconds > 0:
            raise ValueError(f"token_seconds must be positive, got {token_seconds!r}")
        self.world = world
        self.faults = faults
        self.log = log
        self.clock = clock
        self.api_key = api_key
        self.client_secret = client_secret
        self.token_seconds = float(token_seconds)
        self.record_ids = record_ids
        self.spike_arrest = spike_arrest
        self.token_requests = 0
        self.details_requests = 0
        self.tokens_issued = 0
        self.recent_tokens: deque[str] = deque(maxlen=100)
        """The latest tokens issued, oldest first (for tests that look for leaks)."""
        self._tokens: dict[str, _Issued] = {}
        self._scripts: dict[str, EventScript] = {}
        self._release: asyncio.Event | None = None

    # -- serving -----------------------------------------------------------------------------

    def add_routes(self, app: web.Application, prefix: str = PREFIX) -> None:
        """Serve the token and event-details endpoints under `prefix` (every method, so that a
        405 is logged too)."""
        app.router.add_route("*", prefix + OAUTH_PATH, self.handle_token)
        app.router.add_route("*", prefix + EVENT_PATH + "{event_id}", self.handle_event)

    def open(self) -> None:
        """Prepare for serving on the running loop."""
        self._release = asyncio.Event()

    def release(self) -> None:
        """End every held request now (latency and timeout faults): the server is stopping."""
        if self._release is not None:
            self._release.set()

    async def _hold(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self._release is None:
            self.open()
        assert self._release is not None
        try:
            async with asyncio.timeout(seconds):
                await self._release.wait()
        except TimeoutError:
            pass

    # -- scripting ---------------------------------------------------------------------------

    def set_event(
        self,
        event_id: str,
        *,
        found: bool | _Unset = UNSET,
        name: str | _Unset | None = UNSET,
        venue: Venue | int | str | _Unset | None = UNSET,
        time_zone: str | _Unset | None = UNSET,
        event_date: float | datetime | str | _Unset | None = UNSET,
        offsale: float | datetime | str | _Unset | None = UNSET,
        api_transactable: bool | _Unset | None = UNSET,
    ) -> EventScript:
        """Script fields of one event's details until changed again; UNSET leaves a field as is.

        `venue` is a Venue or the ID of one in `VENUES`; `time_zone` is sent as given (an
        invalid name too); dates are epoch seconds, aware datetimes or ISO 8601 strings.
        A scripted event is answered even if the world does not know it, unless `found=False`.
        """
        if isinstance(venue, int | str) and not isinstance(venue, bool):
            venue = venue_by_id(venue)
        old = self._scripts.get(event_id, EventScript())
        given: dict[str, Any] = {
            "found": found,
            "name": name,
            "venue": venue,
            "time_zone": time_zone,
            "api_transactable": api_transactable,
        }
        changes = {field: value for field, value in given.items() if value is not UNSET}
        for field, when in (("event_date", event_date), ("offsale", offsale)):
            if when is not UNSET:
                changes[field] = None if when is None else epoch(when)
        script = replace(old, **changes)
        self._scripts[event_id] = script
        return script

    def clear_events(self, event_id: str | None = None) -> None:
        """Drop the scripts of one event, or of all when none is given."""
        if event_id is None:
            self._scripts.clear()
        else:
            self._scripts.pop(event_id, None)

    @property
    def scripted(self) -> Mapping[str, EventScript]:
        """A copy of the scripts per event ID."""
        return dict(self._scripts)

    def revoke_tokens(self) -> int:
        """Invalidate every token issued so far (they answer 401); returns how many."""
        n = len(self._tokens)
        self._tokens.clear()
        return n

    def active_tokens(self) -> int:
        """Tokens issued and not yet expired or revoked."""
        now = self.clock.wall()
        return sum(1 for t in self._tokens.values() if t.expires_wall > now)

    # -- what the events are -----------------------------------------------------------------

    def is_event(self, event_id: str) -> bool:
        """Whether details of this ID are answered (else 404): a scripted ("mapped") event,
        or one the world knows whose ID is in the Partner API's own format (`PARTNER_ID_RE`):
        the Partner API does not know Discovery-style IDs such as 17AOv8G6G5rI0S0."""
        script = self._scripts.get(event_id)
        if script is not None and script.found is not UNSET:
            return script.found
        if script is not None:
            return True
        return PARTNER_ID_RE.fullmatch(event_id) is not None and self.world.is_event(event_id)

    def venue_of(self, event_id: str) -> Venue | None:
        """The venue of an event (scripted, else from the seed); None when scripted away."""
        script = self._scripts.get(event_id)
        if script is not None and script.venue is not UNSET:
            return script.venue
        return VENUES[_digest(f"venue\x00{self.world.seed}\x00{event_id}") % len(VENUES)]

    def time_zone_of(self, event_id: str) -> str | None:
        """The time zone the details of this event carry (None when absent)."""
        script = self._scripts.get(event_id)
        if script is not None and script.time_zone is not UNSET:
            return script.time_zone
        venue = self.venue_of(event_id)
        return None if venue is None else venue.time_zone

    def event_date_of(self, event_id: str, wall: float | None = None) -> float | None:
        """The event's start (epoch seconds) as answered at `wall` (default: now).

        Unscripted, it is 19:30 at the seeded venue on a day 60 to 359 days after the start of
        the current 30-day period (so 30 to 359 days ahead, and stable within the period).
        """
        script = self._scripts.get(event_id)
        if script is not None and script.event_date is not UNSET:
            return script.event_date
        when = self.clock.wall() if wall is None else wall
        h = _digest(f"date\x00{self.world.seed}\x00{event_id}")
        period_start = math.floor(when / 86400 / _BUCKET_DAYS) * _BUCKET_DAYS
        day = date(1970, 1, 1) + timedelta(days=period_start + 60 + h % 300)
        # The date follows the seeded venue, not a scripted zone, which may be invalid.
        seeded = VENUES[_digest(f"venue\x00{self.world.seed}\x00{event_id}") % len(VENUES)]
        local = datetime(day.year, day.month, day.day, 19, 30, tzinfo=ZoneInfo(seeded.time_zone))
        return local.timestamp()

    def details(self, event_id: str, wall: float | None = None) -> dict[str, Any]:
        """The event-details document of one event, shaped like seed 004's model."""
        when = self.clock.wall() if wall is None else wall
        script = self._scripts.get(event_id, EventScript())
        h = _digest(f"details\x00{self.world.seed}\x00{event_id}")
        event_date = self.event_date_of(event_id, when)
        if script.offsale is not UNSET:
            offsale = script.offsale
        else:
            offsale = None if event_date is None else event_date - 2 * 3600
        seeded_name = f"{_ACTS[h % len(_ACTS)]} ({event_id})"
        name = script.name if script.name is not UNSET else seeded_name
        transactable = (
            script.api_transactable if script.api_transactable is not UNSET else h % 10 != 0
        )
        event: dict[str, Any] = {
            "id": event_id,
            "currency_code": "USD",
            "url": f"http://ticketmaster.com/event/{event_id}",
            "onsale": {"format": "datetime", "value": _iso(when - 86400 * (30 + h % 60))},
            "type": {"id": 0},
        }
        if name is not None:
            event["name"] = name
        if event_date is not None:
            event["eventdate"] = {"format": "datetime", "value": _iso(event_date)}
        if offsale is not None:
            event["offsale"] = {"format": "datetime", "value": _iso(offsale)}
        venue = self.venue_of(event_id)
        if venue is not None:
            location: dict[str, Any] = {
                "address": {"city": venue.city, "country": {"abbrev": venue.country}}
            }
            zone = self.time_zone_of(event_id)
            if zone is not None:
                location["time_zone"] = zone
            event["venue"] = {
                "id": venue.id,
                "name": venue.name,
                "location": location,
                "markets": [{"id": venue.id % 100, "name": f"Greater {venue.city} Area"}],
            }
        out: dict[str, Any] = {"event": event}
        if transactable is not None:
            out["api_transactable"] = transactable
        return out

    # -- requests ----------------------------------------------------------------------------

    def _record(
        self, request: web.Request, t: float, wall: float, status: int, ids: tuple[str, ...]
    ) -> None:
        self.log.append(
            RequestRecord(
                t=t,
                wall=wall,
                method=request.method,
                n_ids=len(ids),
                region=None,
                status=status,
                ids=ids if self.record_ids else None,
                api=API,
                path=request.path,
            )
        )

    def _gate(
        self, request: web.Request, t: float, wall: float, ids: tuple[str, ...], allowed: str
    ) -> web.Response | None:
        """Method, API key and rate limit: the checks both endpoints share."""
        if request.method != allowed:
            self._record(request, t, wall, 405, ids)
            body = orjson.dumps({"error": "method not allowed"})
            return _answer(405, body, {"Allow": allowed})
        key = request.query.get("apikey")
        if not key or (self.api_key is not None and key != self.api_key):
            self._record(request, t, wall, 401, ids)
            return _answer(401, _INVALID_KEY)
        spike = self.spike_arrest
        if spike is not None and not spike.allow(t):
            self._record(request, t, wall, 429, ids)
            return _answer(429, spike.body)
        return None

    async def handle_token(self, request: web.Request) -> web.StreamResponse:
        """`POST .../oauth/accesstoken?apikey=KEY`: a bearer token for client credentials."""
        t, wall = time.monotonic(), self.clock.wall()
        self.token_requests += 1
        body = await request.read()
        refused = self._gate(request, t, wall, (), "POST")
        if refused is not None:
            return refused
        decision = self.faults.decide(OAUTH_API, ())
        if decision.terminal is not None:
            return await self._fault_answer(request, t, wall, (), decision, self._token_body)

        key = request.query["apikey"]
        if not self._client_ok(request.headers.get("Authorization", ""), key):
            return await self._reply(request, t, wall, (), decision, 401, _INVALID_CLIENT)
        try:
            form = parse_qs(body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            form = {}
        grant = (form.get("grant_type") or request.query.getall("grant_type", None) or [""])[0]
        if grant != "client_credentials":
            problem = orjson.dumps(
                {"ErrorCode": "invalid_request", "Error": f"Unsupported grant type : {grant}"}
            )
            return await self._reply(request, t, wall, (), decision, 400, problem)
        return await self._reply(request, t, wall, (), decision, 200, self._issue(key, wall))

    def _client_ok(self, authorization: str, key: str) -> bool:
        scheme, _, encoded = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        client_id, sep, secret = decoded.partition(":")
        if not sep or client_id != key or not secret:
            return False
        return self.client_secret is None or secret == self.client_secret

    def _issue(self, client_id: str, wall: float) -> bytes:
        # Forget expired tokens so a long run does not grow without bound.
        for old in [k for k, v in self._tokens.items() if v.expires_wall <= wall]:
            del self._tokens[old]
        token = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(_TOKEN_LENGTH))
        self._tokens[token] = _Issued(client_id, wall + self.token_seconds)
        self.tokens_issued += 1
        self.recent_tokens.append(token)
        return self._token_body(client_id, wall, token)

    def _token_body(self, client_id: str, wall: float, token: str = "") -> bytes:
        return orjson.dumps(
            {
                "issued_at": str(round(wall * 1000)),
                "scope": "",
                "status": "approved",
                "expires_in": f"{self.token_seconds:g}",
                "token_type": "BearerToken",
                "client_id": client_id,
                "access_token": token or "x" * _TOKEN_LENGTH,
            }
        )

    async def handle_event(self, request: web.Request) -> web.StreamResponse:
        """`GET .../event/{event_id}?apikey=KEY` with a bearer token: the event's details."""
        t, wall = time.monotonic(), self.clock.wall()
        self.details_requests += 1
        event_id = request.match_info["event_id"]
        ids = (event_id,)
        refused = self._gate(request, t, wall, ids, "GET")
        if refused is not None:
            return refused
        decision = self.faults.decide(EVENT_API, ids)
        if decision.terminal is not None:

            def body(_key: str, at: float) -> bytes:
                return orjson.dumps(self.details(event_id, at))

            return await self._fault_answer(request, t, wall, ids, decision, body)

        problem = self._token_problem(request, request.query["apikey"], wall)
        if problem is not None:
            return await self._reply(request, t, wall, ids, decision, 401, problem)
        missing = any(
            f.kind == fk.MISSING_IDS and (not f.ids or event_id in f.ids) for f in decision.altering
        )
        if missing or not self.is_event(event_id):
            return await self._reply(request, t, wall, ids, decision, 404, _not_found(event_id))
        details = orjson.dumps(self.details(event_id, wall))
        return await self._reply(request, t, wall, ids, decision, 200, details)

    def _token_problem(self, request: web.Request, key: str, wall: float) -> bytes | None:
        scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return _NO_TOKEN
        issued = self._tokens.get(token)
        if issued is None or issued.client_id != key:
            return _BAD_TOKEN
        if issued.expires_wall <= wall:
            return _EXPIRED_TOKEN
        return None

    async def _reply(
        self,
        request: web.Request,
        t: float,
        wall: float,
        ids: tuple[str, ...],
        decision: fk.Decision,
        status: int,
        body: bytes,
    ) -> web.Response:
        self._record(request, t, wall, status, ids)
        await self._hold(decision.delay)
        return _answer(status, body)

    async def _fault_answer(
        self,
        request: web.Request,
        t: float,
        wall: float,
        ids: tuple[str, ...],
        decision: fk.Decision,
        good_body: Callable[[str, float], bytes],
    ) -> web.StreamResponse:
        fault = decision.terminal
        assert fault is not None
        kind = fault.kind
        key = request.query.get("apikey", "")
        if kind == fk.TIMEOUT:
            self._record(request, t, wall, NO_ANSWER, ids)
            await self._hold(decision.delay + fault.seconds)
            return _hang_up(request)
        if kind == fk.TRUNCATED and fault.mode == "connection":
            self._record(request, t, wall, 200, ids)
            await self._hold(decision.delay)
            full = good_body(key, wall)
            stream = web.StreamResponse(status=200, headers={"Content-Type": _JSON})
            stream.content_length = len(full)
            await stream.prepare(request)
            await stream.write(full[: len(full) // 2])
            return _hang_up(request)
        headers: dict[str, str] = {}
        if kind == fk.ERROR:
            status, body = fault.status, _error_body(fault.status)
            if fault.retry_after is not None:
                headers["Retry-After"] = _seconds(fault.retry_after)
        elif kind == fk.RATE_LIMIT:
            status = 429
            spike = self.spike_arrest or _DEFAULT_SPIKE
            body = _QUOTA_FAULT if fault.variant == "quota" else spike.body
            headers["Retry-After"] = _seconds(fault.retry_after or 0.0)
        elif kind == fk.MALFORMED:
            status, body = 200, b'{"event": {"id": "' + ids[0].encode() if ids else b'{"issued_at'

        elif kind == fk.TRUNCATED:
            full = good_body(key, wall)
            status, body = 200, full[: len(full) // 2]
        elif kind == fk.HTML:
            status = fault.status
            body = _HTML_PAGE.format(code=status, reason=_reason(status)).encode()
            headers.update(_HTML_TYPE)
        elif kind == fk.NOT_ARRAY:
            # The Partner API answers objects; the nearest wrong shape is an array.
            status, body = 200, b"[" + good_body(key, wall) + b"]"
        else:  # bad_ids, matched
            status = 400
            body = orjson.dumps(
                {"errors": [{"code": "invalid_params", "message": f"invalid event id {ids[0]}"}]}
            )
        self._record(request, t, wall, status, ids)
        await self._hold(decision.delay)
        return _answer(status, body, headers)


def venue_by_id(venue_id: int | str) -> Venue:
    """The venue in `VENUES` with this ID; ValueError if there is none."""
    for venue in VENUES:
        if str(venue.id) == str(venue_id):
            return venue
    raise ValueError(f"no simulated venue has ID {venue_id!r}")


def _answer(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> web.Response:
    merged = {"Content-Type": _JSON}
    if headers:
        merged.update(headers)
    return web.Response(status=status, body=body, headers=merged)


def _hang_up(request: web.Request) -> web.StreamResponse:
    # Closing the transport makes aiohttp treat the answer as a premature client disconnect.
    request.protocol.force_close()
    return web.Response(status=200)

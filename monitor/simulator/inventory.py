"""The simulated Inventory Status API: `/inventory-status/v1/availability`, its request log and
its Ticketmaster-style rate limits (spike arrest and quota, as Apigee enforces them)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from http import HTTPStatus
from typing import Any, Final, overload
from urllib.parse import parse_qs

import orjson
from aiohttp import web

from monitor.clock import Clock
from monitor.simulator import faults as fk
from monitor.simulator.faults import Fault, FaultPlan
from monitor.simulator.world import World

PATH: Final = "/inventory-status/v1/availability"
API: Final = "inventory"
MAX_IDS: Final = 1000
MAX_URL_BYTES: Final = 8192
"""The longest request target (path and query) answered by default; longer ones get 414, as
from many API gateways. 1000 IDs of 16 characters make a query string of about 17 KB."""

_JSON: Final = "application/json;charset=UTF-8"
_INVALID_KEY: Final = orjson.dumps(
    {"fault": {"faultstring": "Invalid ApiKey", "detail": {"errorcode": "oauth.v2.InvalidApiKey"}}}
)
_QUOTA_FAULT: Final = orjson.dumps(
    {
        "fault": {
            "faultstring": (
                "Rate limit quota violation. Quota limit  exceeded. Identifier : _default"
            ),
            "detail": {"errorcode": "policies.ratelimit.QuotaViolation"},
        }
    }
)
_URI_TOO_LONG: Final = orjson.dumps(
    {
        "fault": {
            "faultstring": "Request URI too long",
            "detail": {"errorcode": "protocol.http.TooBigLine"},
        }
    }
)
_ERROR_CODES: Final = {
    502: "messaging.adaptors.http.flow.BadGateway",
    503: "messaging.adaptors.http.flow.ServiceUnavailable",
    504: "messaging.adaptors.http.flow.GatewayTimeout",
}
_HTML_PAGE: Final = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
NO_ANSWER: Final = 0
"""The status recorded for a request whose connection was closed without an answer."""


# -- request log ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request to a simulated API, as it arrived and as it was answered.

    `t` is `time.monotonic()` at arrival (real time, for pacing checks); `wall` is the
    simulator clock's wall time. `status` is 0 when the connection was closed unanswered.
    `ids` is kept only when the simulator was built with `record_ids=True`. `path` is set for
    APIs with several endpoints (the Partner API), e.g. "/partners/v1/oauth/accesstoken".
    """

    t: float
    wall: float
    method: str
    n_ids: int
    region: str | None
    status: int
    ids: tuple[str, ...] | None = None
    api: str = API
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The record as the control endpoint shows it."""
        out: dict[str, Any] = {
            "t": self.t,
            "wall": self.wall,
            "api": self.api,
            "method": self.method,
            "n_ids": self.n_ids,
            "region": self.region,
            "status": self.status,
        }
        if self.ids is not None:
            out["ids"] = list(self.ids)
        if self.path is not None:
            out["path"] = self.path
        return out


class RequestLog(Sequence[RequestRecord]):
    """The requests seen so far, oldest first; with a `limit`, only about the latest that many."""

    def __init__(self, limit: int | None = None) -> None:
        self._items: list[RequestRecord] = []
        self.limit = limit

    def append(self, record: RequestRecord) -> None:
        """Add a record, forgetting the oldest ones when over the limit."""
        items = self._items
        items.append(record)
        # Trim in batches of a tenth so appends stay O(1) amortised.
        if self.limit is not None and len(items) > self.limit + self.limit // 10:
            del items[: len(items) - self.limit]

    def clear(self) -> None:
        """Forget every record."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> RequestRecord: ...

    @overload
    def __getitem__(self, index: slice) -> list[RequestRecord]: ...

    def __getitem__(self, index: int | slice) -> RequestRecord | list[RequestRecord]:
        return self._items[index]

    def __iter__(self) -> Iterator[RequestRecord]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"RequestLog({len(self._items)} records)"


def max_in_window(records: Iterable[RequestRecord], per_seconds: float) -> int:
    """The most records whose arrival times `t` fall in any window [s, s + per_seconds)."""
    times = sorted(r.t for r in records)
    best = start = 0
    for end, t in enumerate(times):
        while t - times[start] >= per_seconds:
            start += 1
        best = max(best, end - start + 1)
    return best


# -- rate limits ------------------------------------------------------------------------------


class SpikeArrest:
    """At most `requests` accepted requests in any sliding window of `per_seconds` (real time)."""

    def __init__(self, requests: int, per_seconds: float) -> None:
        if isinstance(requests, bool) or not isinstance(requests, int) or requests < 1:
            raise ValueError(f"rate limit requests must be a positive integer, got {requests!r}")
        if isinstance(per_seconds, bool) or not per_seconds > 0:
            raise ValueError(f"rate limit per_seconds must be positive, got {per_seconds!r}")
        self.requests = requests
        self.per_seconds = float(per_seconds)
        self._accepted: deque[float] = deque()
        if self.per_seconds == 1:
            rate = f"{requests}ps"
        elif self.per_seconds == 60:
            rate = f"{requests}pm"
        else:
            rate = f"{requests}p{self.per_seconds:g}s"
        self.body = orjson.dumps(
            {
                "fault": {
                    "faultstring": f"Spike arrest violation. Allowed rate : {rate}",
                    "detail": {"errorcode": "policies.ratelimit.SpikeArrestViolation"},
                }
            }
        )

    def allow(self, now: float) -> bool:
        """Whether a request arriving at `now` (monotonic) is within the limit; counts it if so."""
        accepted = self._accepted
        cutoff = now - self.per_seconds
        while accepted and accepted[0] <= cutoff:
            accepted.popleft()
        if len(accepted) >= self.requests:
            return False
        accepted.append(now)
        return True

    def to_json(self) -> dict[str, Any]:
        """The setting, as the control endpoint takes it."""
        return {"requests": self.requests, "per_seconds": self.per_seconds}


class Quota:
    """`calls` per `period_seconds` of wall time, in periods aligned to the epoch (a day of
    86400 s resets at midnight UTC). Requests over quota are counted too: `Rate-Limit-Over`."""

    def __init__(self, calls: int, period_seconds: float) -> None:
        if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
            raise ValueError(f"quota calls must be a positive integer, got {calls!r}")
        if isinstance(period_seconds, bool) or not period_seconds > 0:
            raise ValueError(f"quota period_seconds must be positive, got {period_seconds!r}")
        self.calls = calls
        self.period_seconds = float(period_seconds)
        self._period = -1
        self.used = 0

    def _roll(self, wall: float) -> None:
        period = math.floor(wall / self.period_seconds)
        if period != self._period:
            self._period = period
            self.used = 0

    def charge(self, wall: float) -> bool:
        """Count one call at `wall`; whether it is within quota."""
        self._roll(wall)
        self.used += 1
        return self.used <= self.calls

    def headers(self, wall: float) -> dict[str, str]:
        """The `Rate-Limit*` headers Ticketmaster sends, as of `wall`."""
        self._roll(wall)
        reset_ms = round((self._period + 1) * self.period_seconds * 1000)
        return {
            "Rate-Limit": str(self.calls),
            "Rate-Limit-Available": str(max(0, self.calls - self.used)),
            "Rate-Limit-Over": str(max(0, self.used - self.calls)),
            "Rate-Limit-Reset": str(reset_ms),
        }

    def to_json(self) -> dict[str, Any]:
        """The setting, as the control endpoint takes it."""
        return {"calls": self.calls, "period_seconds": self.period_seconds}


# -- the endpoint -----------------------------------------------------------------------------


class BadRequest(Exception):
    """The request's event IDs cannot be read; answered 400 invalid_params."""


def _invalid_params(message: str) -> bytes:
    return orjson.dumps({"errors": [{"code": "invalid_params", "message": message}]})


def _split(values: Iterable[str]) -> list[str]:
    return [part for value in values for part in value.split(",") if part]


def _ids_from_json(body: bytes) -> list[str]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    if isinstance(data, dict):
        data = data.get("events")
        if isinstance(data, str):
            return _split([data])
    if not isinstance(data, list) or not all(isinstance(item, str) for item in data):
        raise BadRequest('JSON body must be a list of event IDs or {"events": [...]}')
    return [item for item in data if item]


def _every(n: int, fraction: float) -> list[bool]:
    """Which of n positions a fraction picks: ceil(n * fraction) of them, spread evenly,
    starting with the first (exact rational arithmetic, so the count never drifts)."""
    f = Fraction(fraction).limit_denominator(1_000_000)
    num, den = f.numerator, f.denominator
    return [(-(-(i + 1) * num // den)) != (-(-i * num // den)) for i in range(n)]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _error_body(status: int) -> bytes:
    reason = _reason(status)
    code = _ERROR_CODES.get(status, f"simulator.error.{status}")
    return orjson.dumps({"fault": {"faultstring": reason, "detail": {"errorcode": code}}})


def _seconds(value: float) -> str:
    return f"{value:g}"


_DEFAULT_SPIKE: Final = SpikeArrest(5, 1)
_ALLOW: Final = {"Allow": "GET, POST"}
_HTML_TYPE: Final = {"Content-Type": "text/html; charset=utf-8"}


@dataclass(slots=True)
class _Call:
    """One request in flight: when it came, what it asked, and the headers every answer gets."""

    request: web.Request
    t: float
    wall: float
    ids: list[str] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)


class InventoryAPI:
    """The availability endpoint over a world, a fault plan and a log; see `add_routes`."""

    def __init__(
        self,
        *,
        world: World,
        faults: FaultPlan,
        log: RequestLog,
        clock: Clock,
        api_key: str | None = None,
        record_ids: bool = False,
        spike_arrest: SpikeArrest | None = None,
        quota: Quota | None = None,
        max_url_bytes: int | None = MAX_URL_BYTES,
    ) -> None:
        if max_url_bytes is not None and max_url_bytes < 1:
            raise ValueError(f"max_url_bytes must be positive or None, got {max_url_bytes!r}")
        self.max_url_bytes = max_url_bytes
        self.world = world
        self.faults = faults
        self.log = log
        self.clock = clock
        self.api_key = api_key
        self.record_ids = record_ids
        self.spike_arrest = spike_arrest
        self.quota = quota
        self._release: asyncio.Event | None = None

    def add_routes(self, app: web.Application) -> None:
        """Serve the endpoint on `app` (every method, so that a 405 is logged too)."""
        app.router.add_route("*", PATH, self.handle)

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

    async def _read_ids(self, request: web.Request) -> list[str]:
        ids = _split(request.query.getall("events", ()))
        if request.method != "POST" or not request.body_exists:
            return ids
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise BadRequest("request body is too large") from None
        if not body.strip():
            return ids
        content_type = request.content_type
        if "json" in content_type or body.lstrip()[:1] in (b"[", b"{"):
            return ids + _ids_from_json(body)
        try:
            form = parse_qs(body.decode(), strict_parsing=False)
        except UnicodeDecodeError:
            raise BadRequest("request body is not UTF-8") from None
        return ids + _split(form.get("events", ()))

    def _answer(
        self, call: _Call, status: int, body: bytes, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        self._record(call, status)
        merged = {"Content-Type": _JSON, **call.headers}
        if headers:
            merged.update(headers)
        return web.Response(status=status, body=body, headers=merged)

    def _record(self, call: _Call, status: int) -> None:
        request = call.request
        self.log.append(
            RequestRecord(
                t=call.t,
                wall=call.wall,
                method=request.method,
                n_ids=len(call.ids),
                region=request.query.get("region"),
                status=status,
                ids=tuple(call.ids) if self.record_ids else None,
            )
        )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Answer one request to the availability endpoint."""
        call = _Call(request, time.monotonic(), self.clock.wall())
        problem: str | None = None
        try:
            call.ids = await self._read_ids(request)
        except BadRequest as exc:
            problem = str(exc)

        if self.max_url_bytes is not None and len(request.raw_path) > self.max_url_bytes:
            # The gateway refuses the request line before anything else looks at it.
            return self._answer(call, 414, _URI_TOO_LONG)
        if request.method not in ("GET", "POST"):
            return self._answer(call, 405, _invalid_params("method not allowed"), _ALLOW)
        key = request.query.get("apikey")
        if not key or (self.api_key is not None and key != self.api_key):
            return self._answer(call, 401, _INVALID_KEY)

        spike, quota = self.spike_arrest, self.quota
        if spike is not None and not spike.allow(call.t):
            if quota is not None:
                call.headers = quota.headers(call.wall)
            return self._answer(call, 429, spike.body)
        if quota is not None:
            within = quota.charge(call.wall)
            call.headers = quota.headers(call.wall)
            if not within:
                return self._answer(call, 429, _QUOTA_FAULT)

        n = len(call.ids)
        if problem is None and n == 0:
            problem = "events: at least one event ID is required"
        elif n > MAX_IDS:
            problem = f"events: at most {MAX_IDS} event IDs per request, got {n}"
        if problem is not None:
            return self._answer(call, 400, _invalid_params(problem))

        decision = self.faults.decide(API, call.ids)
        if decision.terminal is not None:
            return await self._fault_answer(call, decision.terminal, decision)
        response = self._answer(call, 200, self._body(call.ids, call.wall, decision.altering))
        await self._hold(decision.delay)
        return response

    def _rows(self, ids: list[str], wall: float, altering: list[Fault]) -> list[dict[str, str]]:
        pairs = self.world.statuses(ids, wall)
        key = "eventId"
        for fault in altering:
            kind = fault.kind
            if kind == fk.MISSING_IDS:
                if fault.ids:
                    keep = [i not in fault.ids for i in ids]
                else:
                    keep = [not drop for drop in _every(len(ids), fault.fraction)]
                ids = [i for i, k in zip(ids, keep, strict=True) if k]
                pairs = [p for p, k in zip(pairs, keep, strict=True) if k]
            elif kind == fk.UNKNOWN_STATUS:
                hit = (
                    [i in fault.ids for i in ids] if fault.ids else _every(len(ids), fault.fraction)
                )
                at = 0 if fault.field == "status" else 1
                pairs = [
                    (((fault.value, p[1]) if at == 0 else (p[0], fault.value)) if h else p)
                    for p, h in zip(pairs, hit, strict=True)
                ]
            elif kind == fk.EXTRA_IDS:
                asked = set(ids)
                extra = [f"SIMEXTRA{n:04d}" for n in range(fault.extra + len(asked))]
                extra = [e for e in extra if e not in asked][: fault.extra]
                ids = ids + extra
                pairs = pairs + self.world.statuses(extra, wall)
            elif kind == fk.LOWERCASE_KEY:
                key = "eventid"
        return [
            {key: i, "status": p[0], "resaleStatus": p[1]} for i, p in zip(ids, pairs, strict=True)
        ]

    def _body(self, ids: list[str], wall: float, altering: list[Fault]) -> bytes:
        if not altering:
            return orjson.dumps(self.world.rows(ids, wall))
        return orjson.dumps(self._rows(ids, wall, altering))

    async def _fault_answer(
        self, call: _Call, fault: Fault, decision: fk.Decision
    ) -> web.StreamResponse:
        kind, ids, wall = fault.kind, call.ids, call.wall
        if kind == fk.TIMEOUT:
            self._record(call, NO_ANSWER)
            await self._hold(decision.delay + fault.seconds)
            return self._hang_up(call.request)
        if kind == fk.TRUNCATED and fault.mode == "connection":
            self._record(call, 200)
            await self._hold(decision.delay)
            full = self._body(ids, wall, [])
            stream = web.StreamResponse(status=200, headers={"Content-Type": _JSON, **call.headers})
            stream.content_length = len(full)
            await stream.prepare(call.request)
            await stream.write(full[: len(full) // 2])
            return self._hang_up(call.request)
        response: web.Response
        if kind == fk.ERROR:
            extra = (
                {} if fault.retry_after is None else {"Retry-After": _seconds(fault.retry_after)}
            )
            response = self._answer(call, fault.status, _error_body(fault.status), extra)
        elif kind == fk.RATE_LIMIT:
            if fault.variant == "quota":
                body = _QUOTA_FAULT
            else:
                body = (self.spike_arrest or _DEFAULT_SPIKE).body
            retry = {"Retry-After": _seconds(fault.retry_after or 0.0)}
            response = self._answer(call, 429, body, retry)
        elif kind == fk.MALFORMED:
            response = self._answer(call, 200, b'[{"eventId": ' + orjson.dumps(ids[0]) + b', "sta')
        elif kind == fk.TRUNCATED:
            full = self._body(ids, wall, [])
            response = self._answer(call, 200, full[: len(full) // 2])
        elif kind == fk.HTML:
            page = _HTML_PAGE.format(code=fault.status, reason=_reason(fault.status)).encode()
            response = self._answer(call, fault.status, page, _HTML_TYPE)
        elif kind == fk.NOT_ARRAY:
            rows = self._rows(ids, wall, [])
            response = self._answer(call, 200, orjson.dumps({"events": rows}))
        else:  # bad_ids, matched
            message = f"invalid event id {decision.bad_id}"
            response = self._answer(call, 400, _invalid_params(message))
        await self._hold(decision.delay)
        return response

    @staticmethod
    def _hang_up(request: web.Request) -> web.StreamResponse:
        # Closing the transport makes aiohttp treat the answer as a premature client
        # disconnect: nothing more is written and nothing is logged as an error.
        request.protocol.force_close()
        return web.Response(status=200)

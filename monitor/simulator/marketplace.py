"""The simulated broker marketplace: `/v9/inventory` Create (seed 002) and Bulk Update (seed 003),
with listings kept in memory so tests can read back what changed.

    sim = Simulator(seed=1)
    market = MarketplaceSim(token="t0k3n", log=sim.log)
    market.add_routes(sim.app())          # before sim.start()
    market.seed_listings([12345, 23456], price="90.00")
    async with sim:
        ...  # PATCH f"{sim.url}/v9/inventory", then market.listings[12345]["price"]

Semantics, as the seeds describe them: a bearer token is required (401 otherwise); a bulk update
of which only some listings exist updates those and returns them (200), one of which none exist
gets 404 `not_found`; any invalid input (`ids[0] must be an integer`, more than 1000 IDs, an
attribute the validation module refuses) gets 400 `invalid_params` listing every problem, and
then no listing is updated. Listing IDs are returned as strings, as in the seeds' examples.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final

import orjson
from aiohttp import web

from monitor.marketplace.validation import normalize_update, validate_bulk_update, validate_create
from monitor.simulator.inventory import NO_ANSWER, RequestLog, RequestRecord

PATH: Final = "/v9/inventory"
API: Final = "marketplace"
MAX_IDS: Final = 1000
CONTROL_PREFIX: Final = "/_sim/marketplace"

_NOT_FOUND: Final = {"errors": [{"code": "not_found", "message": "Could not find record."}]}
_UNAUTHORIZED: Final = {
    "errors": [{"code": "unauthorized", "message": "Authentication failed or missing credentials."}]
}
_FAULT_ERRORS: Final = {
    400: ("invalid_params", "Validation error."),
    401: ("unauthorized", "Authentication failed or missing credentials."),
    429: ("rate_limited", "Too many requests."),
    500: ("internal_error", "A generic internal service error occurred."),
    502: ("bad_gateway", "Bad gateway."),
    503: ("service_unavailable", "Service unavailable."),
    504: ("gateway_timeout", "Gateway timeout."),
}
_TOKEN_RE: Final = re.compile(r"^Bearer\s+(\S+)\s*$", re.IGNORECASE)
_PATH_PART_RE: Final = re.compile(r"[^.\[\]]+")


@dataclass(frozen=True, slots=True)
class MarketRequest:
    """One request to the simulated marketplace: method, IDs in it (1 for a create), status.

    `status` is 0 when the connection was closed before an answer (a stalled request); `body`
    is the raw request body when the simulator keeps them (`record_bodies=True`).
    """

    method: str
    n_ids: int
    status: int
    body: bytes | None = None


@dataclass(slots=True)
class _Fault:
    status: int  # 0: stall instead of answering with an error
    message: str | None = None
    retry_after: float | None = None
    seconds: float = 0.0


class _Invalid(Exception):
    """A 400: every `invalid_params` message."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = messages


def bracket_path(path: str, root: str = "inventory") -> str:
    """A validation key path in the marketplace's spelling: `ticket.seats[0].seat` ->
    `inventory[ticket][seats][0][seat]`."""
    return root + "".join(f"[{part}]" for part in _PATH_PART_RE.findall(path))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"cannot encode a {type(value).__name__}")


def _json(data: Any, status: int, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(data, default=_json_default),
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def _errors(code: str, messages: Iterable[str]) -> dict[str, Any]:
    return {"errors": [{"code": code, "message": m} for m in messages]}


class MarketplaceSim:
    """The marketplace's inventory endpoints over an in-memory `listings` table.

    `token` is the only bearer token accepted (None: any non-empty one); change it at run time
    to make every request a 401. `requests` is the request log (also appended to `log`, the
    simulator's shared RequestLog with `api="marketplace"`, when given). `fail_next` and
    `stall_next` queue faults for the next requests, oldest first.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        log: RequestLog | None = None,
        max_ids: int = MAX_IDS,
        first_id: int = 900_000_001,
        record_bodies: bool = False,
    ) -> None:
        self.token = token
        self.record_bodies = record_bodies
        self.max_ids = max_ids
        self.listings: dict[int, dict[str, Any]] = {}
        self.requests: list[MarketRequest] = []
        self._log = log
        self._faults: deque[_Fault] = deque()
        self._next_id = first_id
        self._remote_ids: dict[tuple[str, str], int] = {}

    # -- set-up and faults -------------------------------------------------------------------

    def seed_listings(self, ids: Iterable[int], **attrs: Any) -> None:
        """Create (or overwrite) listings `ids`, each with a copy of `attrs`."""
        for listing_id in ids:
            self.listings[listing_id] = dict(attrs)

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 500,
        message: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Answer the next `count` requests with `status` (500, 401, 400, 429, 503, ...) and an
        `errors` body, before looking at them: nothing is changed."""
        for _ in range(count):
            self._faults.append(_Fault(status, message, retry_after))

    def stall_next(self, count: int = 1, *, seconds: float = 30.0) -> None:
        """Hold the next `count` requests for `seconds` before answering them normally (a
        client with a shorter timeout gives up first; nothing is changed then)."""
        for _ in range(count):
            self._faults.append(_Fault(0, seconds=seconds))

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        self._faults.clear()

    # -- serving -----------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Serve `PATCH` and `POST /v9/inventory` and the `/_sim/marketplace/` control endpoints
        (`GET listings`, `GET requests`, `POST faults` with `{"status", "count"}`) on `app`."""
        app.router.add_route("PATCH", PATH, self.bulk_update)
        app.router.add_route("POST", PATH, self.create)
        app.router.add_route("GET", f"{CONTROL_PREFIX}/listings", self._get_listings)
        app.router.add_route("GET", f"{CONTROL_PREFIX}/requests", self._get_requests)
        app.router.add_route("POST", f"{CONTROL_PREFIX}/faults", self._post_faults)

    async def bulk_update(self, request: web.Request) -> web.StreamResponse:
        """PATCH /v9/inventory: `{"ids": [...], "inventory": {...}}`."""
        started, n_ids = time.monotonic(), 0
        try:
            body = await self._body(request)
            ids = body.get("ids") if isinstance(body, dict) else None
            n_ids = len(ids) if isinstance(ids, list) else 0
            early = await self._before(request)
            if early is not None:
                return await self._record(request, started, n_ids, early)
            try:
                ids, attrs = self._check_bulk(body)
            except _Invalid as exc:
                answer = _json(_errors("invalid_params", exc.messages), 400)
                return await self._record(request, started, n_ids, answer)
            existing = [i for i in dict.fromkeys(ids) if i in self.listings]
            if not existing:
                return await self._record(request, started, n_ids, _json(_NOT_FOUND, 404))
            for listing_id in existing:
                self.listings[listing_id].update(attrs)
            items = [{"id": str(i), **self.listings[i]} for i in existing]
            return await self._record(request, started, n_ids, _json({"inventory": items}, 200))
        except asyncio.CancelledError:
            self._log_request(request.method, started, n_ids, NO_ANSWER)
            raise

    async def create(self, request: web.Request) -> web.StreamResponse:
        """POST /v9/inventory: `{"inventory": {"event", "office", "ticket", "venue"}}`."""
        started = time.monotonic()
        try:
            early = await self._before(request)
            if early is not None:
                return await self._record(request, started, 1, early)
            body = await self._body(request)
            try:
                inventory = self._check_create(body)
            except _Invalid as exc:
                answer = _json(_errors("invalid_params", exc.messages), 400)
                return await self._record(request, started, 1, answer)
            ticket = dict(inventory["ticket"])
            key = (str(inventory["office"]["id"]), str(ticket["remote_id"]))
            if key in self._remote_ids:
                message = "inventory[ticket][remote_id] has already been taken"
                answer = _json(_errors("invalid_params", [message]), 400)
                return await self._record(request, started, 1, answer)
            listing_id = self._next_id
            self._next_id += 1
            self._remote_ids[key] = listing_id
            self.listings[listing_id] = ticket
            answer = _json({"inventory": {"id": str(listing_id), **ticket}}, 201)
            return await self._record(request, started, 1, answer)
        except asyncio.CancelledError:
            self._log_request(request.method, started, 1, NO_ANSWER)
            raise

    # -- the steps ---------------------------------------------------------------------------

    async def _before(self, request: web.Request) -> web.Response | None:
        """A queued fault's answer, or a 401, or None to go on."""
        if self._faults:
            fault = self._faults.popleft()
            if fault.status == 0:
                await asyncio.sleep(fault.seconds)
            else:
                code, default = _FAULT_ERRORS.get(fault.status, ("error", "Simulated error."))
                headers = None
                if fault.retry_after is not None:
                    headers = {"Retry-After": f"{fault.retry_after:g}"}
                body = _errors(code, [fault.message or default])
                return _json(body, fault.status, headers)
        match = _TOKEN_RE.match(request.headers.get("Authorization", ""))
        if match is None or (self.token is not None and match[1] != self.token):
            return _json(_UNAUTHORIZED, 401)
        return None

    @staticmethod
    async def _body(request: web.Request) -> Any:
        # aiohttp keeps the body once read, so `_record` can read it again for free.
        try:
            return orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return None

    def _check_bulk(self, body: Any) -> tuple[list[int], dict[str, Any]]:
        if not isinstance(body, dict):
            raise _Invalid(["body must be a JSON object with ids and inventory"])
        messages: list[str] = []
        ids = body.get("ids")
        if ids is None:
            messages.append("ids is missing")
        elif not isinstance(ids, list):
            messages.append("ids must be an array")
        elif not ids:
            messages.append("ids must not be empty")
        else:
            messages += [
                f"ids[{i}] must be an integer"
                for i, v in enumerate(ids)
                if isinstance(v, bool) or not isinstance(v, int)
            ]
            if len(ids) > self.max_ids:
                messages.append(f"ids must hold at most {self.max_ids} ids (got {len(ids)})")
        for key in body:
            if key not in ("ids", "inventory"):
                messages.append(f"{key} is not a known parameter")
        attrs = body.get("inventory")
        if attrs is None:
            messages.append("inventory is missing")
        elif not isinstance(attrs, dict):
            messages.append("inventory must be an object")
        else:
            problems = validate_bulk_update(attrs)
            messages += [f"{bracket_path(path)} {message}" for path, message in problems]
        if messages:
            raise _Invalid(messages)
        assert isinstance(ids, list)
        assert isinstance(attrs, dict)
        return ids, normalize_update(attrs)

    @staticmethod
    def _check_create(body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("inventory"), dict):
            raise _Invalid(["inventory is missing or not an object"])
        problems = validate_create(body["inventory"])
        if problems:
            raise _Invalid([f"{bracket_path(path)} {message}" for path, message in problems])
        inventory: dict[str, Any] = body["inventory"]
        return inventory

    async def _record(
        self, request: web.Request, started: float, n_ids: int, answer: web.Response
    ) -> web.Response:
        body = await request.read() if self.record_bodies else None
        self._log_request(request.method, started, n_ids, answer.status, body)
        return answer

    def _log_request(
        self, method: str, started: float, n_ids: int, status: int, body: bytes | None = None
    ) -> None:
        self.requests.append(MarketRequest(method, n_ids, status, body))
        if self._log is not None:
            record = RequestRecord(
                t=started,
                wall=time.time(),
                method=method,
                n_ids=n_ids,
                region=None,
                status=status,
                api=API,
            )
            self._log.append(record)

    # -- control endpoints -------------------------------------------------------------------

    async def _get_listings(self, request: web.Request) -> web.StreamResponse:
        return _json({str(k): v for k, v in self.listings.items()}, 200)

    async def _get_requests(self, request: web.Request) -> web.StreamResponse:
        rows = [{"method": r.method, "n_ids": r.n_ids, "status": r.status} for r in self.requests]
        return _json(rows, 200)

    async def _post_faults(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        if not isinstance(body, dict):
            return _json({"error": 'expected {"status": 500, "count": 1}'}, 400)
        status, count = body.get("status", 500), body.get("count", 1)
        valid = all(isinstance(v, int) and not isinstance(v, bool) for v in (status, count))
        if not valid or not 400 <= status <= 599 or count < 1:
            return _json({"error": "status must be 400-599 and count a positive integer"}, 400)
        message = body.get("message")
        self.fail_next(count, status=status, message=message if isinstance(message, str) else None)
        return _json({"queued": len(self._faults)}, 200)

"""The Inventory Status API client: one request per batch, answers validated into observations."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from monitor.clock import Clock, SystemClock
from monitor.core.backoff import MAX_RETRY_AFTER, server_wait
from monitor.domain import STATUS_SET, UNKNOWN, Observation
from monitor.logs import redact
from monitor.poller.budget import Slot
from monitor.secrets import Secret
from monitor.upstream import body as answer_body
from monitor.upstream.delta import CANONICAL, Layout, decode_delta, layout_of
from monitor.upstream.errors import (
    AnswerTooLarge,
    AuthFailed,
    BadRequest,
    ClientError,
    ConnectionFailure,
    MalformedAnswer,
    RateHeaders,
    RateLimited,
    Redirected,
    RequestTooLarge,
    ServerError,
    TimeoutFailure,
    TooManyObjects,
    UpstreamError,
)

AVAILABILITY_PATH = "/inventory-status/v1/availability"
METHODS = ("GET", "POST", "POST_QUERY")
"""GET: `events` in the query string. POST_QUERY: a POST with `events` in the query string and
no body, as the public documentation shows the call. POST: `events` in a form body."""

OBJECT_SLACK = 16
"""Objects (or arrays) an answer may hold beyond one per event asked for. A well-formed answer
holds exactly one object per event and one array; anything far beyond is not an answer, and
is refused before it is parsed (a million objects, or nesting a thousand deep)."""


@dataclass(slots=True)
class InventoryAnswer:
    """A validated answer, column by column: for each observed event (requested ones only, each
    once) its ID, status and resale status (None where the answer lacked the field); and what
    was odd about it. Columns, not one object per event: a thousand arrive per request."""

    ids: list[str]
    statuses: list[str | None]
    resales: list[str | None]
    unknown_statuses: int = 0
    ignored: int = 0
    missing: list[str] = field(default_factory=list)
    conflicting: list[str] = field(default_factory=list)  # named twice with different statuses
    rate: RateHeaders | None = None
    digest: bytes | None = None  # of the body, when the caller asked for repeats to be spotted
    repeat: bytes | None = None  # the body, left undecoded: the caller has seen it before
    layout: Layout | None = None  # for decoding the next answer to the same request (delta)

    @property
    def observations(self) -> list[Observation]:
        """The same answer as one Observation per event."""
        return list(map(Observation, self.ids, self.statuses, self.resales))


def body_digest(body: bytes) -> bytes:
    """A digest of an answer body (SHA-256: a repeat is never mistaken). SHA-256, not BLAKE2b:
    OpenSSL's runs on the CPU's SHA instructions, a third faster on a 60 kB answer."""
    return hashlib.sha256(body).digest()


def _column(data: list[Any], key: str) -> list[Any]:
    """One field of every object (None where absent). Raises TypeError for a non-object."""
    try:
        return list(map(itemgetter(key), data))
    except KeyError:
        return [item.get(key) for item in data]


def _fast_columns(data: list[Any], requested: list[str]) -> InventoryAnswer | None:
    """The common answer, read a column at a time: every requested ID once, in request order
    (under `eventId`, or `eventid` throughout), each field a known status or absent. None when
    the answer is anything else (the careful path then reads it item by item)."""
    if len(data) != len(requested):
        return None
    try:
        ids = _column(data, "eventId")
        # `eventid` only where no object has an `eventId` (the careful path reads `eventId`
        # first, and falls back to `eventid` only where that is absent or null).
        if ids != requested and (
            any(e is not None for e in ids) or _column(data, "eventid") != requested
        ):
            return None
        # Known values only, each as its one shared object (a KeyError otherwise).
        canonical = CANONICAL.__getitem__
        statuses = list(map(canonical, _column(data, "status")))
        resales = list(map(canonical, _column(data, "resaleStatus")))
    except (TypeError, AttributeError, KeyError):
        return None  # not objects, an unhashable or unknown value
    # The request's ID objects, not the decoded copies: those are the ones the daemon keeps.
    return InventoryAnswer(requested, statuses, resales)


def parse_answer(
    body: bytes,
    requested: Sequence[str],
    previous: Layout | None = None,
    *,
    keep_layout: bool = False,
) -> InventoryAnswer:
    """Validate an answer body (pure). Raises MalformedAnswer unless it is a JSON array of objects.

    `eventId` and `eventid` are both accepted (the public documents disagree); unknown status
    strings count as UNKNOWN; IDs nobody asked for are ignored; IDs asked for but absent give
    no observation, and so do IDs named twice with different statuses (`conflicting`: which
    one is true cannot be told). More objects or arrays than IDs asked for (plus
    OBJECT_SLACK) raise TooManyObjects before anything is parsed.

    With `previous` (the layout of the last answer to the same request), only the objects that
    changed are decoded when that can be done (`monitor.upstream.delta`); the result is the
    same. With `keep_layout`, the answer carries its own layout for the next one.
    """
    most = len(requested) + OBJECT_SLACK
    if body.count(b"{") > most or body.count(b"[") > most:
        raise TooManyObjects(f"answer holds more objects or arrays than the {most} allowed")
    if previous is not None and isinstance(requested, list):
        delta = decode_delta(body, requested, previous)
        if delta is not None:
            return InventoryAnswer(requested, delta[0], delta[1], layout=delta[2])
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise MalformedAnswer("answer is not valid JSON") from None
    if not isinstance(data, list):
        raise MalformedAnswer(f"answer is a JSON {type(data).__name__}, not an array")
    fast = _fast_columns(data, requested if isinstance(requested, list) else list(requested))
    if fast is not None:
        if keep_layout:
            fast.layout = layout_of(body, fast.ids, fast.statuses, fast.resales)
        return fast
    wanted = {e: e for e in requested}  # to keep the request's ID objects, as above
    seen: dict[str, int] = {}  # ID -> its place in the columns
    conflicting: set[str] = set()
    ids: list[str] = []
    statuses: list[str | None] = []
    resales: list[str | None] = []
    unknown = ignored = 0
    for item in data:
        if not isinstance(item, dict):
            raise MalformedAnswer("answer array holds something other than objects")
        eid = item.get("eventId")
        if eid is None:
            eid = item.get("eventid")
        if not isinstance(eid, str) or eid not in wanted:
            ignored += 1
            continue
        eid = wanted[eid]
        status = item.get("status")
        resale = item.get("resaleStatus")
        if status is not None and (not isinstance(status, str) or status not in STATUS_SET):
            unknown += 1
            status = UNKNOWN
        if resale is not None and (not isinstance(resale, str) or resale not in STATUS_SET):
            unknown += 1
            resale = UNKNOWN
        at = seen.get(eid)
        if at is not None:
            ignored += 1
            if statuses[at] != status or resales[at] != resale:
                conflicting.add(eid)
            continue
        seen[eid] = len(ids)
        ids.append(eid)
        statuses.append(status)
        resales.append(resale)
    missing = [e for e in requested if e not in seen] if len(seen) < len(wanted) else []
    answer = InventoryAnswer(ids, statuses, resales, unknown, ignored, missing)
    if conflicting:
        keep = [e not in conflicting for e in ids]
        answer.ids = list(compress(ids, keep))
        answer.statuses = list(compress(statuses, keep))
        answer.resales = list(compress(resales, keep))
        answer.conflicting = [e for e in ids if e in conflicting]
    return answer


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    raw = headers.get(name)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def rate_headers(headers: Mapping[str, str]) -> RateHeaders | None:
    """Read `Rate-Limit`, `Rate-Limit-Available`, `Rate-Limit-Over`, `Rate-Limit-Reset`."""
    limit = _int_header(headers, "Rate-Limit")
    available = _int_header(headers, "Rate-Limit-Available")
    over = _int_header(headers, "Rate-Limit-Over")
    reset = _int_header(headers, "Rate-Limit-Reset")
    if limit is None and available is None and reset is None:
        return None
    return RateHeaders(limit, available, over, reset / 1000.0 if reset is not None else None)


async def _headers_sent(
    session: aiohttp.ClientSession,
    trace_ctx: SimpleNamespace,
    params: aiohttp.TraceRequestHeadersSentParams,
) -> None:
    ctx = trace_ctx.trace_request_ctx
    if isinstance(ctx, dict):
        slot = ctx.get("slot")
        if isinstance(slot, Slot):
            slot.sent()


def trace_config() -> aiohttp.TraceConfig:
    """Tells the rate budget when each request actually left (install it on the session)."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_headers_sent)
    return config


class InventoryClient:
    """Sends one batch to the Inventory Status API and classifies the outcome.

    No retries here: the dispatcher owns the retry policy and the rate budget.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: Secret,
        method: str = "GET",
        timeout_seconds: float = 10.0,
        clock: Clock | None = None,
        max_retry_after: float = MAX_RETRY_AFTER,
        max_answer_bytes: int = answer_body.DEFAULT_MAX_BYTES,
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        self._session = session
        self._max_retry_after = max_retry_after
        self._max_bytes = max_answer_bytes
        self._base = base_url.rstrip("/") + AVAILABILITY_PATH
        self._key = api_key
        self._method = method
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._clock = clock or SystemClock()

    def _url(self, query: str) -> URL:
        # Built by hand and marked encoded: IDs are [A-Za-z0-9_-] already, and re-encoding a
        # 17 KB query string per request is measurable.
        return URL(f"{self._base}?apikey={quote(self._key.reveal(), safe='')}{query}", encoded=True)

    @property
    def sized(self) -> str:
        """What grows with the IDs of a request: its `url` (GET, POST_QUERY) or its `body`."""
        return "body" if self._method == "POST" else "url"

    def fixed_bytes(self, region: str | None) -> int:
        """The bytes of the sized part (see `sized`) of a request for no IDs at all; each ID
        adds its length plus one (a comma)."""
        region_q = f"&region={quote(region, safe='')}" if region else ""
        if self._method == "POST":
            return len("events=") - 1
        return len(str(self._url(f"&events={region_q}"))) - 1

    async def fetch(
        self,
        event_ids: Sequence[str],
        region: str | None = None,
        slot: Slot | None = None,
        known: Callable[[bytes], bool] | None = None,
        previous: Layout | None = None,
    ) -> InventoryAnswer:
        """One request for `event_ids` (all of one region). Raises an UpstreamError subclass.

        `slot` (from the rate budget) is marked sent when the request headers are written (see
        `trace_config`), or when the attempt ends without that having happened. With `known`,
        a 2xx body's digest is taken (`body_digest`) and given to it; when it says the body was
        seen before, the answer comes back undecoded (`repeat`, no columns); otherwise it is
        decoded against `previous` (the layout of the last answer to this request) and carries
        its own layout.
        """
        ctx = {"slot": slot} if slot is not None else None
        joined = ",".join(event_ids)
        region_q = f"&region={quote(region, safe='')}" if region else ""
        try:
            if self._method == "POST":
                resp_cm = self._session.post(
                    self._url(region_q),
                    data=f"events={joined}".encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"},
                    timeout=self._timeout,
                    allow_redirects=False,
                    trace_request_ctx=ctx,
                )
            else:
                resp_cm = self._session.request(
                    "GET" if self._method == "GET" else "POST",
                    self._url(f"&events={joined}{region_q}"),
                    timeout=self._timeout,
                    allow_redirects=False,
                    trace_request_ctx=ctx,
                )
            async with resp_cm as resp:
                status = resp.status
                headers = resp.headers
                body = await answer_body.read_capped(resp, self._max_bytes)
        except answer_body.AnswerTooLarge as exc:
            raise AnswerTooLarge(str(exc), status=status) from None
        except TimeoutError:
            raise TimeoutFailure("no answer within the timeout") from None
        except aiohttp.ClientError as exc:
            raise ConnectionFailure(
                f"connection failed: {type(exc).__name__}: {redact(str(exc))}"
            ) from None
        except asyncio.CancelledError:
            raise
        finally:
            if slot is not None:
                slot.sent()  # no-op when the trace hook saw the headers go
        return self._classify(status, headers, body, event_ids, known, previous)

    def _classify(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        event_ids: Sequence[str],
        known: Callable[[bytes], bool] | None = None,
        previous: Layout | None = None,
    ) -> InventoryAnswer:
        rate = rate_headers(headers)
        if 200 <= status < 300:
            digest = body_digest(body) if known is not None else None
            if digest is not None and known is not None and known(digest):
                answer = InventoryAnswer(list(event_ids), [], [], repeat=body)
            else:
                answer = parse_answer(body, event_ids, previous, keep_layout=known is not None)
            answer.digest = digest
            answer.rate = rate
            return answer
        snippet = redact(body[:200].decode("utf-8", "replace")).replace("\n", " ")
        told = server_wait(headers, self._clock.wall(), max_retry_after=self._max_retry_after)
        wait = None if told is None else told.seconds
        err: UpstreamError
        if status == 429:
            err = RateLimited(f"429 rate limited: {snippet}", status=status, retry_after=wait)
        elif status in (401, 403):
            err = AuthFailed(f"{status}: the API key was refused", status=status)
        elif status == 400:
            err = BadRequest(f"400: {snippet}", status=status)
        elif status in (413, 414):
            err = RequestTooLarge(f"{status}: the request is too large: {snippet}", status=status)
        elif 300 <= status < 400:
            # Never followed, wherever it points: the request URL carries the API key.
            err = Redirected(f"{status}: redirect not followed", status=status)
        elif status >= 500:
            err = ServerError(f"{status}: {snippet}", status=status, retry_after=wait)
        else:
            err = ClientError(f"{status}: {snippet}", status=status)
        err.rate = rate
        err.wait = told
        raise err

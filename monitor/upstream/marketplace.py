"""The broker marketplace's inventory client: Bulk Update (seed 003) and Create (seed 002).

    client = MarketplaceClient(session=s, base_url=url, api_token=Secret(token))
    result = await client.bulk_update([12345, 23456], {"price": "150.00"})
    result.updated, result.missing, result.outcome

What each answer means for the caller:

| answer | bulk_update | retried? |
| --- | --- | --- |
| 200 | `updated` = the IDs the marketplace returned, `missing` = the others | no |
| 404 | every ID of that request `missing`, the marketplace's message in `errors` | no |
| 400, other 4xx | that request's IDs `rejected` (none updated), its messages in `errors` | no |
| 401, 403 | raises `MarketplaceAuthError`: stop and alert | no |
| 5xx, 429, timeout, connection error | raises `MarketplaceUnavailable` | by the `RetryPolicy` |

Every request carries the same attributes for the same rule (`normalize_update`), so retrying
any part of a bulk update, or all of it, is idempotent.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final, TypeVar

import aiohttp
import orjson

from monitor.clock import Clock, SystemClock
from monitor.core.backoff import MAX_RETRY_AFTER, full_jitter, retry_after_seconds
from monitor.logs import get_logger, redact
from monitor.marketplace.validation import InvalidAttributes, normalize_update, validate_create
from monitor.poller.budget import RateBudget
from monitor.secrets import Secret
from monitor.upstream.body import AnswerTooLarge, read_capped

INVENTORY_PATH: Final = "/v9/inventory"
MAX_IDS: Final = 1000
"""Most listing IDs one Bulk Update request may carry (seed 003)."""
API: Final = "marketplace"
"""The `api` label for this client's requests in metrics."""
DEFAULT_MAX_ANSWER_BYTES: Final = 8 * 1024 * 1024
"""A bulk update of 1000 listings answers with those listings; nothing past this is read."""

_SNIPPET: Final = 200

log = get_logger(__name__)

T = TypeVar("T")


# -- results and errors -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkReport:
    """How one request of a bulk update was answered.

    `outcome`: `ok` (all updated), `partial` (some missing), `not_found` (404, none exist),
    `rejected` (400 or another 4xx, none updated) or `unconfirmed` (a 2xx whose body did not
    say which listings were updated).
    """

    ids: tuple[int, ...]
    status: int
    outcome: str
    updated: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()
    messages: tuple[str, ...] = ()


@dataclass(slots=True)
class BulkResult:
    """The combined answer to one bulk update, over all its requests (IDs in the order sent).

    `updated`: listings the marketplace says it updated. `missing`: listings it does not have
    (a partial 200 or a 404): reported, not retried. `rejected`: IDs of requests answered 400
    (or another 4xx); none of those were updated, and sending them again unchanged will not
    help. `unconfirmed`: IDs of requests answered 2xx with a body that did not say which
    listings exist (they were probably updated). `errors`: the marketplace's messages, prefixed
    with the status.
    """

    updated: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    unconfirmed: list[int] = field(default_factory=list)
    chunks: list[ChunkReport] = field(default_factory=list)

    @property
    def requests(self) -> int:
        """Requests answered (retries of one request count once)."""
        return len(self.chunks)

    @property
    def outcome(self) -> str:
        """`ok`, `partial` (some missing), `not_found` (every ID missing), `rejected` (a 4xx
        other than 404 refused some or all) or `unconfirmed`; the worst one wins."""
        if self.rejected:
            return "rejected"
        if self.unconfirmed:
            return "unconfirmed"
        if self.missing:
            return "partial" if self.updated else "not_found"
        return "ok"

    @property
    def ok(self) -> bool:
        """Every listing was updated."""
        return self.outcome == "ok"

    def add(self, report: ChunkReport) -> None:
        """Fold in the answer to one request."""
        self.chunks.append(report)
        self.updated += report.updated
        self.missing += report.missing
        if report.outcome == "rejected":
            self.rejected += report.ids
        elif report.outcome == "unconfirmed":
            self.unconfirmed += report.ids
        self.errors += [f"{report.status}: {m}" for m in report.messages]


class MarketplaceError(Exception):
    """A marketplace request that failed as a whole. Messages never contain the token.

    `outcome` is a metrics label, `retry` whether trying again later may help, `messages` the
    marketplace's own (`errors[].message`). Raised from `bulk_update`, `partial` holds what the
    requests before the failing one achieved and `pending` the IDs not yet done (the failing
    request's and the later ones').
    """

    outcome = "error"
    retry = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        messages: Sequence[str] = (),
        retry_after: float | None = None,
        outcome: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.messages = list(messages)
        self.retry_after = retry_after
        if outcome is not None:
            self.outcome = outcome
        self.partial: BulkResult | None = None
        self.pending: list[int] = []


class MarketplaceAuthError(MarketplaceError):
    """401 or 403: the token is refused. Stop sending and alert; retrying will not help."""

    outcome = "auth_failed"


class MarketplaceUnavailable(MarketplaceError):
    """5xx, 429, a timeout or a connection error: transient, retry with backoff.

    `outcome` says which (`server_error`, `rate_limited`, `timeout`, `connection_error`);
    `retry_after` is how long the marketplace asked us to wait, when it said.
    """

    outcome = "server_error"
    retry = True


class MarketplaceRejected(MarketplaceError):
    """400 or another 4xx: the input was refused and nothing was changed. Never retried.

    Raised by `create`; in a bulk update the same answer marks that request's IDs `rejected`
    in the BulkResult instead, so that the other requests still go out.
    """

    outcome = "bad_request"


# -- retry policy -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of `MarketplaceUnavailable` with exponential backoff and full jitter.

    The default retries nothing: the caller (the outbox) owns the policy. A retry waits at
    least the marketplace's `Retry-After`. `rand` and `sleep` are injectable for tests.
    """

    max_retries: int = 0
    base_seconds: float = 0.5
    max_seconds: float = 30.0
    rand: Callable[[], float] = random.random
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based)."""
        wait = full_jitter(attempt, self.base_seconds, self.max_seconds, self.rand())
        return max(wait, retry_after or 0.0)

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        """`await call()`, again after a backoff each time it raises MarketplaceUnavailable,
        at most `max_retries` times; the last error is raised."""
        attempt = 0
        while True:
            try:
                return await call()
            except MarketplaceUnavailable as exc:
                if attempt >= self.max_retries:
                    raise
                wait = self.delay(attempt, exc.retry_after)
                log.info(
                    "marketplace request retried",
                    outcome=exc.outcome,
                    status=exc.status,
                    attempt=attempt + 1,
                    wait_seconds=round(wait, 3),
                )
                attempt += 1
                await self.sleep(wait)


NO_RETRY: Final = RetryPolicy()


# -- answers ----------------------------------------------------------------------------------


def _as_id(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def returned_ids(body: bytes) -> set[int] | None:
    """The listing IDs in a 200 answer to a bulk update, or None when it does not say.

    Seed 003's example body (`{"inventory": {{...}, {...}}}`) is not JSON; accepted are a
    JSON object whose `inventory` is a list of listings or one listing, and a JSON list of
    listings. IDs may be numbers or strings of digits (the seed returns `"id": "12345"`).
    Anything else, including a listing without a readable `id`, gives None: the caller cannot
    tell which listings are missing.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    items: Any
    if isinstance(data, dict):
        inventory = data.get("inventory")
        items = [inventory] if isinstance(inventory, dict) else inventory
    else:
        items = data
    if not isinstance(items, list):
        return None
    ids: set[int] = set()
    for item in items:
        listing_id = _as_id(item.get("id")) if isinstance(item, dict) else None
        if listing_id is None:
            return None
        ids.add(listing_id)
    return ids


def error_messages(body: bytes, token: str = "") -> list[str]:
    """The marketplace's `errors[].message` (or `code`), else a short snippet; both redacted,
    `token` (the client's own, which an answer may echo) included."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    out: list[str] = []
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list):
        for err in errors:
            if isinstance(err, dict):
                text = err.get("message") or err.get("code")
                if isinstance(text, str) and text:
                    out.append(redact(text, [token]))
    if not out:
        snippet = body[:_SNIPPET].decode("utf-8", "replace").replace("\n", " ").strip()
        if snippet:
            out.append(redact(snippet, [token]))
    return out


def _unique(ids: Iterable[int]) -> list[int]:
    seen: set[int] = set()
    out: list[int] = []
    problems = []
    for i, listing_id in enumerate(ids):
        if isinstance(listing_id, bool) or not isinstance(listing_id, int):
            problems.append((f"ids[{i}]", f"must be an integer (got {listing_id!r})"))
        elif listing_id not in seen:
            seen.add(listing_id)
            out.append(listing_id)
    if problems:
        raise InvalidAttributes(problems)
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


# -- the client -------------------------------------------------------------------------------


class MarketplaceClient:
    """Bulk Update and Create against a broker marketplace (`/v9/inventory`).

    The token is sent as `Authorization: Bearer` and appears nowhere else. Every request,
    retries included, waits for `budget` when one is given; a 429's `Retry-After` pauses the
    budget. `retry` applies to each bulk-update request (not to `create`: a POST is not
    idempotent). `on_request(outcome, seconds)` is called once per request, for metrics.
    """

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        base_url: str,
        api_token: Secret,
        budget: RateBudget | None = None,
        timeout_seconds: float = 15.0,
        retry: RetryPolicy = NO_RETRY,
        on_request: Callable[[str, float], None] | None = None,
        clock: Clock | None = None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_retry_after: float = MAX_RETRY_AFTER,
    ) -> None:
        self._session = session
        self._max_bytes = max_answer_bytes
        self._max_retry_after = max_retry_after
        self._url = base_url.rstrip("/") + INVENTORY_PATH
        self._token = api_token
        self._budget = budget
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._retry = retry
        self._on_request = on_request
        self._clock = clock or SystemClock()

    async def bulk_update(
        self, ids: Sequence[int], attrs: Mapping[str, Any], *, validate: bool = True
    ) -> BulkResult:
        """Apply `attrs` to the listings `ids`, in requests of at most 1000 IDs, one at a time.

        `attrs` are validated and normalized first (`normalize_update`; InvalidAttributes
        before anything is sent); `validate=False` sends them as given. Repeated IDs are sent
        once. Returns the combined BulkResult (no request for no IDs); raises
        MarketplaceAuthError or MarketplaceUnavailable (after the retry policy gave up), with
        `partial` and `pending` set.
        """
        inventory = normalize_update(attrs) if validate else dict(attrs)
        unique = _unique(ids)
        chunks = [unique[i : i + MAX_IDS] for i in range(0, len(unique), MAX_IDS)]
        result = BulkResult()
        for n, chunk in enumerate(chunks):
            try:
                report = await self._retry.run(functools.partial(self._patch, chunk, inventory))
            except MarketplaceError as exc:
                exc.partial = result
                exc.pending = [i for rest in chunks[n:] for i in rest]
                log.warning(
                    "marketplace bulk update failed",
                    outcome=exc.outcome,
                    status=exc.status,
                    error=str(exc),
                    updated=len(result.updated),
                    pending=len(exc.pending),
                )
                raise
            result.add(report)
        if result.chunks and not result.ok:
            log.warning(
                "marketplace bulk update incomplete",
                outcome=result.outcome,
                updated=len(result.updated),
                missing=len(result.missing),
                rejected=len(result.rejected),
                unconfirmed=len(result.unconfirmed),
                errors=result.errors[:5],
            )
        return result

    async def create(
        self, inventory: Mapping[str, Any], *, validate: bool = True
    ) -> dict[str, Any]:
        """Create a listing from the `inventory` object of seed 002 (`event`, `office`,
        `ticket`, `venue`); returns the created listing (with its `id`).

        Raises InvalidAttributes before sending (unless `validate=False`), MarketplaceRejected
        (400/4xx), MarketplaceAuthError (401/403), MarketplaceUnavailable (5xx, 429, timeout,
        connection error; whether the listing was created is then unknown, though a second
        create with the same office and `remote_id` should be refused rather than duplicated),
        or MarketplaceError with outcome `malformed` (a 2xx without a listing in it).
        """
        if validate:
            problems = validate_create(inventory)
            if problems:
                raise InvalidAttributes(problems)
        body = orjson.dumps({"inventory": inventory}, default=_json_default)
        answer = await self._send("POST", body, 1)
        status = answer.status
        if 200 <= status < 300:
            try:
                data = orjson.loads(answer.body)
            except orjson.JSONDecodeError:
                data = None
            listing = data.get("inventory", data) if isinstance(data, dict) else None
            if isinstance(listing, dict):
                answer.observe("ok")
                return listing
            answer.observe("malformed")
            raise MarketplaceError(
                f"{status}: the answer holds no listing", status=status, outcome="malformed"
            )
        raise self._failure(answer)

    # -- one request -------------------------------------------------------------------------

    async def _patch(self, chunk: list[int], inventory: Mapping[str, Any]) -> ChunkReport:
        body = orjson.dumps({"ids": chunk, "inventory": inventory}, default=_json_default)
        answer = await self._send("PATCH", body, len(chunk))
        status, ids = answer.status, tuple(chunk)
        if 200 <= status < 300:
            found = returned_ids(answer.body)
            if found is None:
                answer.observe("malformed")
                return ChunkReport(
                    ids,
                    status,
                    "unconfirmed",
                    messages=("the answer does not say which listings were updated",),
                )
            updated = tuple(i for i in chunk if i in found)
            missing = tuple(i for i in chunk if i not in found)
            outcome = "partial" if missing else "ok"
            answer.observe(outcome)
            return ChunkReport(ids, status, outcome, updated, missing)
        if status == 404:
            answer.observe("not_found")
            messages = tuple(error_messages(answer.body, self._token.reveal()))
            return ChunkReport(ids, status, "not_found", (), ids, messages)
        exc = self._failure(answer)
        if isinstance(exc, MarketplaceRejected):
            return ChunkReport(ids, status, "rejected", messages=tuple(exc.messages))
        raise exc

    def _failure(self, answer: _Answer) -> MarketplaceError:
        """The error for a non-2xx answer (also counted for metrics)."""
        status = answer.status
        messages = error_messages(answer.body, self._token.reveal())
        text = "; ".join(messages) or "no details"
        exc: MarketplaceError
        if status in (401, 403):
            exc = MarketplaceAuthError(
                f"{status}: the marketplace refused the API token ({text})",
                status=status,
                messages=messages,
            )
        elif status == 429 or status >= 500:
            wait = retry_after_seconds(
                answer.headers, self._clock.wall(), max_retry_after=self._max_retry_after
            )
            exc = MarketplaceUnavailable(
                f"{status}: {text}",
                status=status,
                messages=messages,
                retry_after=wait,
                outcome="rate_limited" if status == 429 else "server_error",
            )
            if status == 429 and wait and self._budget is not None:
                self._budget.pause_for(wait)
        else:
            exc = MarketplaceRejected(
                f"{status}: {text}",
                status=status,
                messages=messages,
                outcome="bad_request" if status == 400 else "client_error",
            )
        answer.observe(exc.outcome)
        return exc

    async def _send(self, method: str, body: bytes, n_ids: int) -> _Answer:
        """Send one request within the budget: its answer, or a transient error."""
        # The slot is marked sent when the headers go out (by the session's trace hook, see
        # monitor.upstream.inventory.trace_config) or, at the latest, when the attempt ends.
        slot = await self._budget.acquire() if self._budget is not None else None
        headers = {
            "Authorization": f"Bearer {self._token.reveal()}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        started = time.monotonic()
        try:
            async with self._session.request(
                method,
                self._url,
                data=body,
                headers=headers,
                timeout=self._timeout,
                allow_redirects=False,
                trace_request_ctx={"slot": slot} if slot is not None else None,
            ) as resp:
                raw = await read_capped(resp, self._max_bytes)
                return _Answer(resp.status, resp.headers, raw, started, self._on_request)
        except AnswerTooLarge as exc:
            self._observe("too_large", started)
            raise MarketplaceUnavailable(
                f"{method} {INVENTORY_PATH} ({n_ids} IDs): answer refused: {exc}",
                outcome="too_large",
            ) from None
        except TimeoutError:
            self._observe("timeout", started)
            raise MarketplaceUnavailable(
                f"{method} {INVENTORY_PATH} ({n_ids} IDs): no answer within the timeout",
                outcome="timeout",
            ) from None
        except aiohttp.ClientError as exc:
            self._observe("connection_error", started)
            raise MarketplaceUnavailable(
                f"{method} {INVENTORY_PATH}: connection failed: "
                f"{type(exc).__name__}: {redact(str(exc), [self._token.reveal()])}",
                outcome="connection_error",
            ) from None
        finally:
            if slot is not None:
                slot.sent()

    def _observe(self, outcome: str, started: float) -> None:
        if self._on_request is not None:
            self._on_request(outcome, time.monotonic() - started)


@dataclass(frozen=True, slots=True)
class _Answer:
    """One HTTP answer, and how to report its outcome once it is classified."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    started: float
    on_request: Callable[[str, float], None] | None

    def observe(self, outcome: str) -> None:
        if self.on_request is not None:
            self.on_request(outcome, time.monotonic() - self.started)

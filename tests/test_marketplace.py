"""The marketplace (seeds 002, 003): validation tables, and the client over real HTTP against the
simulated marketplace mounted on the project's simulator."""

from __future__ import annotations

import copy
import datetime as dt
import io
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
import structlog

from monitor.marketplace import (
    InvalidAttributes,
    normalize_update,
    validate_bulk_update,
    validate_create,
)
from monitor.poller.budget import RateBudget
from monitor.secrets import Secret
from monitor.simulator import Simulator
from monitor.simulator.marketplace import MarketplaceSim, MarketRequest, bracket_path
from monitor.upstream.marketplace import (
    BulkResult,
    MarketplaceAuthError,
    MarketplaceClient,
    MarketplaceError,
    MarketplaceRejected,
    MarketplaceUnavailable,
    RetryPolicy,
    returned_ids,
)

TOKEN = "mkt-T0KEN-v3ry-s3cret-4711"
FORMATS = "Eticket, Flash_seats, Guest_list, Paperless, Physical, TM_mobile"


# -- fixtures ---------------------------------------------------------------------------------


@dataclass
class Market:
    sim: Simulator
    market: MarketplaceSim
    session: aiohttp.ClientSession

    def client(self, **kw: Any) -> MarketplaceClient:
        kw.setdefault("api_token", Secret(TOKEN))
        kw.setdefault("base_url", self.sim.url)
        return MarketplaceClient(session=self.session, **kw)

    def statuses(self) -> list[int]:
        return [r.status for r in self.market.requests]


@pytest.fixture
async def mk() -> AsyncIterator[Market]:
    """The marketplace routes on a Simulator's app, added before it starts."""
    sim = Simulator(seed=1, evolve=False)
    market = MarketplaceSim(token=TOKEN, log=sim.log, record_bodies=True)
    market.add_routes(sim.app())
    async with sim, aiohttp.ClientSession() as session:
        yield Market(sim, market, session)


class Sleeps:
    """A sleep that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def retrying(n: int, sleeps: Sleeps | None = None) -> RetryPolicy:
    return RetryPolicy(max_retries=n, rand=lambda: 0.5, sleep=sleeps or Sleeps())


# -- bulk update over HTTP --------------------------------------------------------------------


async def test_1500_linked_listings_become_two_requests(mk: Market) -> None:
    ids = list(range(100_000, 101_500))
    mk.market.seed_listings(ids, price="90.00", internal_notes="old")
    result = await mk.client().bulk_update(ids, {"price": 150, "internal_notes": "sold out"})
    assert result.updated == ids
    assert (result.missing, result.errors, result.outcome) == ([], [], "ok")
    assert result.requests == 2
    assert mk.market.requests == [
        MarketRequest("PATCH", 1000, 200, mk.market.requests[0].body),
        MarketRequest("PATCH", 500, 200, mk.market.requests[1].body),
    ]
    first = orjson.loads(mk.market.requests[0].body or b"")
    assert first["ids"] == ids[:1000]
    assert first["inventory"] == {"internal_notes": "sold out", "price": "150.00"}
    assert all(mk.market.listings[i]["price"] == "150.00" for i in ids)
    assert mk.market.listings[ids[-1]]["internal_notes"] == "sold out"
    # The simulator's shared request log sees them too, labelled.
    assert [(r.api, r.n_ids) for r in mk.sim.log] == [("marketplace", 1000), ("marketplace", 500)]


async def test_partial_success_reports_the_missing_ids_without_retrying(mk: Market) -> None:
    mk.market.seed_listings([1, 3, 5], price="90.00")
    result = await mk.client(retry=retrying(3)).bulk_update([1, 2, 3, 4, 5], {"price": "100.00"})
    assert (result.updated, result.missing) == ([1, 3, 5], [2, 4])
    assert result.outcome == "partial"
    assert not result.ok
    assert mk.statuses() == [200]
    assert set(mk.market.listings) == {1, 3, 5}
    assert mk.market.listings[3]["price"] == "100.00"


async def test_404_when_none_exist_is_reported_with_the_message_and_not_retried(
    mk: Market,
) -> None:
    result = await mk.client(retry=retrying(3)).bulk_update([7, 8], {"price": "100.00"})
    assert (result.updated, result.missing) == ([], [7, 8])
    assert result.outcome == "not_found"
    assert result.errors == ["404: Could not find record."]
    assert mk.statuses() == [404]


async def test_404_in_one_request_and_success_in_another_combine(mk: Market) -> None:
    ids = list(range(1, 1201))
    mk.market.seed_listings(ids[:10])
    result = await mk.client().bulk_update(ids, {"locked": True})
    assert result.updated == ids[:10]
    assert result.missing == ids[10:]
    assert result.outcome == "partial"
    assert result.errors == ["404: Could not find record."]
    assert [c.outcome for c in result.chunks] == ["partial", "not_found"]
    assert mk.statuses() == [200, 404]


async def test_400_is_reported_with_the_marketplace_message_and_not_retried(mk: Market) -> None:
    mk.market.seed_listings([1, 2], price="90.00")
    client = mk.client(retry=retrying(3))
    # validate=False lets the marketplace itself judge the body.
    result = await client.bulk_update([1, 2], {"price": "-5.00"}, validate=False)
    assert result.outcome == "rejected"
    assert result.rejected == [1, 2]
    assert result.updated == []
    assert result.errors == ["400: inventory[price] must not be negative"]
    assert mk.statuses() == [400]
    assert mk.market.listings[1]["price"] == "90.00"


async def test_a_400_to_one_request_leaves_the_others_going(mk: Market) -> None:
    ids = list(range(1, 1501))
    mk.market.seed_listings(ids, price="90.00")
    mk.market.fail_next(1, status=400, message="ids[3] must be an integer")
    result = await mk.client(retry=retrying(3)).bulk_update(ids, {"price": "100.00"})
    assert result.outcome == "rejected"
    assert result.rejected == ids[:1000]
    assert result.updated == ids[1000:]
    assert result.errors == ["400: ids[3] must be an integer"]
    assert mk.statuses() == [400, 200]
    assert mk.market.listings[1]["price"] == "90.00"
    assert mk.market.listings[1500]["price"] == "100.00"


async def test_500_is_transient(mk: Market) -> None:
    mk.market.seed_listings([1, 2], price="90.00")
    mk.market.fail_next(1, status=500)
    with pytest.raises(MarketplaceUnavailable) as info:
        await mk.client().bulk_update([1, 2], {"price": "100.00"})
    exc = info.value
    assert (exc.retry, exc.outcome, exc.status) == (True, "server_error", 500)
    assert exc.messages == ["A generic internal service error occurred."]
    assert exc.pending == [1, 2]
    assert exc.partial == BulkResult()
    assert mk.market.listings[1]["price"] == "90.00"


async def test_the_retry_policy_retries_500_with_the_same_bytes(mk: Market) -> None:
    mk.market.seed_listings([1, 2], price="90.00")
    mk.market.fail_next(2, status=503)
    sleeps = Sleeps()
    client = mk.client(retry=retrying(3, sleeps))
    result = await client.bulk_update([1, 2], {"price": 100, "format": "eticket"})
    assert result.ok
    assert mk.statuses() == [503, 503, 200]
    bodies = {r.body for r in mk.market.requests}
    assert len(bodies) == 1
    assert bodies == {b'{"ids":[1,2],"inventory":{"format":"Eticket","price":"100.00"}}'}
    # full jitter with rand=0.5 and base 0.5: 0.25, then 0.5
    assert sleeps.waits == [0.25, 0.5]


async def test_retries_give_up_after_max_retries(mk: Market) -> None:
    mk.market.seed_listings([1])
    mk.market.fail_next(5, status=502)
    with pytest.raises(MarketplaceUnavailable):
        await mk.client(retry=retrying(2)).bulk_update([1], {"price": "1.00"})
    assert mk.statuses() == [502, 502, 502]


async def test_a_failure_in_the_second_request_carries_what_the_first_achieved(
    mk: Market,
) -> None:
    ids = list(range(1, 1501))
    mk.market.seed_listings(ids, price="1.00")
    original = mk.market.listings[1001].copy()

    def hook(outcome: str, seconds: float) -> None:
        if outcome == "ok":  # the first request went through: fail the second
            mk.market.fail_next(1, status=500)

    client = mk.client(on_request=hook)
    with pytest.raises(MarketplaceUnavailable) as info:
        await client.bulk_update(ids, {"price": "2.00"})
    assert info.value.partial is not None
    assert info.value.partial.updated == ids[:1000]
    assert info.value.pending == ids[1000:]
    assert mk.market.listings[1001] == original
    assert mk.statuses() == [200, 500]


async def test_429_is_transient_and_its_retry_after_is_honoured(mk: Market) -> None:
    mk.market.seed_listings([1])
    mk.market.fail_next(1, status=429, retry_after=0.3)
    sleeps = Sleeps()
    budget = RateBudget(100, 1)
    client = mk.client(retry=retrying(1, sleeps), budget=budget)
    started = time.monotonic()
    result = await client.bulk_update([1], {"price": "1.00"})
    assert result.ok
    assert sleeps.waits == [0.3]  # the policy waits at least Retry-After...
    assert time.monotonic() - started >= 0.25  # ...and so does the shared budget
    assert mk.statuses() == [429, 200]


class CountingBudget(RateBudget):
    """The real budget, counting its turns."""

    def __init__(self) -> None:
        super().__init__(100, 1)
        self.turns = 0

    async def acquire(self) -> Any:
        self.turns += 1
        return await super().acquire()


async def test_every_request_and_retry_takes_a_turn_of_the_budget(mk: Market) -> None:
    ids = list(range(1, 1501))
    mk.market.seed_listings(ids)
    mk.market.fail_next(1, status=500)
    budget = CountingBudget()
    result = await mk.client(budget=budget, retry=retrying(1)).bulk_update(ids, {"locked": True})
    assert result.ok
    assert mk.statuses() == [500, 200, 200]
    assert budget.turns == 3


async def test_a_timeout_is_transient(mk: Market) -> None:
    mk.market.seed_listings([1])
    mk.market.stall_next(1, seconds=5)
    with pytest.raises(MarketplaceUnavailable) as info:
        await mk.client(timeout_seconds=0.2).bulk_update([1], {"price": "1.00"})
    assert (info.value.outcome, info.value.retry) == ("timeout", True)


async def test_a_connection_error_is_transient(mk: Market) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = mk.client(base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(MarketplaceUnavailable) as info:
        await client.bulk_update([1], {"price": "1.00"})
    assert info.value.outcome == "connection_error"


@pytest.mark.parametrize("how", ["wrong token", "fault"])
async def test_401_raises_the_auth_error_and_is_not_retried(mk: Market, how: str) -> None:
    mk.market.seed_listings([1], price="90.00")
    if how == "fault":
        mk.market.fail_next(1, status=401)
        token = TOKEN
    else:
        token = "not-the-token"
    client = mk.client(api_token=Secret(token), retry=retrying(3))
    with pytest.raises(MarketplaceAuthError) as info:
        await client.bulk_update([1], {"price": "1.00"})
    assert (info.value.status, info.value.retry, info.value.outcome) == (401, False, "auth_failed")
    assert "Authentication failed" in str(info.value)
    assert mk.statuses() == [401]
    assert mk.market.listings[1]["price"] == "90.00"


async def test_invalid_attributes_are_refused_before_sending(mk: Market) -> None:
    with pytest.raises(InvalidAttributes) as info:
        await mk.client().bulk_update([1], {"price": "abc", "quantity": 2})
    assert [p for p, _ in info.value.problems] == ["price", "quantity"]
    with pytest.raises(InvalidAttributes) as info:
        await mk.client().bulk_update([1, "2"], {"price": "1.00"})  # type: ignore[list-item]
    assert info.value.problems == [("ids[1]", "must be an integer (got '2')")]
    assert mk.market.requests == []


async def test_no_ids_sends_nothing_and_repeats_are_sent_once(mk: Market) -> None:
    result = await mk.client().bulk_update([], {"price": "1.00"})
    assert (result.ok, result.requests) == (True, 0)
    mk.market.seed_listings([4, 5])
    result = await mk.client().bulk_update([5, 4, 5], {"price": "1.00"})
    assert result.updated == [5, 4]
    assert mk.market.requests[0].n_ids == 2


async def test_on_request_sees_every_outcome(mk: Market) -> None:
    seen: list[str] = []
    client = mk.client(on_request=lambda outcome, seconds: seen.append(outcome))
    mk.market.seed_listings([1])
    mk.market.fail_next(1, status=500)
    with pytest.raises(MarketplaceUnavailable):
        await client.bulk_update([1], {"price": "1.00"})
    await client.bulk_update([1, 2], {"price": "1.00"})
    await client.bulk_update([2], {"price": "1.00"})
    assert seen == ["server_error", "partial", "not_found"]


# -- create -----------------------------------------------------------------------------------


def _create_body() -> dict[str, Any]:
    """Seed 002's request example."""
    return {
        "event": {
            "id": "12345678",
            "name": "Superbowl LIX",
            "occurs_at_date": "2021-06-08",
            "occurs_at_time": "18:19:20",
            "tbd": False,
            "type": "EVENT",
        },
        "office": {"id": "12345678", "name": "Foobar"},
        "ticket": {
            "account_email": "foo@bar.com",
            "cost": "123.45",
            "discount": "40.71",
            "eticket": False,
            "external_notes": "These are some notes...",
            "face_value": "123.45",
            "format": "ETICKET",
            "in_hand": False,
            "in_hand_on": "2021-06-08",
            "instant_delivery": False,
            "internal_notes": "These are some notes...",
            "locked": False,
            "price": "123.45",
            "quantity": 1,
            "remote_id": "12345678",
            "row": "AA",
            "seats": [
                {
                    "seat": 14,
                    "barcode": "ABCD1234",
                    "primary_ticket_id": "12345678",
                    "verification_id": "12345678",
                }
            ],
            "section": "100",
            "speculative": False,
            "split_type": "DEFAULT",
            "split_override": [2, 5, 10],
            "taxed_cost": "123.45",
            "type": "EVENT",
            "view_type": "Full",
            "wheelchair_accessible": False,
        },
        "venue": {"id": "12345678", "name": "Foobar"},
    }


async def test_create_returns_the_listing_and_keeps_it(mk: Market) -> None:
    listing = await mk.client().create(_create_body())
    listing_id = int(listing["id"])
    assert listing["price"] == "123.45"
    assert mk.market.listings[listing_id]["row"] == "AA"
    assert mk.statuses() == [201]
    # The created listing can then be bulk-updated.
    result = await mk.client().bulk_update([listing_id], {"price": "99.00"})
    assert result.updated == [listing_id]
    assert mk.market.listings[listing_id]["price"] == "99.00"


async def test_create_refused_by_the_marketplace_raises_rejected(mk: Market) -> None:
    client = mk.client(retry=retrying(3))
    await client.create(_create_body())
    with pytest.raises(MarketplaceRejected) as info:
        await client.create(_create_body())
    assert info.value.messages == ["inventory[ticket][remote_id] has already been taken"]
    body = _create_body()
    body["ticket"]["account_email"] = "invalid email"
    with pytest.raises(MarketplaceRejected) as info:
        await client.create(body, validate=False)
    assert info.value.messages == [
        "inventory[ticket][account_email] is in invalid format: must be an email address"
    ]
    assert mk.statuses() == [201, 400, 400]


async def test_create_validates_before_sending(mk: Market) -> None:
    body = _create_body()
    del body["ticket"]["price"]
    with pytest.raises(InvalidAttributes) as info:
        await mk.client().create(body)
    assert info.value.problems == [("ticket.price", "is required")]
    assert mk.market.requests == []


async def test_create_errors_are_classified(mk: Market) -> None:
    mk.market.fail_next(1, status=500)
    with pytest.raises(MarketplaceUnavailable):
        await mk.client(retry=retrying(3)).create(_create_body())
    with pytest.raises(MarketplaceAuthError):
        await mk.client(api_token=Secret("wrong-token")).create(_create_body())
    assert mk.statuses() == [500, 401]  # a POST is never retried by the client


# -- the token stays secret -------------------------------------------------------------------


async def test_the_token_never_appears_in_logs_or_errors(
    mk: Market, log_stream: io.StringIO
) -> None:
    mk.market.seed_listings([1])
    errors: list[BaseException] = []
    with structlog.testing.capture_logs() as captured:
        for status in (500, 401, 429, 400):
            mk.market.fail_next(1, status=status, message=f"echo Bearer {TOKEN}")
            try:
                result = await mk.client(retry=retrying(1)).bulk_update([1], {"price": "1.00"})
            except MarketplaceError as exc:
                errors.append(exc)
            else:
                assert all(TOKEN not in e for e in result.errors)
        mk.market.fail_next(1, status=400, message=f"token {TOKEN}")
        result = await mk.client().bulk_update([1], {"price": "1.00"})
        assert result.errors and all(TOKEN not in e for e in result.errors)
        mk.market.stall_next(1, seconds=5)
        try:
            await mk.client(timeout_seconds=0.1).bulk_update([1], {"price": "1.00"})
        except MarketplaceError as exc:
            errors.append(exc)
    assert len(errors) == 2  # 401 and the timeout; the rest were retried or reported
    for error in errors:
        assert TOKEN not in str(error)
        assert TOKEN not in repr(error.args)
        assert all(TOKEN not in m for m in getattr(error, "messages", []))
    # Before rendering (no redactor involved) and after.
    assert captured
    assert TOKEN not in repr(captured)
    assert TOKEN not in repr(Secret(TOKEN))


async def test_failures_are_logged_without_the_token(mk: Market, log_stream: io.StringIO) -> None:
    mk.market.fail_next(1, status=401)
    with pytest.raises(MarketplaceAuthError):
        await mk.client().bulk_update([1], {"price": "1.00"})
    text = log_stream.getvalue()
    assert "marketplace bulk update failed" in text
    assert TOKEN not in text


# -- the simulated marketplace over raw HTTP --------------------------------------------------


async def _patch(mk: Market, body: Any, token: str | None = TOKEN) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    async with mk.session.patch(f"{mk.sim.url}/v9/inventory", data=raw, headers=headers) as r:
        return r.status, await r.json()


async def test_sim_requires_the_bearer_token(mk: Market) -> None:
    body = {"ids": [1], "inventory": {"price": "1.00"}}
    for token in (None, "other"):
        status, answer = await _patch(mk, body, token)
        assert status == 401
        assert answer["errors"][0]["code"] == "unauthorized"


async def test_sim_seed_400_example_updates_none(mk: Market) -> None:
    mk.market.seed_listings([12345, 23456], price="90.00")
    status, answer = await _patch(
        mk, {"ids": ["foo", 12345, 23456], "inventory": {"price": "100.00"}}
    )
    assert status == 400
    assert answer == {
        "errors": [{"code": "invalid_params", "message": "ids[0] must be an integer"}]
    }
    assert mk.market.listings[12345]["price"] == "90.00"


async def test_sim_400_lists_every_problem(mk: Market) -> None:
    mk.market.seed_listings([1])
    status, answer = await _patch(
        mk,
        {
            "ids": list(range(1, 1002)),
            "inventory": {"price": "-1", "split_override": [1, 0], "seats": []},
        },
    )
    assert status == 400
    assert [e["message"] for e in answer["errors"]] == [
        "ids must hold at most 1000 ids (got 1001)",
        "inventory[price] must not be negative",
        "inventory[split_override][1] must be a positive integer (got 0)",
        "inventory[seats] cannot be changed by a bulk update: seat numbers, barcodes and other "
        "seat items are unique; use Inventory / Update on each listing",
    ]
    for body in (b"not json", {"ids": [1]}, {"inventory": {"price": "1.00"}}, [1]):
        status, answer = await _patch(mk, body)
        assert status == 400, body
        assert answer["errors"][0]["code"] == "invalid_params"


async def test_sim_answers_like_seed_003(mk: Market) -> None:
    mk.market.seed_listings([23456, 45678], price="90.00", row="A")
    ids = [12345, 23456, 34567, 45678, 56789]
    status, answer = await _patch(mk, {"ids": ids, "inventory": {"price": "100.00"}})
    assert status == 200
    assert answer == {
        "inventory": [
            {"id": "23456", "price": "100.00", "row": "A"},
            {"id": "45678", "price": "100.00", "row": "A"},
        ]
    }
    status, answer = await _patch(mk, {"ids": [12345], "inventory": {"price": "100.00"}})
    assert (status, answer) == (
        404,
        {"errors": [{"code": "not_found", "message": "Could not find record."}]},
    )


async def test_sim_control_endpoints(mk: Market) -> None:
    mk.market.seed_listings([1], price="1.00")
    url = f"{mk.sim.url}/_sim/marketplace"
    async with mk.session.post(f"{url}/faults", json={"status": 503, "count": 1}) as r:
        assert r.status == 200
    async with mk.session.post(f"{url}/faults", json={"status": 200}) as r:
        assert r.status == 400
    status, _ = await _patch(mk, {"ids": [1], "inventory": {"price": "2.00"}})
    assert status == 503
    async with mk.session.get(f"{url}/listings") as r:
        assert await r.json() == {"1": {"price": "1.00"}}
    async with mk.session.get(f"{url}/requests") as r:
        assert await r.json() == [{"method": "PATCH", "n_ids": 1, "status": 503}]


def test_bracket_path() -> None:
    assert bracket_path("price") == "inventory[price]"
    assert bracket_path("ticket.seats[0].seat") == "inventory[ticket][seats][0][seat]"
    assert bracket_path("") == "inventory"


@pytest.mark.parametrize(
    ("body", "ids"),
    [
        (b'{"inventory": [{"id": "1"}, {"id": 2}]}', {1, 2}),
        (b'{"inventory": {"id": "12345", "price": "100.00"}}', {12345}),
        (b'[{"id": 3}]', {3}),
        (b'{"inventory": []}', set()),
        (b'{ "inventory": { { "id": "1" }, { "id": "2" } } }', None),  # seed 003, verbatim
        (b'{"inventory": [{"price": "1.00"}]}', None),
        (b'{"inventory": [{"id": true}]}', None),
        (b'{"data": []}', None),
        (b'"ok"', None),
    ],
)
def test_returned_ids(body: bytes, ids: set[int] | None) -> None:
    assert returned_ids(body) == ids


# -- validation tables ------------------------------------------------------------------------

BULK_BAD: list[tuple[Any, list[tuple[str, str]]]] = [
    ({"format": "Etickets"}, [("format", f"must be one of {FORMATS} (got 'Etickets')")]),
    (
        {"split_type": "SOMETIMES"},
        [
            (
                "split_type",
                "must be one of DEFAULT, ANY, NEVERLEAVEONE, NONE, CUSTOM (got 'SOMETIMES')",
            )
        ],
    ),
    ({"type": "CONCERT"}, [("type", "must be one of EVENT, PARKING (got 'CONCERT')")]),
    (
        {"view_type": "Partial"},
        [
            (
                "view_type",
                "must be one of Full, Obstructed, Possibly Obstructed, Partially Obstructed "
                "(got 'Partial')",
            )
        ],
    ),
    ({"format": 1}, [("format", f"must be one of {FORMATS} (got 1)")]),
    ({"price": "1000000.01"}, [("price", "must be at most 1,000,000.00")]),
    ({"price": 1_000_001}, [("price", "must be at most 1,000,000.00")]),
    ({"price": -1}, [("price", "must not be negative")]),
    ({"price": "-0.01"}, [("price", "must not be negative")]),
    ({"price": "abc"}, [("price", 'must be a decimal such as "150.00"')]),
    ({"price": "1e3"}, [("price", 'must be a decimal such as "150.00"')]),
    ({"price": " 150.00"}, [("price", 'must be a decimal such as "150.00"')]),
    ({"price": True}, [("price", 'must be a decimal such as "150.00"')]),
    ({"price": float("nan")}, [("price", 'must be a decimal such as "150.00"')]),
    ({"price": float("inf")}, [("price", 'must be a decimal such as "150.00"')]),
    ({"price": "150.001"}, [("price", "must have at most 2 decimal places")]),
    ({"price": 0.1 + 0.2}, [("price", "must have at most 2 decimal places")]),
    ({"discount": "100.01"}, [("discount", "must be at most 100.00")]),
    ({"discount": -0.5}, [("discount", "must not be negative")]),
    ({"cost": "-1"}, [("cost", "must not be negative")]),
    ({"face_value": [1]}, [("face_value", 'must be a decimal such as "150.00"')]),
    ({"taxed_cost": "1.234"}, [("taxed_cost", "must have at most 2 decimal places")]),
    (
        {"split_type": "CUSTOM"},
        [("split_override", "is required when split_type is CUSTOM")],
    ),
    (
        {"split_type": "custom"},
        [("split_override", "is required when split_type is CUSTOM")],
    ),
    (
        {"split_type": "CUSTOM", "split_override": [2, 0, "3"]},
        [
            ("split_override[1]", "must be a positive integer (got 0)"),
            ("split_override[2]", "must be a positive integer (got '3')"),
        ],
    ),
    ({"split_override": "2,4"}, [("split_override", "must be an array of positive integers")]),
    ({"split_override": [True]}, [("split_override[0]", "must be a positive integer (got True)")]),
    ({"split_override": []}, [("split_override", "must not be empty")]),
    ({"in_hand": False}, [("in_hand_on", "is required when in_hand is false")]),
    (
        {"in_hand_on": "2026-02-30"},
        [("in_hand_on", "must be a date YYYY-MM-DD (got '2026-02-30')")],
    ),
    (
        {"in_hand_on": "06/08/2021"},
        [("in_hand_on", "must be a date YYYY-MM-DD (got '06/08/2021')")],
    ),
    (
        {"in_hand_on": dt.datetime(2026, 1, 1, 12, 0)},
        [("in_hand_on", "must be a date YYYY-MM-DD, not a date and time")],
    ),
    ({"in_hand_on": 20260101}, [("in_hand_on", "must be a date YYYY-MM-DD (got 20260101)")]),
    ({"internal_notes": ""}, [("internal_notes", "must not be blank")]),
    ({"row": "   "}, [("row", "must not be blank")]),
    ({"section": None}, [("section", "must not be blank")]),
    ({"price": ""}, [("price", "must not be blank")]),
    ({"format": " "}, [("format", "must not be blank")]),
    ({"section": 100}, [("section", "must be a string (got int; quote it)")]),
    ({"colour": "red"}, [("colour", "unknown attribute")]),
    ({"prise": "1.00"}, [("prise", "unknown attribute (did you mean 'price'?)")]),
    (
        {"remote_id": "x"},
        [
            (
                "remote_id",
                "cannot be changed by a bulk update: it must be unique across all inventory; "
                "use Inventory / Update on each listing",
            )
        ],
    ),
    (
        {"quantity": 2},
        [
            (
                "quantity",
                "cannot be changed by a bulk update: it adjusts the seats underneath a group, "
                "and the marketplace cannot tell which seats to remove or has too little "
                "information to add more; use Inventory / Update on each listing",
            )
        ],
    ),
    (
        {"seats": [{"seat": 1}]},
        [
            (
                "seats",
                "cannot be changed by a bulk update: seat numbers, barcodes and other seat items "
                "are unique; use Inventory / Update on each listing",
            )
        ],
    ),
    (
        {"account_email": "invalid email"},
        [("account_email", "is in invalid format: must be an email address")],
    ),
    (
        {"account_email": "a@b"},
        [("account_email", "is in invalid format: must be an email address")],
    ),
    ({"eticket": "true"}, [("eticket", "must be true or false (got 'true')")]),
    ({"locked": 1}, [("locked", "must be true or false (got 1)")]),
    (
        {"in_hand": "no", "in_hand_on": "2026-01-01"},
        [("in_hand", "must be true or false (got 'no')")],
    ),
    ({"speculative": 0}, [("speculative", "must be true or false (got 0)")]),
    ({"instant_delivery": None}, [("instant_delivery", "must not be blank")]),
    (
        {"wheelchair_accessible": "yes"},
        [("wheelchair_accessible", "must be true or false (got 'yes')")],
    ),
    ({}, [("", "must set at least one attribute")]),
    (["price"], [("", "must be an object")]),
    (
        {"price": "-1", "quantity": 1, "in_hand": False},
        [
            ("price", "must not be negative"),
            (
                "quantity",
                "cannot be changed by a bulk update: it adjusts the seats underneath a "
                "group, and the marketplace cannot tell which seats to remove or has too little "
                "information to add more; use Inventory / Update on each listing",
            ),
            ("in_hand_on", "is required when in_hand is false"),
        ],
    ),
]


@pytest.mark.parametrize(("attrs", "problems"), BULK_BAD, ids=[str(a)[:60] for a, _ in BULK_BAD])
def test_bulk_update_validation_rejects(attrs: Any, problems: list[tuple[str, str]]) -> None:
    assert validate_bulk_update(attrs) == problems
    with pytest.raises(InvalidAttributes) as info:
        normalize_update(attrs)
    assert info.value.problems == problems


BULK_GOOD: list[dict[str, Any]] = [
    {"price": "100.00"},  # seed 003's example: no in_hand, no in_hand_on
    {"price": 0},
    {"price": 1_000_000},
    {"price": "1000000.00"},
    {"discount": 100},
    {"discount": "0.00"},
    {"in_hand": True},
    {"in_hand_on": "2026-12-01"},
    {"in_hand": False, "in_hand_on": dt.date(2026, 12, 1)},
    {"split_type": "CUSTOM", "split_override": [2, 4]},
    {"split_type": "DEFAULT", "split_override": [2, 5, 10]},
    {"format": "ETICKET"},
    {"format": "tm_mobile"},
    {"view_type": "possibly obstructed"},
    {"locked": True},
    {"account_email": "foo@bar.com"},
    {"internal_notes": "primary sold out", "external_notes": " spaced "},
    {"type": "parking", "row": "AA", "section": "100"},
    {
        "cost": 1,
        "face_value": "2.5",
        "taxed_cost": 3.25,
        "eticket": False,
        "instant_delivery": True,
        "speculative": False,
        "wheelchair_accessible": True,
    },
]


@pytest.mark.parametrize("attrs", BULK_GOOD, ids=[str(a)[:60] for a in BULK_GOOD])
def test_bulk_update_validation_accepts(attrs: dict[str, Any]) -> None:
    assert validate_bulk_update(attrs) == []


def test_normalize_update_gives_the_same_bytes_for_the_same_rule() -> None:
    attrs = {
        "view_type": "FULL",
        "price": 150,
        "format": "eticket",
        "discount": 12.5,
        "in_hand_on": dt.date(2026, 12, 1),
        "in_hand": False,
        "split_type": "custom",
        "split_override": (2, 4),
        "face_value": "99.9",
    }
    expected = {
        "discount": "12.50",
        "face_value": "99.90",
        "format": "Eticket",
        "in_hand": False,
        "in_hand_on": "2026-12-01",
        "price": "150.00",
        "split_override": [2, 4],
        "split_type": "CUSTOM",
        "view_type": "Full",
    }
    out = normalize_update(attrs)
    assert out == expected
    assert list(out) == sorted(out)
    shuffled = dict(reversed(list(attrs.items())))
    assert orjson.dumps(normalize_update(shuffled)) == orjson.dumps(out)


def test_invalid_attributes_message_names_every_problem() -> None:
    exc = InvalidAttributes([("price", "must not be negative"), ("", "must be an object")])
    assert str(exc) == "price: must not be negative; must be an object"
    assert isinstance(exc, ValueError)


_DELETE = object()


def _mutated(path: str, value: Any = _DELETE, **more: Any) -> dict[str, Any]:
    """Seed 002's example with `path` (dotted) set to `value`, or deleted when no value is
    given; `more` sets further ticket attributes."""
    body = copy.deepcopy(_create_body())
    *parents, last = path.split(".")
    node: Any = body
    for part in parents:
        node = node[part]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    if more:
        body["ticket"].update(more)
    return body


CREATE_BAD: list[tuple[dict[str, Any], list[tuple[str, str]]]] = [
    *[
        (_mutated(f"ticket.{key}"), [(f"ticket.{key}", "is required")])
        for key in ("format", "price", "quantity", "remote_id", "row", "section", "type")
    ],
    *[(_mutated(part), [(part, "is required")]) for part in ("event", "office", "ticket", "venue")],
    (_mutated("event.id"), [("event.id", "is required")]),
    (_mutated("office.id"), [("office.id", "is required")]),
    (_mutated("venue.name"), [("venue.name", "is required")]),
    (_mutated("venue", "Foobar"), [("venue", "must be an object")]),
    (
        _mutated("ticket.in_hand_on"),
        [("ticket.in_hand_on", "is required when in_hand is false or missing")],
    ),
    (
        _mutated("ticket.account_email", "invalid email"),
        [("ticket.account_email", "is in invalid format: must be an email address")],
    ),
    (_mutated("ticket.price", "1000000.01"), [("ticket.price", "must be at most 1,000,000.00")]),
    (_mutated("ticket.discount", "101"), [("ticket.discount", "must be at most 100.00")]),
    (
        _mutated("ticket.quantity", 2),
        [("ticket.quantity", "must match the number of seats (1)")],
    ),
    (
        _mutated("ticket.quantity", 0),
        [("ticket.quantity", "must be an integer of at least 1 (got 0)")],
    ),
    (_mutated("ticket.seats", []), [("ticket.seats", "must not be empty")]),
    (
        _mutated("ticket.seats", [{"barcode": "X"}]),
        [("ticket.seats[0].seat", "is required")],
    ),
    (
        _mutated("ticket.seats", [{"seat": 14, "row": "A"}]),
        [("ticket.seats[0].row", "unknown attribute")],
    ),
    (
        _mutated("ticket.seats", [{"seat": 14}, {"seat": 14}], quantity=2),
        [("ticket.seats[1].seat", "seat 14 is listed twice")],
    ),
    (
        _mutated("ticket.split_override", split_type="CUSTOM"),
        [("ticket.split_override", "is required when split_type is CUSTOM")],
    ),
    (
        _mutated("ticket.remote_id", "abc"),
        [("ticket.remote_id", "must be a positive integer ID (got 'abc')")],
    ),
    (
        _mutated("ticket.remote_id", 0),
        [("ticket.remote_id", "must be a positive integer ID (got 0)")],
    ),
    (_mutated("venue.id", "x"), [("venue.id", "must be a positive integer ID (got 'x')")]),
    (
        _mutated("event.occurs_at_time", "6pm"),
        [("event.occurs_at_time", "must be a time HH:MM:SS (got '6pm')")],
    ),
    (
        _mutated("event.occurs_at_date", "2021-13-01"),
        [("event.occurs_at_date", "must be a date YYYY-MM-DD (got '2021-13-01')")],
    ),
    (
        _mutated("event.type", "GAME"),
        [("event.type", "must be one of EVENT, PARKING (got 'GAME')")],
    ),
    (_mutated("event.tbd", "no"), [("event.tbd", "must be true or false (got 'no')")]),
    (_mutated("event.name", ""), [("event.name", "must not be blank")]),
    (_mutated("ticket.row", " "), [("ticket.row", "must not be blank")]),
    (
        _mutated("ticket.format", "PDF"),
        [("ticket.format", f"must be one of {FORMATS} (got 'PDF')")],
    ),
    (_mutated("ticket.colour", "red"), [("ticket.colour", "unknown attribute")]),
    (_mutated("tickets", {}), [("tickets", "unknown attribute (did you mean 'ticket'?)")]),
]


@pytest.mark.parametrize(
    ("inventory", "problems"), CREATE_BAD, ids=[p[0][0] + ":" + p[0][1][:30] for _, p in CREATE_BAD]
)
def test_create_validation_rejects(
    inventory: dict[str, Any], problems: list[tuple[str, str]]
) -> None:
    assert validate_create(inventory) == problems


def test_create_validation_accepts_the_seed_example_and_variants() -> None:
    assert validate_create(_create_body()) == []
    in_hand = _mutated("ticket.in_hand", True)
    del in_hand["ticket"]["in_hand_on"]
    assert validate_create(in_hand) == []
    minimal = {
        "event": {"id": 1},
        "office": {"id": 2},
        "ticket": {
            "format": "Physical",
            "price": 10,
            "quantity": 2,
            "remote_id": 3,
            "row": "A",
            "section": "1",
            "type": "EVENT",
            "in_hand": True,
        },
        "venue": {"name": "Arena"},
    }
    assert validate_create(minimal) == []
    assert validate_create("x") == [("", "must be an object")]  # type: ignore[arg-type]

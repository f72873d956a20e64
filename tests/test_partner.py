"""The Partner API client against the simulator over real HTTP: tokens (reuse, renewal, 401
retry, single flight), event details, errors, the rate budget, secrets kept out of logs; and the
simulated Partner API itself."""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import dataclasses
import io
import logging
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest

from monitor.clock import ManualClock
from monitor.logs import get_logger
from monitor.poller.budget import RateBudget
from monitor.secrets import Secret
from monitor.simulator import (
    PATH,
    VENUES,
    RequestRecord,
    Simulator,
    add_arguments,
    max_in_window,
)
from monitor.upstream.inventory import trace_config
from monitor.upstream.partner import (
    EventDetails,
    EventNotFound,
    PartnerAuthError,
    PartnerClient,
    PartnerError,
    PartnerRequestError,
    PartnerUnavailable,
    parse_event_details,
)

KEY = "PARTNER-KEY-GkB8Z037ZfqbLCNt"
SECRET = "PARTNER-SECRET-MzK3lcZuLpvGhD9Z"
EVENT = "3F004CBB88958BF9"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # As in the daemon: the budget learns when requests leave, and no silent resend.
    async with aiohttp.ClientSession(trace_configs=[trace_config()]) as s:
        s._retry_connection = False
        yield s


ClientFactory = Callable[..., PartnerClient]


@pytest.fixture
async def make_client(session: aiohttp.ClientSession) -> AsyncIterator[ClientFactory]:
    made: list[PartnerClient] = []

    def _make(sim: Simulator, **kw: Any) -> PartnerClient:
        if "base_url" not in kw:
            kw["base_url"] = sim.partner_url
        kw.setdefault("api_key", Secret(KEY))
        kw.setdefault("client_secret", Secret(SECRET))
        kw.setdefault("timeout_seconds", 2.0)
        # The default budget (3600 an hour) spaces requests a second apart.
        kw.setdefault("budget", RateBudget(1000, 1.0))
        client = PartnerClient(session=session, **kw)
        made.append(client)
        return client

    yield _make
    for client in made:
        await client.close()


def partner_log(sim: Simulator) -> list[RequestRecord]:
    return [r for r in sim.log if r.api == "partner"]


def token_log(sim: Simulator) -> list[RequestRecord]:
    return [r for r in partner_log(sim) if (r.path or "").endswith("/oauth/accesstoken")]


def details_log(sim: Simulator) -> list[RequestRecord]:
    return [r for r in partner_log(sim) if "/event/" in (r.path or "")]


# -- parse_event_details ------------------------------------------------------------------

# The shape of seed 004's example document (trimmed of ticket and price lists).
SEED_DOC: dict[str, Any] = {
    "api_transactable": True,
    "event": {
        "tickets": [{"description": "GPAS1", "id": "000002040006"}],
        "artists": [{"id": 916285, "name": "Seattle Sounders FC", "rank": 1}],
        "currency_code": "USD",
        "eventdate": {"format": "datetime", "value": "2015-08-21T02:00:00Z"},
        "id": "3F004CBB88958BF9",
        "name": "Seattle Sounders FC vs. San Jose Earthquakes",
        "offsale": {"format": "datetime", "value": "2015-08-21T00:00:00Z"},
        "onsale": {"format": "datetime", "value": "2014-06-25T01:56:29Z"},
        "url": "http://ticketmaster.com/event/3F004CBB88958BF9",
        "venue": {
            "id": 516191,
            "location": {
                "address": {
                    "city": "Seattle",
                    "country": {"abbrev": "US"},
                    "region": {"abbrev": "WA"},
                },
                "time_zone": "America/Los_Angeles",
            },
            "markets": [{"id": 42, "name": "Greater Seattle Area"}],
            "name": "CenturyLink Field",
        },
    },
}
SEED_DETAILS = EventDetails(
    event_id=EVENT,
    name="Seattle Sounders FC vs. San Jose Earthquakes",
    venue_id="516191",
    venue_name="CenturyLink Field",
    time_zone="America/Los_Angeles",
    event_date=datetime(2015, 8, 21, 2, tzinfo=UTC).timestamp(),
    offsale=datetime(2015, 8, 21, tzinfo=UTC).timestamp(),
    api_transactable=True,
)


def _with(path: str, value: Any) -> dict[str, Any]:
    """SEED_DOC with one value replaced (`a.b.c`); `...` removes the key."""
    doc: dict[str, Any] = copy.deepcopy(SEED_DOC)
    *parents, last = path.split(".")
    node = doc
    for part in parents:
        node = node[part]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return doc


def _fields(details: EventDetails) -> dict[str, Any]:
    return dataclasses.asdict(details)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        pytest.param(SEED_DOC, {}, id="seed-004-example"),
        pytest.param(
            _with("event.venue", ...),
            {"venue_id": None, "venue_name": None, "time_zone": None},
            id="no-venue",
        ),
        pytest.param(_with("event.venue.location", ...), {"time_zone": None}, id="no-location"),
        pytest.param(
            _with("event.venue.location", "Seattle"), {"time_zone": None}, id="location-str"
        ),
        pytest.param(
            _with("event.venue.location.time_zone", "Mars/Olympus_Mons"),
            {"time_zone": None},
            id="unknown-zone",
        ),
        pytest.param(
            _with("event.venue.location.time_zone", ""), {"time_zone": None}, id="empty-zone"
        ),
        pytest.param(
            _with("event.venue.location.time_zone", 7), {"time_zone": None}, id="zone-int"
        ),
        pytest.param(
            _with("event.venue.location.time_zone", "../../etc/passwd"),
            {"time_zone": None},
            id="zone-path",
        ),
        pytest.param(
            _with("event.venue.location.time_zone", "America"), {"time_zone": None}, id="zone-dir"
        ),
        pytest.param(
            _with("event.venue.location.time_zone", "Asia/Kolkata"),
            {"time_zone": "Asia/Kolkata"},
            id="other-zone",
        ),
        pytest.param(
            _with("event.venue.id", "KovZpZA7AAEA"), {"venue_id": "KovZpZA7AAEA"}, id="venue-id-str"
        ),
        pytest.param(_with("event.venue.id", True), {"venue_id": None}, id="venue-id-bool"),
        pytest.param(_with("event.venue.name", None), {"venue_name": None}, id="venue-name-null"),
        pytest.param(_with("event.name", "  "), {"name": None}, id="blank-name"),
        pytest.param(_with("event.eventdate", ...), {"event_date": None}, id="no-date"),
        pytest.param(
            _with("event.eventdate", {"format": "datetime", "value": "2015-08-21T02:00:00"}),
            {"event_date": None},
            id="date-without-offset",
        ),
        pytest.param(
            _with("event.eventdate", {"format": "datetime", "value": "soon"}),
            {"event_date": None},
            id="date-garbage",
        ),
        pytest.param(
            _with("event.eventdate", "2015-08-21T04:00:00+02:00"),
            {},
            id="date-bare-string-with-offset",
        ),
        pytest.param(_with("event.eventdate", 1440122400000), {}, id="date-epoch-ms"),
        pytest.param(_with("event.offsale", {"value": None}), {"offsale": None}, id="offsale-null"),
        pytest.param(
            _with("api_transactable", ...), {"api_transactable": None}, id="no-transactable"
        ),
        pytest.param(
            _with("api_transactable", False), {"api_transactable": False}, id="not-transactable"
        ),
        pytest.param(
            _with("api_transactable", "false"), {"api_transactable": False}, id="transactable-str"
        ),
        pytest.param(
            _with("api_transactable", 1), {"api_transactable": None}, id="transactable-int"
        ),
        pytest.param(
            {"event": {}},
            dict.fromkeys(f.name for f in dataclasses.fields(EventDetails)[1:]),
            id="empty-event",
        ),
    ],
)
def test_parse_event_details(doc: Any, expected: dict[str, Any]) -> None:
    want = {**_fields(SEED_DETAILS), **expected}
    assert _fields(parse_event_details(doc, EVENT)) == want


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        [SEED_DOC],
        "event",
        42,
        {},
        {"event": None},
        {"event": []},
        {"api_transactable": True},
    ],
    ids=repr,
)
def test_parse_event_details_rejects_documents_without_an_event(doc: Any) -> None:
    with pytest.raises(PartnerUnavailable) as info:
        parse_event_details(doc, EVENT)
    assert info.value.outcome == "malformed"
    assert info.value.retry


def test_event_details_are_frozen() -> None:
    with pytest.raises(AttributeError):
        SEED_DETAILS.time_zone = "UTC"  # type: ignore[misc]


# -- tokens ---------------------------------------------------------------------------------


async def test_token_is_reused_until_shortly_before_expiry_then_renewed(
    make_client: ClientFactory,
) -> None:
    clock = ManualClock()
    async with Simulator(seed=1, clock=clock) as sim:
        client = make_client(sim, clock=clock, renew_margin_seconds=60)
        await client.get_event(EVENT)
        clock.advance(1800)
        await client.get_event(EVENT)
        clock.advance(3599 - 60 - 1800 - 1)  # one second before the renewal point
        await client.get_event(EVENT)
        assert len(token_log(sim)) == 1
        clock.advance(2)  # 59 s before expiry: renewed, though the old token is still valid
        await client.get_event(EVENT)
        await client.get_event(EVENT)
        assert len(token_log(sim)) == 2
        assert [r.status for r in details_log(sim)] == [200] * 5  # never a 401 on the way
        assert sim.partner.active_tokens() == 2


async def test_token_renewal_in_real_time(make_client: ClientFactory) -> None:
    async with Simulator(seed=1, token_seconds=1) as sim:
        # A margin larger than half the lifetime is capped at half: renewal after 0.5 s.
        client = make_client(sim, renew_margin_seconds=60)
        await client.get_event(EVENT)
        await asyncio.sleep(0.2)
        await client.get_event(EVENT)
        assert len(token_log(sim)) == 1
        await asyncio.sleep(0.45)
        await client.get_event(EVENT)
        assert len(token_log(sim)) == 2
        assert [r.status for r in details_log(sim)] == [200, 200, 200]


async def test_token_answer_has_string_fields(session: aiohttp.ClientSession) -> None:
    clock = ManualClock(wall=1_448_168_101.229)
    async with Simulator(seed=1, clock=clock, token_seconds=3599) as sim:
        status, body = await _token_request(session, sim)
    assert status == 200
    assert body["expires_in"] == "3599"
    assert body["issued_at"] == "1448168101229"
    assert body["token_type"] == "BearerToken"
    assert body["client_id"] == KEY
    assert body["status"] == "approved"
    assert isinstance(body["access_token"], str)
    assert len(body["access_token"]) >= 20


async def test_expired_token_gets_a_401_then_one_renewal_and_one_retry(
    make_client: ClientFactory,
) -> None:
    sim_clock = ManualClock()
    async with Simulator(seed=1, clock=sim_clock) as sim:
        # The client's clock stands still: it believes its token is fresh.
        client = make_client(sim, clock=ManualClock())
        await client.get_event(EVENT)
        sim_clock.advance(3600)
        details = await client.get_event(EVENT)
        assert details.event_id == EVENT
        assert [r.status for r in details_log(sim)] == [200, 401, 200]
        assert len(token_log(sim)) == 2

        sim.partner.revoke_tokens()
        await client.get_event(EVENT)
        assert [r.status for r in details_log(sim)] == [200, 401, 200, 401, 200]
        assert len(token_log(sim)) == 3


async def test_a_permanent_401_is_not_a_loop(make_client: ClientFactory) -> None:
    async with Simulator(seed=1) as sim:
        sim.faults.add({"kind": "error", "status": 401, "api": "partner.event"})
        client = make_client(sim)
        with pytest.raises(PartnerAuthError) as info:
            await client.get_event(EVENT)
        assert info.value.status == 401
        assert not info.value.retry
        assert [r.status for r in details_log(sim)] == [401, 401]
        assert len(token_log(sim)) == 2


async def test_ten_concurrent_lookups_cause_one_token_request(make_client: ClientFactory) -> None:
    async with Simulator(seed=1) as sim:
        # A slow token endpoint, so every lookup arrives while the token request is in flight.
        sim.faults.add({"kind": "latency", "seconds": 0.2, "api": "partner.oauth", "count": 1})
        client = make_client(sim)
        ids = [f"3F00{n:012X}" for n in range(10)]  # the Partner API's own format
        results = await asyncio.gather(*(client.get_event(i) for i in ids))
        assert [r.event_id for r in results] == ids
        assert sim.partner.token_requests == 1
        assert len(token_log(sim)) == 1
        assert sim.partner.details_requests == 10

        # Ten lookups refused with a revoked token share one renewal, too.
        sim.partner.revoke_tokens()
        await asyncio.gather(*(client.get_event(i) for i in ids))
        assert sim.partner.token_requests == 2
        assert [r.status for r in details_log(sim)].count(401) == 10


async def test_concurrent_lookups_share_a_failed_token_request(make_client: ClientFactory) -> None:
    async with Simulator(seed=1) as sim:
        sim.faults.add({"kind": "error", "status": 503, "api": "partner.oauth", "count": 1})
        sim.faults.add({"kind": "latency", "seconds": 0.1, "api": "partner.oauth", "count": 1})
        client = make_client(sim)
        results = await asyncio.gather(
            *(client.get_event(EVENT) for _ in range(10)), return_exceptions=True
        )
        assert all(isinstance(r, PartnerUnavailable) for r in results)
        assert sim.partner.token_requests == 1
        assert sim.partner.details_requests == 0
        await client.get_event(EVENT)  # the next call asks afresh
        assert sim.partner.token_requests == 2


async def test_a_cancelled_caller_does_not_cancel_the_shared_token_request(
    make_client: ClientFactory,
) -> None:
    async with Simulator(seed=1) as sim:
        sim.faults.add({"kind": "latency", "seconds": 0.2, "api": "partner.oauth", "count": 1})
        client = make_client(sim)
        first = asyncio.create_task(client.get_event(EVENT))
        second = asyncio.create_task(client.get_event(EVENT))
        await asyncio.sleep(0.05)
        first.cancel()
        assert (await second).event_id == EVENT
        with pytest.raises(asyncio.CancelledError):
            await first
        assert sim.partner.token_requests == 1


@pytest.mark.parametrize(
    ("sim_kw", "client_kw"),
    [
        ({"partner_client_secret": "the-right-secret"}, {}),
        ({"partner_api_key": "the-only-key"}, {}),
        ({}, {"client_secret": Secret("")}),
    ],
    ids=["wrong-secret", "wrong-key", "empty-secret"],
)
async def test_refused_credentials(
    make_client: ClientFactory, sim_kw: dict[str, Any], client_kw: dict[str, Any]
) -> None:
    async with Simulator(seed=1, **sim_kw) as sim:
        client = make_client(sim, **client_kw)
        with pytest.raises(PartnerAuthError) as info:
            await client.get_event(EVENT)
        assert info.value.status == 401
        assert len(token_log(sim)) == 1
        assert details_log(sim) == []


async def test_configured_credentials_are_accepted(make_client: ClientFactory) -> None:
    async with Simulator(seed=1, partner_api_key=KEY, partner_client_secret=SECRET) as sim:
        assert (await make_client(sim).get_event(EVENT)).event_id == EVENT


# -- event details --------------------------------------------------------------------------


async def test_event_details_from_the_seeded_world(make_client: ClientFactory) -> None:
    clock = ManualClock()
    async with Simulator(seed=3, clock=clock) as sim:
        details = await make_client(sim, clock=clock).get_event(EVENT)
        venue = sim.partner.venue_of(EVENT)
        assert venue is not None
        assert details.venue_id == str(venue.id)
        assert details.venue_name == venue.name
        assert details.time_zone == venue.time_zone
        assert details.name is not None
        assert details.event_date is not None
        assert details.event_date == sim.partner.event_date_of(EVENT)
        assert clock.wall() + 29 * 86400 < details.event_date < clock.wall() + 391 * 86400
        assert details.offsale == details.event_date - 7200
        assert isinstance(details.api_transactable, bool)
        # 19:30 at the venue.
        local = datetime.fromtimestamp(details.event_date, ZoneInfo(venue.time_zone))
        assert (local.hour, local.minute) == (19, 30)


async def test_event_details_are_deterministic_per_seed(make_client: ClientFactory) -> None:
    clock = ManualClock()
    ids = [f"5EED{n:012X}" for n in range(40)]
    async with Simulator(seed=5, clock=clock) as a, Simulator(seed=5, clock=clock) as b:
        first = [await make_client(a, clock=clock).get_event(i) for i in ids[:3]]
        second = [await make_client(b, clock=clock).get_event(i) for i in ids[:3]]
        assert first == second
        assert len({a.partner.venue_of(i) for i in ids}) > 10
    async with Simulator(seed=6, clock=clock) as c:
        assert [c.partner.venue_of(i) for i in ids] != [a.partner.venue_of(i) for i in ids]


async def test_scripted_event_details(make_client: ClientFactory) -> None:
    clock = ManualClock()
    KNOWN = "0000000000000ABC"
    async with Simulator(seed=1, clock=clock, known_events=[KNOWN]) as sim:
        client = make_client(sim, clock=clock)
        past = clock.wall() - 3600
        sim.partner.set_event(
            "PAST",
            time_zone="Europe/Berlin",
            event_date=past,
            offsale=datetime.fromtimestamp(past - 7200, UTC),
            api_transactable=False,
            name="Yesterday's Gig",
        )
        details = await client.get_event("PAST")
        assert details.time_zone == "Europe/Berlin"
        assert details.event_date == past
        assert details.offsale == past - 7200
        assert details.api_transactable is False
        assert details.name == "Yesterday's Gig"

        sim.partner.set_event("ODD", time_zone="Mars/Olympus_Mons")
        assert (await client.get_event("ODD")).time_zone is None
        sim.partner.set_event("NOWHERE", venue=None, event_date=None, offsale=None)
        nowhere = await client.get_event("NOWHERE")
        assert (nowhere.venue_id, nowhere.time_zone, nowhere.event_date) == (None, None, None)
        sim.partner.set_event("MSG", venue=300126)
        assert (await client.get_event("MSG")).time_zone == "America/New_York"
        sim.partner.set_event("NOZONE", venue="300126", time_zone=None)
        nozone = await client.get_event("NOZONE")
        assert (nozone.venue_name, nozone.time_zone) == ("Madison Square Garden", None)

        assert (await client.get_event(KNOWN)).event_id == KNOWN
        sim.partner.set_event(KNOWN, found=False)
        with pytest.raises(EventNotFound):
            await client.get_event(KNOWN)
        sim.partner.clear_events(KNOWN)
        assert (await client.get_event(KNOWN)).event_id == KNOWN


async def test_unknown_event_is_not_found(make_client: ClientFactory) -> None:
    async with Simulator(seed=1, known_events=["KNOWN"]) as sim:
        client = make_client(sim)
        with pytest.raises(EventNotFound) as info:
            await client.get_event("UNKNOWN")
        assert info.value.event_id == "UNKNOWN"
        assert info.value.status == 404
        assert info.value.outcome == "not_found"
        assert not info.value.retry
        assert [r.status for r in details_log(sim)] == [404]
        with pytest.raises(EventNotFound):
            await client.get_event("bad id!")


async def test_sandbox_prefix(make_client: ClientFactory) -> None:
    async with Simulator(seed=1) as sim:
        client = make_client(sim, base_url=sim.url + "/partners-sandbox/v1/")
        assert (await client.get_event(EVENT)).event_id == EVENT
        assert {r.path for r in partner_log(sim)} == {
            "/partners-sandbox/v1/oauth/accesstoken",
            f"/partners-sandbox/v1/event/{EVENT}",
        }


# -- failures -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "kind", "outcome", "status", "retry_after"),
    [
        ({"kind": "error", "status": 500}, PartnerUnavailable, "server_error", 500, None),
        (
            {"kind": "error", "status": 503, "retry_after": 7},
            PartnerUnavailable,
            "server_error",
            503,
            7.0,
        ),
        ({"kind": "rate_limit", "retry_after": 3}, PartnerUnavailable, "rate_limited", 429, 3.0),
        ({"kind": "rate_limit", "variant": "quota"}, PartnerUnavailable, "rate_limited", 429, 1.0),
        ({"kind": "timeout", "seconds": 5}, PartnerUnavailable, "timeout", None, None),
        ({"kind": "malformed"}, PartnerUnavailable, "malformed", 200, None),
        ({"kind": "truncated"}, PartnerUnavailable, "malformed", 200, None),
        (
            {"kind": "truncated", "mode": "connection"},
            PartnerUnavailable,
            "connection_error",
            None,
            None,
        ),
        ({"kind": "html", "status": 502}, PartnerUnavailable, "server_error", 502, None),
        ({"kind": "not_array"}, PartnerUnavailable, "malformed", 200, None),
        ({"kind": "error", "status": 400}, PartnerRequestError, "client_error", 400, None),
        ({"kind": "error", "status": 403}, PartnerAuthError, "auth_failed", 403, None),
        ({"kind": "missing_ids"}, EventNotFound, "not_found", 404, None),
    ],
    ids=lambda v: "-".join(map(str, v.values())) if isinstance(v, dict) else None,
)
async def test_details_faults(
    make_client: ClientFactory,
    fault: dict[str, Any],
    kind: type[PartnerError],
    outcome: str,
    status: int | None,
    retry_after: float | None,
) -> None:
    async with Simulator(seed=1) as sim:
        client = make_client(sim, timeout_seconds=0.3)
        sim.faults.add({**fault, "api": "partner.event", "count": 1})
        started = time.monotonic()
        with pytest.raises(kind) as info:
            await client.get_event(EVENT)
        assert time.monotonic() - started < 2
        assert type(info.value) is kind
        assert info.value.outcome == outcome
        assert info.value.status == status
        assert info.value.retry_after == retry_after
        assert info.value.retry == (kind is PartnerUnavailable)
        # One request each, no retry inside the client; the fault is spent and the next works.
        assert len(details_log(sim)) == 1
        assert (await client.get_event(EVENT)).event_id == EVENT
        assert len(token_log(sim)) == 1


@pytest.mark.parametrize(
    ("fault", "outcome"),
    [
        ({"kind": "error", "status": 502}, "server_error"),
        ({"kind": "rate_limit", "retry_after": 2}, "rate_limited"),
        ({"kind": "malformed"}, "malformed"),
        ({"kind": "not_array"}, "malformed"),
        ({"kind": "timeout"}, "timeout"),
    ],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
async def test_token_endpoint_faults(
    make_client: ClientFactory, fault: dict[str, Any], outcome: str
) -> None:
    async with Simulator(seed=1) as sim:
        client = make_client(sim, timeout_seconds=0.3)
        sim.faults.add({**fault, "api": "partner.oauth", "count": 1})
        with pytest.raises(PartnerUnavailable) as info:
            await client.get_event(EVENT)
        assert info.value.outcome == outcome
        assert details_log(sim) == []
        assert (await client.get_event(EVENT)).event_id == EVENT


async def test_connection_refused(make_client: ClientFactory) -> None:
    async with Simulator(seed=1) as sim:
        url = sim.partner_url
    client = make_client(sim, base_url=url)  # the simulator has stopped: nothing listens
    with pytest.raises(PartnerUnavailable) as info:
        await client.get_event(EVENT)
    assert info.value.outcome == "connection_error"
    assert KEY not in str(info.value)


async def test_partner_faults_and_inventory_faults_keep_apart(
    session: aiohttp.ClientSession, make_client: ClientFactory
) -> None:
    async with Simulator(seed=1) as sim:
        client = make_client(sim)
        sim.faults.add({"kind": "error", "status": 500, "api": "partner"})
        async with session.get(sim.url + PATH, params={"apikey": "k", "events": "A"}) as resp:
            assert resp.status == 200
        with pytest.raises(PartnerUnavailable):
            await client.get_event(EVENT)
        assert [r.path for r in partner_log(sim)] == ["/partners/v1/oauth/accesstoken"]

        sim.faults.clear()
        sim.faults.add({"kind": "error", "status": 500})  # api defaults to "inventory"
        assert (await client.get_event(EVENT)).event_id == EVENT
        async with session.get(sim.url + PATH, params={"apikey": "k", "events": "A"}) as resp:
            assert resp.status == 500
        assert sim.faults.active("partner.event") == []
        assert len(sim.faults.active("inventory")) == 1


# -- budget and secrets ---------------------------------------------------------------------


async def test_every_request_goes_through_the_budget(make_client: ClientFactory) -> None:
    async with Simulator(seed=1) as sim:
        budget = RateBudget(4, 0.5)
        client = make_client(sim, budget=budget)
        assert client.budget is budget
        started = time.monotonic()
        await asyncio.gather(*(client.get_event(f"{n:016X}") for n in range(11)))
        sim.partner.revoke_tokens()
        await client.get_event(EVENT)  # a 401, a token request and a retry: three more
        records = partner_log(sim)
        assert len(records) == 15
        assert max_in_window(records, 0.5) <= 4
        assert time.monotonic() - started >= 1.4  # 15 requests at 4 per 0.5 s: three waits


def test_default_budget_is_3600_an_hour(session: aiohttp.ClientSession) -> None:
    client = PartnerClient(
        session=session, base_url="http://x", api_key=Secret(KEY), client_secret=Secret(SECRET)
    )
    assert (client.budget.requests, client.budget.per_seconds) == (3600, 3600.0)


async def test_secrets_and_tokens_never_appear_in_logs_or_errors(
    make_client: ClientFactory, log_stream: io.StringIO
) -> None:
    errors: list[PartnerError] = []
    logger = get_logger("test.partner")
    async with Simulator(seed=1, known_events=[EVENT], token_seconds=60) as sim:
        client = make_client(sim, timeout_seconds=0.3)
        await client.get_event(EVENT)
        sim.partner.revoke_tokens()
        await client.get_event(EVENT)
        scenarios: list[tuple[dict[str, Any] | None, str]] = [
            ({"kind": "error", "status": 500, "api": "partner.event"}, EVENT),
            ({"kind": "rate_limit", "api": "partner.event"}, EVENT),
            ({"kind": "timeout", "api": "partner.event"}, EVENT),
            ({"kind": "truncated", "mode": "connection", "api": "partner.event"}, EVENT),
            ({"kind": "malformed", "api": "partner.event"}, EVENT),
            ({"kind": "error", "status": 401, "api": "partner.event", "count": 2}, EVENT),
            ({"kind": "error", "status": 401, "api": "partner.oauth"}, EVENT),
            (None, "NOT-AN-EVENT"),
        ]
        for fault, event_id in scenarios:
            if fault is not None:
                sim.faults.add(fault)
            if fault is not None and fault["api"] == "partner.oauth":
                client.invalidate_token()
            try:
                await client.get_event(event_id)
            except PartnerError as exc:
                errors.append(exc)
                logger.warning("partner lookup failed", error=str(exc))
                logging.getLogger("test.partner").exception("partner lookup failed: %r", exc)
            sim.faults.clear()
        tokens = list(sim.partner.recent_tokens)
        gone = sim.partner_url
    refused = make_client(sim, base_url=gone)  # stopped: connection refused
    try:
        await refused.get_event(EVENT)
    except PartnerError as exc:
        errors.append(exc)
        logger.warning("partner lookup failed", error=str(exc))

    assert len(errors) == 9
    assert len(tokens) == 4
    basic = base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
    text = log_stream.getvalue() + "".join(f"{e}{e!r}{e.args}" for e in errors)
    assert "partner token obtained" in text
    for secret in (KEY, SECRET, basic, *tokens):
        assert secret not in text


# -- the simulated Partner API ----------------------------------------------------------------


async def _token_request(
    session: aiohttp.ClientSession,
    sim: Simulator,
    *,
    key: str | None = KEY,
    secret: str = SECRET,
    grant: str = "client_credentials",
    method: str = "POST",
) -> tuple[int, Any]:
    params = {} if key is None else {"apikey": key}
    auth = base64.b64encode(f"{KEY}:{secret}".encode()).decode()
    async with session.request(
        method,
        sim.partner_url + "/oauth/accesstoken",
        params=params,
        data={"grant_type": grant},
        headers={"Authorization": f"Basic {auth}"},
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_sim_token_endpoint_refusals(session: aiohttp.ClientSession) -> None:
    async with Simulator(seed=1, partner_client_secret=SECRET) as sim:
        assert (await _token_request(session, sim))[0] == 200
        status, body = await _token_request(session, sim, secret="wrong")
        assert (status, body["ErrorCode"]) == (401, "invalid_client")
        status, body = await _token_request(session, sim, key=None)
        assert (status, body["fault"]["faultstring"]) == (401, "Invalid ApiKey")
        status, body = await _token_request(session, sim, grant="cient_credentials")
        assert (status, body["ErrorCode"]) == (400, "invalid_request")
        assert (await _token_request(session, sim, method="GET"))[0] == 405
        assert sim.partner.token_requests == 5
        assert sim.partner.tokens_issued == 1


async def test_sim_details_need_a_valid_bearer_token(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(seed=1, clock=clock, token_seconds=10) as sim:
        _, body = await _token_request(session, sim)
        token = body["access_token"]
        url = f"{sim.partner_url}/event/{EVENT}"

        async def details(auth: str | None, key: str = KEY) -> tuple[int, Any]:
            headers = {} if auth is None else {"Authorization": auth}
            async with session.get(url, params={"apikey": key}, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)

        assert (await details(f"Bearer {token}"))[0] == 200
        status, body = await details(None)
        assert (status, body["fault"]["detail"]["errorcode"]) == (
            401,
            "oauth.v2.InvalidAccessToken",
        )
        status, body = await details("Bearer nope")
        assert status == 401
        assert body["fault"]["faultstring"] == "Invalid Access Token"
        assert (await details(f"Bearer {token}", key="another-key"))[0] == 401
        clock.advance(10)
        status, body = await details(f"Bearer {token}")
        assert (status, body["fault"]["faultstring"]) == (401, "Access Token expired")


def test_sim_venues_cover_every_hour_and_daylight_saving() -> None:
    zones = [ZoneInfo(v.time_zone) for v in VENUES]
    assert 20 <= len(VENUES) <= 32
    assert len({v.id for v in VENUES}) == len(VENUES)
    # At any moment of the year some venue is in its 02:00-03:00 window.
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for step in range(0, 366 * 24 * 60, 7 * 60 + 13):
        when = start + timedelta(minutes=step)
        assert any(when.astimezone(z).hour == 2 for z in zones), when
    # Some venues observe daylight saving.
    jan, jul = datetime(2026, 1, 15, tzinfo=UTC), datetime(2026, 7, 15, tzinfo=UTC)
    dst = [z for z in zones if jan.astimezone(z).utcoffset() != jul.astimezone(z).utcoffset()]
    assert len(dst) >= 4


async def test_sim_partner_control_endpoints(session: aiohttp.ClientSession) -> None:
    async with Simulator(seed=1) as sim:
        control = sim.url + "/_sim/partner"
        script = {"E1": {"time_zone": "Asia/Tokyo", "event_date": "2020-01-01T00:00:00Z"}}
        async with session.post(control + "/events", json=script) as resp:
            assert resp.status == 200
            assert await resp.json() == {
                "E1": {"time_zone": "Asia/Tokyo", "event_date": "2020-01-01T00:00:00Z"}
            }
        assert sim.partner.time_zone_of("E1") == "Asia/Tokyo"
        assert sim.partner.event_date_of("E1") == datetime(2020, 1, 1, tzinfo=UTC).timestamp()
        for bad in (
            {"E2": {"venue": 1}},
            {"E2": {"zone": "UTC"}},
            {"E2": {"event_date": "x"}},
            [1],
        ):
            async with session.post(control + "/events", json=bad) as resp:
                assert resp.status == 400
        assert "E2" not in sim.partner.scripted
        async with session.get(control + "/events") as resp:
            assert list(await resp.json()) == ["E1"]
        async with session.delete(control + "/events") as resp:
            assert resp.status == 200
        assert sim.partner.scripted == {}

        await _token_request(session, sim)
        async with session.get(control + "/tokens") as resp:
            counts = await resp.json()
        assert counts["active"] == 1
        assert counts["token_requests"] == 1
        async with session.delete(control + "/tokens") as resp:
            assert await resp.json() == {"revoked": 1}
        async with session.get(control + "/venues") as resp:
            assert len(await resp.json()) == len(VENUES)


def test_sim_partner_cli_options() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--partner-api-key",
            "k",
            "--partner-client-secret",
            "s",
            "--token-seconds",
            "5",
            "--partner-rate-limit",
            "2/1",
        ]
    )
    assert (args.partner_api_key, args.partner_client_secret) == ("k", "s")
    assert args.token_seconds == 5.0
    assert args.partner_rate_limit == (2, 1.0)
    assert parser.parse_args([]).token_seconds == 3599.0


async def test_sim_partner_rate_limit(make_client: ClientFactory) -> None:
    async with Simulator(seed=1, partner_rate_limit=(2, 60)) as sim:
        client = make_client(sim)
        await client.get_event(EVENT)  # a token request and a details request
        with pytest.raises(PartnerUnavailable) as info:
            await client.get_event(EVENT)
        assert info.value.outcome == "rate_limited"


async def test_the_simulated_partner_api_knows_only_its_own_id_format(
    make_client: ClientFactory,
) -> None:
    async with Simulator(seed=1) as sim:
        client = make_client(sim)
        assert (await client.get_event("3F004EC9D1EBBC76")).event_id == "3F004EC9D1EBBC76"
        for discovery_style in ("17AOv8G6G5rI0S0", "G5vYZ9fQd1a2b", "3f004ec9d1ebbc76"):
            with pytest.raises(EventNotFound):
                await client.get_event(discovery_style)
        sim.partner.set_event("17AOv8G6G5rI0S0", venue=300126)  # mapped: answered
        assert (await client.get_event("17AOv8G6G5rI0S0")).time_zone == "America/New_York"

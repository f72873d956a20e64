"""The upstream simulator, over real HTTP: answers, determinism, faults, limits, log, control."""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from multidict import CIMultiDictProxy

from monitor.clock import ManualClock
from monitor.domain import STATUS_SET, TICKETS_AVAILABLE, UNKNOWN
from monitor.simulator import (
    MAX_LINE,
    PATH,
    RESALE_STATUSES,
    FaultPlan,
    RequestRecord,
    Simulator,
    World,
    add_arguments,
    max_in_window,
    parse_faults,
    serve_from_args,
)

KEY = "test-key"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def call(
    session: aiohttp.ClientSession,
    sim: Simulator,
    ids: list[str] | None = None,
    *,
    method: str = "GET",
    key: str | None = KEY,
    params: dict[str, str] | None = None,
    **kwargs: Any,
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    """One request to the availability endpoint: (status, parsed JSON or raw bytes, headers)."""
    query: dict[str, str] = dict(params or {})
    if key is not None:
        query["apikey"] = key
    if ids is not None:
        query["events"] = ",".join(ids)
    async with session.request(method, sim.url + PATH, params=query, **kwargs) as resp:
        raw = await resp.read()
        try:
            body: Any = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = raw
        return resp.status, body, resp.headers


def expected(sim: Simulator, ids: list[str], wall: float | None = None) -> list[dict[str, str]]:
    when = sim.clock.wall() if wall is None else wall
    return [
        {"eventId": i, "status": s, "resaleStatus": r}
        for i, (s, r) in zip(ids, sim.world.statuses(ids, when), strict=True)
    ]


def ids_(n: int, width: int = 16) -> list[str]:
    return [f"E{k:0{width - 1}d}" for k in range(n)]


# -- the endpoint ---------------------------------------------------------------------------


async def test_apikey_is_required_and_checked(session: aiohttp.ClientSession) -> None:
    invalid = {
        "fault": {
            "faultstring": "Invalid ApiKey",
            "detail": {"errorcode": "oauth.v2.InvalidApiKey"},
        }
    }
    async with Simulator(api_key=KEY) as sim:
        status, body, _ = await call(session, sim, ["A"], key=None)
        assert (status, body) == (401, invalid)
        status, body, _ = await call(session, sim, ["A"], key="wrong")
        assert (status, body) == (401, invalid)
        status, body, _ = await call(session, sim, ["A"], key="")
        assert status == 401
        status, _, _ = await call(session, sim, ["A"])
        assert status == 200
        assert [r.status for r in sim.log] == [401, 401, 401, 200]
    async with Simulator() as sim:
        status, _, _ = await call(session, sim, ["A"], key="anything")
        assert status == 200


async def test_get_answers_every_id_in_request_order(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(seed=3, clock=clock) as sim:
        ids = ["Bb", "A1", "Bb", "zz_-9"]
        status, body, headers = await call(session, sim, ids, params={"region": "UK"})
        assert status == 200
        assert headers["Content-Type"].startswith("application/json")
        assert body == expected(sim, ids)
        for row in body:
            assert row["status"] in STATUS_SET
            assert row["resaleStatus"] in RESALE_STATUSES
        assert sim.log[-1].region == "UK"
        assert sim.log[-1].n_ids == 4


async def test_repeated_events_parameters_are_joined(session: aiohttp.ClientSession) -> None:
    async with (
        Simulator() as sim,
        session.get(
            sim.url + PATH, params=[("apikey", KEY), ("events", "A,B"), ("events", "C")]
        ) as resp,
    ):
        assert [row["eventId"] for row in await resp.json()] == ["A", "B", "C"]


async def test_post_takes_ids_from_query_form_and_json(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(seed=5, clock=clock) as sim:
        ids = ["P1", "P2", "P3"]
        want = expected(sim, ids)
        status, body, _ = await call(session, sim, ids, method="POST")
        assert (status, body) == (200, want)
        status, body, _ = await call(session, sim, method="POST", data={"events": ",".join(ids)})
        assert (status, body) == (200, want)
        status, body, _ = await call(session, sim, method="POST", json=ids)
        assert (status, body) == (200, want)
        status, body, _ = await call(session, sim, method="POST", json={"events": ids})
        assert (status, body) == (200, want)
        status, body, _ = await call(session, sim, method="POST", data=b"{not json")
        assert status == 400
        assert body["errors"][0]["code"] == "invalid_params"
        assert [r.method for r in sim.log] == ["POST"] * 5


async def test_id_count_limits(session: aiohttp.ClientSession) -> None:
    async with Simulator(record_ids=True, max_url_bytes=None) as sim:
        status, body, _ = await call(session, sim, [])
        assert status == 400
        assert body["errors"][0]["code"] == "invalid_params"
        status, body, _ = await call(session, sim, None)
        assert status == 400

        ids = ids_(1000, width=16)
        query = "events=" + ",".join(ids)
        assert len(query) > 8190 * 2  # far over aiohttp's default request-line limit
        status, body, _ = await call(session, sim, ids)
        assert status == 200
        assert [row["eventId"] for row in body] == ids
        assert sim.log[-1].ids == tuple(ids)

        status, body, _ = await call(session, sim, ids_(1001, width=16))
        assert status == 400
        assert body == {
            "errors": [
                {
                    "code": "invalid_params",
                    "message": "events: at most 1000 event IDs per request, got 1001",
                }
            ]
        }
        assert MAX_LINE >= 64 * 1024


async def test_unknown_and_malformed_ids_are_unknown(session: aiohttp.ClientSession) -> None:
    unknown = {"status": UNKNOWN, "resaleStatus": UNKNOWN}
    async with Simulator(known_events={"K1", "K2"}, evolve=False) as sim:
        _, body, _ = await call(session, sim, ["K1", "nope", "K2"])
        assert body == [
            {"eventId": "K1", "status": TICKETS_AVAILABLE, "resaleStatus": TICKETS_AVAILABLE},
            {"eventId": "nope", **unknown},
            {"eventId": "K2", "status": TICKETS_AVAILABLE, "resaleStatus": TICKETS_AVAILABLE},
        ]
    async with Simulator(evolve=False) as sim:
        bad = ["has space", "x" * 65, "dot.ted", "ünï"]
        _, body, _ = await call(session, sim, [*bad, "x" * 64])
        assert body[:4] == [{"eventId": b, **unknown} for b in bad]
        assert body[4]["status"] == TICKETS_AVAILABLE


async def test_other_methods_are_405_and_logged(session: aiohttp.ClientSession) -> None:
    async with Simulator() as sim:
        status, _, headers = await call(session, sim, ["A"], method="PUT")
        assert status == 405
        assert headers["Allow"] == "GET, POST"
        assert sim.log[-1].status == 405


# -- the world ------------------------------------------------------------------------------


def test_world_is_deterministic_by_seed() -> None:
    ids = ids_(300)
    now = 1_764_000_000.0
    first = World(seed=7).statuses(ids, now)
    assert World(seed=7).statuses(ids, now) == first
    assert World(seed=8).statuses(ids, now) != first
    # Asked one by one, in another order, the answers are the same.
    world = World(seed=7)
    assert [world.status_of(i, now) for i in reversed(ids)] == first[::-1]


def test_world_weights_and_periods() -> None:
    world = World(seed=1, change_seconds=60.0)
    ids = ids_(400)
    statuses: Counter[str] = Counter()
    resales: Counter[str] = Counter()
    changes = 0
    previous = world.statuses(ids, 0.0)
    for step in range(1, 51):
        now = 1_764_000_000.0 + step * 30.0
        current = world.statuses(ids, now)
        changes += sum(a != b for a, b in zip(previous, current, strict=True))
        statuses.update(s for s, _ in current)
        resales.update(r for _, r in current)
        previous = current
    total = sum(statuses.values())
    for status, share in {
        "TICKETS_AVAILABLE": 0.45,
        "FEW_TICKETS_LEFT": 0.30,
        "TICKETS_NOT_AVAILABLE": 0.20,
        "UNKNOWN": 0.05,
    }.items():
        assert abs(statuses[status] / total - share) < 0.03, (status, statuses)
    for status, share in {"TICKETS_AVAILABLE": 0.6, "TICKETS_NOT_AVAILABLE": 0.35}.items():
        assert abs(resales[status] / total - share) < 0.03, (status, resales)
    # Half a mean period per step: a good share of events change at every step, not all.
    assert 0.15 < changes / (50 * 400) < 0.6


def test_world_periods_are_within_bounds() -> None:
    world = World(seed=2, change_seconds=10.0)
    for event_id in ids_(50):
        # Over any 4.9 s (< 0.5 x 10) an event changes bucket at most once.
        seen = {world.status_of(event_id, 1000.0 + k * 0.7) for k in range(8)}
        assert len(seen) <= 2
        # Over 300 s (>= 20 periods) it changes, with overwhelming likelihood.
        seen = {world.status_of(event_id, 1000.0 + k * 16.0) for k in range(20)}
        assert len(seen) >= 2


async def test_statuses_evolve_with_the_clock(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    ids = ids_(50)
    async with Simulator(seed=4, clock=clock, change_seconds=60) as sim:
        _, before, _ = await call(session, sim, ids)
        _, same, _ = await call(session, sim, ids)
        assert same == before
        clock.advance(3600)
        _, after, _ = await call(session, sim, ids)
        assert after == expected(sim, ids)
        assert sum(a != b for a, b in zip(before, after, strict=True)) > 10
    async with Simulator(seed=4, clock=clock, evolve=False) as sim:
        _, before, _ = await call(session, sim, ids)
        clock.advance(3600)
        _, after, _ = await call(session, sim, ids)
        assert after == before
        assert {row["status"] for row in after} == {TICKETS_AVAILABLE}


async def test_scripted_statuses(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    async with Simulator(seed=9, clock=clock, known_events=["S1", "S2"]) as sim:
        sim.world.set_status("S1", status="TICKETS_NOT_AVAILABLE")
        sim.world.set_status("S1", resale_status="TICKETS_AVAILABLE")
        sim.world.set_status("S2", status="FEW_TICKETS_LEFT")
        for _ in range(3):
            _, body, _ = await call(session, sim, ["S1", "S2"])
            assert body[0]["status"] == "TICKETS_NOT_AVAILABLE"
            assert body[0]["resaleStatus"] == "TICKETS_AVAILABLE"
            assert body[1]["status"] == "FEW_TICKETS_LEFT"
            assert body[1]["resaleStatus"] == sim.world.status_of("S2", clock.wall())[1]
            clock.advance(600)
        sim.world.clear_scripted()
        _, body, _ = await call(session, sim, ["S1", "S2"])
        assert body == expected(sim, ["S1", "S2"])


# -- faults ---------------------------------------------------------------------------------


async def test_error_fault_fires_count_times(session: aiohttp.ClientSession) -> None:
    async with Simulator(faults=[{"kind": "error", "count": 2, "retry_after": 2}]) as sim:
        for _ in range(2):
            status, body, headers = await call(session, sim, ["A"])
            assert status == 503
            assert headers["Retry-After"] == "2"
            assert body["fault"]["detail"]["errorcode"]
        status, _, _ = await call(session, sim, ["A"])
        assert status == 200
        assert sim.faults.active() == []
        assert [r.status for r in sim.log] == [503, 503, 200]


async def test_rate_limit_fault(session: aiohttp.ClientSession) -> None:
    faults: list[dict[str, Any]] = [
        {"kind": "rate_limit", "count": 1},
        {"kind": "rate_limit", "variant": "quota"},
    ]
    async with Simulator(quota=(100, 3600), faults=faults) as sim:
        status, body, headers = await call(session, sim, ["A"])
        assert status == 429
        assert headers["Retry-After"] == "1"
        assert headers["Rate-Limit"] == "100"
        assert body["fault"]["detail"]["errorcode"] == "policies.ratelimit.SpikeArrestViolation"
        status, body, _ = await call(session, sim, ["A"])
        assert status == 429
        assert body["fault"]["detail"]["errorcode"] == "policies.ratelimit.QuotaViolation"


async def test_latency_fault(session: aiohttp.ClientSession) -> None:
    async with Simulator(faults=[{"kind": "latency", "seconds": 0.2, "count": 1}]) as sim:
        started = time.monotonic()
        status, _, _ = await call(session, sim, ["A"])
        assert status == 200
        assert time.monotonic() - started >= 0.2
        started = time.monotonic()
        await call(session, sim, ["A"])
        assert time.monotonic() - started < 0.2


async def test_timeout_fault_holds_then_normal(session: aiohttp.ClientSession) -> None:
    async with Simulator(faults=[{"kind": "timeout", "seconds": 2, "count": 1}]) as sim:
        started = time.monotonic()
        with pytest.raises(asyncio.TimeoutError):
            await call(session, sim, ["A"], timeout=aiohttp.ClientTimeout(total=0.3))
        assert time.monotonic() - started < 1.0
        status, _, _ = await call(session, sim, ["A"])
        assert status == 200
        assert [r.status for r in sim.log] == [0, 200]


async def test_timeout_fault_closes_without_answer(session: aiohttp.ClientSession) -> None:
    async with Simulator(faults=[{"kind": "timeout", "seconds": 0.05, "count": 1}]) as sim:
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await call(session, sim, ["A"], method="POST")
        assert (await call(session, sim, ["A"], method="POST"))[0] == 200
        # aiohttp's client silently retries an idempotent request (GET) once when the server
        # hangs up without answering, so one such fault is invisible to a GET.
        sim.faults.add({"kind": "timeout", "seconds": 0.05, "count": 1})
        assert (await call(session, sim, ["A"]))[0] == 200
        assert [r.status for r in sim.log] == [0, 200, 0, 200]


async def test_stop_ends_held_requests(session: aiohttp.ClientSession) -> None:
    sim = Simulator(faults=[{"kind": "latency", "seconds": 30}])
    await sim.start()
    request = asyncio.create_task(call(session, sim, ["A"]))
    while not sim.log:
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await sim.stop()
    assert time.monotonic() - started < 1.0
    status, _, _ = await request
    assert status == 200


@pytest.mark.parametrize("mode", ["body", "connection"])
async def test_truncated_fault(session: aiohttp.ClientSession, mode: str) -> None:
    clock = ManualClock()
    async with Simulator(
        clock=clock, faults=[{"kind": "truncated", "mode": mode, "count": 1}]
    ) as sim:
        ids = ["T1", "T2", "T3", "T4"]
        full = orjson.dumps(expected(sim, ids))
        if mode == "body":
            status, body, _ = await call(session, sim, ids)
            assert status == 200
            assert isinstance(body, bytes)
            assert body == full[: len(full) // 2]
        else:
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as fresh:
                with pytest.raises(aiohttp.ClientPayloadError):
                    await call(fresh, sim, ids)
        assert (await call(session, sim, ids))[1] == expected(sim, ids)


async def test_malformed_html_and_not_array_faults(session: aiohttp.ClientSession) -> None:
    faults = [
        {"kind": "malformed", "count": 1},
        {"kind": "html", "count": 1},
        {"kind": "html", "status": 200, "count": 1},
        {"kind": "not_array", "count": 1},
    ]
    clock = ManualClock()
    async with Simulator(faults=faults, clock=clock) as sim:
        status, body, _ = await call(session, sim, ["A", "B"])
        assert status == 200
        assert body == b'[{"eventId": "A", "sta'
        status, body, headers = await call(session, sim, ["A"])
        assert status == 502
        assert headers["Content-Type"].startswith("text/html")
        assert b"502 Bad Gateway" in body
        status, body, headers = await call(session, sim, ["A"])
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        status, body, _ = await call(session, sim, ["A", "B"])
        assert status == 200
        assert body == {"events": expected(sim, ["A", "B"])}
        assert (await call(session, sim, ["A"]))[1] == expected(sim, ["A"])


async def test_altering_faults(session: aiohttp.ClientSession) -> None:
    clock = ManualClock()
    ids = ["M0", "M1", "M2", "M3", "M4"]
    async with Simulator(clock=clock) as sim:
        normal = expected(sim, ids)

        sim.faults.add({"kind": "missing_ids", "count": 1})
        _, body, _ = await call(session, sim, ids)
        assert body == [normal[1], normal[3]]  # ceil(5 x 0.5) = 3 dropped: 0, 2, 4
        sim.faults.add({"kind": "missing_ids", "ids": ["M3"], "count": 1})
        _, body, _ = await call(session, sim, ids)
        assert [row["eventId"] for row in body] == ["M0", "M1", "M2", "M4"]

        sim.faults.add({"kind": "extra_ids", "count": 1})
        _, body, _ = await call(session, sim, ids)
        assert body[:5] == normal
        assert len(body) == 8
        assert not {row["eventId"] for row in body[5:]} & set(ids)

        sim.faults.add({"kind": "unknown_status", "count": 1})
        _, body, _ = await call(session, sim, ids)
        assert {row["status"] for row in body} == {"SOMETHING_NEW"}
        assert [row["resaleStatus"] for row in body] == [row["resaleStatus"] for row in normal]
        spec = {"kind": "unknown_status", "field": "resaleStatus", "value": "X", "ids": ["M1"]}
        sim.faults.add({**spec, "count": 1})
        _, body, _ = await call(session, sim, ids)
        assert body[1] == {**normal[1], "resaleStatus": "X"}
        assert body[0] == normal[0]

        sim.faults.add({"kind": "lowercase_key", "count": 1})
        _, body, _ = await call(session, sim, ids[:1])
        assert body == [{"eventid": "M0", "status": normal[0]["status"], **_resale(normal[0])}]

        assert (await call(session, sim, ids))[1] == normal


def _resale(row: dict[str, str]) -> dict[str, str]:
    return {"resaleStatus": row["resaleStatus"]}


async def test_bad_ids_fault_only_fires_on_a_match(session: aiohttp.ClientSession) -> None:
    async with Simulator(faults=[{"kind": "bad_ids", "ids": ["BAD"], "count": 2}]) as sim:
        assert (await call(session, sim, ["A", "B"]))[0] == 200
        status, body, _ = await call(session, sim, ["A", "BAD", "B"])
        assert (status, body) == (
            400,
            {"errors": [{"code": "invalid_params", "message": "invalid event id BAD"}]},
        )
        assert (await call(session, sim, ["A"]))[0] == 200
        assert (await call(session, sim, ["BAD"]))[0] == 400
        assert (await call(session, sim, ["BAD"]))[0] == 200


async def test_faults_combine_in_order(session: aiohttp.ClientSession) -> None:
    faults = [
        {"kind": "latency", "seconds": 0.1, "count": 1},
        {"kind": "missing_ids", "count": 1},
        {"kind": "error", "status": 500, "count": 1},
        {"kind": "error", "status": 502, "count": 1},
    ]
    async with Simulator(faults=faults, clock=ManualClock()) as sim:
        started = time.monotonic()
        assert (await call(session, sim, ["A", "B"]))[0] == 500
        assert time.monotonic() - started >= 0.1
        # The altering fault did not take effect under the error, so it was not spent.
        assert [f.kind for f in sim.faults.active()] == ["missing_ids", "error"]
        assert (await call(session, sim, ["A", "B"]))[0] == 502
        _, body, _ = await call(session, sim, ["A", "B"])
        assert [row["eventId"] for row in body] == ["B"]


def test_fault_probability_is_seeded() -> None:
    def pattern(seed: int) -> list[bool]:
        plan = FaultPlan([{"kind": "error", "probability": 0.5}], seed=seed)
        return [plan.decide("inventory", ["A"]).terminal is not None for _ in range(64)]

    assert pattern(1) == pattern(1)
    assert pattern(1) != pattern(2)
    assert 10 < sum(pattern(1)) < 54
    plan = FaultPlan([{"kind": "error", "api": "partner"}])
    assert plan.decide("inventory", ["A"]).terminal is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "boom"}, "'kind' must be one of"),
        ({"kind": "error", "status": 200}, "'status' must be in [400, 599]"),
        ({"kind": "error", "seconds": 1}, "unknown field(s) ['seconds']"),
        ({"kind": "latency", "seconds": "1"}, "'seconds' must be a number"),
        ({"kind": "latency", "count": 0}, "'count' must be in"),
        ({"kind": "latency", "probability": 2}, "'probability' must be in [0, 1]"),
        ({"kind": "bad_ids"}, "'ids' is required"),
        ({"kind": "rate_limit", "variant": "x"}, "'variant' must be one of"),
        ("error", "must be a JSON object"),
    ],
)
def test_fault_specs_are_validated(spec: Any, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_faults(spec)


def test_fault_spec_defaults() -> None:
    (fault,) = parse_faults({"kind": "timeout"})
    assert fault.to_json() == {
        "kind": "timeout",
        "count": None,
        "probability": 1.0,
        "api": "inventory",
        "seconds": 30.0,
        "remaining": None,
    }
    assert parse_faults([{"kind": "extra_ids"}])[0].extra == 3
    assert parse_faults({"kind": "missing_ids"})[0].fraction == 0.5


# -- rate limits ----------------------------------------------------------------------------


async def test_spike_arrest(session: aiohttp.ClientSession) -> None:
    async with Simulator(rate_limit=(3, 0.4)) as sim:
        results = [await call(session, sim, ["A"]) for _ in range(6)]
        assert [status for status, _, _ in results] == [200, 200, 200, 429, 429, 429]
        assert results[3][1] == {
            "fault": {
                "faultstring": "Spike arrest violation. Allowed rate : 3p0.4s",
                "detail": {"errorcode": "policies.ratelimit.SpikeArrestViolation"},
            }
        }
        await asyncio.sleep(0.45)
        assert (await call(session, sim, ["A"]))[0] == 200
        accepted = [r for r in sim.log if r.status == 200]
        assert max_in_window(accepted, 0.4) <= 3
        assert max_in_window(sim.log, 0.4) == 6
    async with Simulator(rate_limit=(5, 1)) as sim:
        statuses = [(await call(session, sim, ["A"]))[:2] for _ in range(6)]
        assert statuses[5][1]["fault"]["faultstring"].endswith("Allowed rate : 5ps")


async def test_quota_headers_and_reset(session: aiohttp.ClientSession) -> None:
    clock = ManualClock(wall=7200.0 + 100.0)
    async with Simulator(quota=(2, 3600), clock=clock) as sim:
        seen = []
        for _ in range(4):
            status, body, headers = await call(session, sim, ["A"])
            seen.append(
                (
                    status,
                    headers["Rate-Limit"],
                    headers["Rate-Limit-Available"],
                    headers["Rate-Limit-Over"],
                )
            )
            assert headers["Rate-Limit-Reset"] == str(10_800_000)
        assert seen == [
            (200, "2", "1", "0"),
            (200, "2", "0", "0"),
            (429, "2", "0", "1"),
            (429, "2", "0", "2"),
        ]
        assert body["fault"]["detail"]["errorcode"] == "policies.ratelimit.QuotaViolation"
        assert body["fault"]["faultstring"].startswith(
            "Rate limit quota violation. Quota limit  exceeded. Identifier : "
        )
        clock.advance(3600)
        status, _, headers = await call(session, sim, ["A"])
        assert status == 200
        assert headers["Rate-Limit-Available"] == "1"
        assert headers["Rate-Limit-Reset"] == str(14_400_000)
        # Unauthenticated requests neither count nor carry the headers.
        status, _, headers = await call(session, sim, ["A"], key=None)
        assert status == 401
        assert "Rate-Limit" not in headers


# -- log and control ------------------------------------------------------------------------


def test_max_in_window() -> None:
    def rec(t: float) -> RequestRecord:
        return RequestRecord(t=t, wall=t, method="GET", n_ids=1, region=None, status=200)

    records = [rec(t) for t in (2.25, 0.0, 0.25, 0.5, 2.0, 2.125, 2.375, 5.0)]
    assert max_in_window(records, 3.0) == 7  # 0.0 .. 2.375
    assert max_in_window(records, 1.0) == 4  # 2.0 .. 2.375
    assert max_in_window(records, 0.25) == 2  # times exactly 0.25 apart are in different windows
    assert max_in_window([], 1.0) == 0


async def test_request_log(session: aiohttp.ClientSession) -> None:
    async with Simulator() as sim:
        await call(session, sim, ["A", "B"], params={"region": "UK"})
        await call(session, sim, ["A"], key=None)
        first, second = sim.log
        assert (first.method, first.n_ids, first.region, first.status) == ("GET", 2, "UK", 200)
        assert first.ids is None
        assert second.status == 401
        assert first.t <= second.t
        assert abs(first.wall - time.time()) < 60
        sim.log.clear()
        assert len(sim.log) == 0
    async with Simulator(record_ids=True) as sim:
        await call(session, sim, ["A", "B"])
        assert sim.log[0].ids == ("A", "B")


async def test_control_endpoints(session: aiohttp.ClientSession) -> None:
    async with Simulator(record_ids=True, clock=ManualClock()) as sim:
        control = sim.url + "/_sim"
        await call(session, sim, ["A"])
        async with session.get(control + "/requests") as resp:
            (record,) = await resp.json()
        assert record["ids"] == ["A"]
        assert record["status"] == 200
        async with session.delete(control + "/requests") as resp:
            assert await resp.json() == {"cleared": 1}
        assert len(sim.log) == 0

        async with session.post(control + "/faults", json={"kind": "error", "count": 1}) as resp:
            assert resp.status == 200
        specs = [{"kind": "latency", "seconds": 0}, {"kind": "lowercase_key"}]
        async with session.post(control + "/faults", json=specs) as resp:
            assert len(await resp.json()) == 2
        async with session.post(control + "/faults", json={"kind": "nope"}) as resp:
            assert resp.status == 400
            assert "kind" in (await resp.json())["error"]
        async with session.get(control + "/faults") as resp:
            listed = await resp.json()
        assert [f["kind"] for f in listed] == ["error", "latency", "lowercase_key"]
        assert listed[0]["remaining"] == 1
        assert (await call(session, sim, ["A"]))[0] == 503
        async with session.delete(control + "/faults") as resp:
            assert await resp.json() == {"cleared": 2}
        assert sim.faults.active() == []

        script = {"A": {"status": "FEW_TICKETS_LEFT", "resaleStatus": "UNKNOWN"}}
        async with session.post(control + "/events", json=script) as resp:
            assert await resp.json() == {"scripted": 1}
        _, body, _ = await call(session, sim, ["A"])
        assert body == [{"eventId": "A", "status": "FEW_TICKETS_LEFT", "resaleStatus": "UNKNOWN"}]
        async with session.post(control + "/events", json={"A": "x"}) as resp:
            assert resp.status == 400
        async with session.delete(control + "/events") as resp:
            assert resp.status == 200
        assert sim.world.scripted == {}

        async with session.post(control + "/rate-limit", json={"requests": 1, "per_seconds": 60}):
            pass
        assert sim.rate_limit == (1, 60.0)
        statuses = [(await call(session, sim, ["A"]))[0] for _ in range(2)]
        assert statuses == [200, 429]
        async with session.post(control + "/rate-limit", json=None) as resp:
            assert await resp.json() is None
        assert (await call(session, sim, ["A"]))[0] == 200
        async with session.post(control + "/rate-limit", json={"requests": 0}) as resp:
            assert resp.status == 400

        async with session.post(control + "/quota", json={"calls": 1, "period_seconds": 60}):
            pass
        assert sim.quota == (1, 60.0)
        assert (await call(session, sim, ["A"]))[2]["Rate-Limit"] == "1"
        async with session.post(control + "/quota", json=None):
            pass
        assert "Rate-Limit" not in (await call(session, sim, ["A"]))[2]


async def test_serve_from_args(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--port",
            "0",
            "--seed",
            "2",
            "--api-key",
            KEY,
            "--no-evolve",
            "--rate-limit",
            "5/1",
            "--quota",
            "5000/86400",
            "--fault",
            '{"kind": "error", "count": 1}',
            "--fault",
            '[{"kind": "latency", "seconds": 0}]',
        ]
    )
    assert args.rate_limit == (5, 1.0)
    assert len([f for group in args.faults for f in group]) == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--fault", '{"kind": "nope"}'])
    capsys.readouterr()

    server = asyncio.create_task(serve_from_args(args))
    url = ""
    for _ in range(200):
        await asyncio.sleep(0.01)
        url = capsys.readouterr().out.strip().rpartition(" ")[2]
        if url:
            break
    assert url.startswith("http://127.0.0.1:")
    async with aiohttp.ClientSession() as session:
        query = {"apikey": KEY, "events": "A"}
        async with session.get(url + PATH, params=query) as resp:
            assert resp.status == 503
            assert resp.headers["Rate-Limit"] == "5000"
        async with session.get(url + PATH, params=query) as resp:
            assert await resp.json() == [
                {"eventId": "A", "status": TICKETS_AVAILABLE, "resaleStatus": TICKETS_AVAILABLE}
            ]
    server.cancel()
    with pytest.raises(asyncio.CancelledError):
        await server

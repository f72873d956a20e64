"""The Partner API client against misbehaving answers (body caps, wait caps) and against the
wrong kind of event ID (most lookups 404: said once, in the log and a metric)."""

from __future__ import annotations

import asyncio
import json
import time
import tracemalloc

import aiohttp
import orjson
import pytest
from aiohttp import web

from monitor.poller.budget import RateBudget
from monitor.secrets import Secret
from monitor.upstream.partner import (
    NotFoundWatch,
    PartnerClient,
    PartnerRequestError,
    PartnerUnavailable,
)
from tests.conftest import make_config

MB = 1024 * 1024
_CHUNK = b'{"event": {"name": "x"}}' * 2700


async def _token(request: web.Request) -> web.StreamResponse:
    body = {"access_token": "tok3n-value-abc", "expires_in": "3599", "token_type": "BearerToken"}
    return web.json_response(body)


async def _endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    while True:
        await resp.write(_CHUNK)


async def _absurd_429(request: web.Request) -> web.StreamResponse:
    return web.Response(status=429, body=b"{}", headers={"Retry-After": "99999999999999999999"})


async def _serve(details) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/partners/v1/oauth/accesstoken", _token)
    app.router.add_get("/partners/v1/event/{eid}", details)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/partners/v1"


def _client(session: aiohttp.ClientSession, url: str, **kw) -> PartnerClient:
    return PartnerClient(
        session=session,
        base_url=url,
        api_key=Secret("partner-key-123"),
        client_secret=Secret("partner-secret-456"),
        budget=RateBudget(100, 1.0),
        timeout_seconds=5.0,
        **kw,
    )


async def test_an_endless_details_answer_is_cut_at_the_cap_in_bounded_memory():
    runner, url = await _serve(_endless)
    seen: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            client = _client(session, url, on_request=lambda e, o, s: seen.append(o))
            tracemalloc.start()
            try:
                started = time.monotonic()
                with pytest.raises(PartnerUnavailable) as caught:
                    await client.get_event("3F004EC9D1EBBC76")
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            await client.close()
        assert caught.value.outcome == "too_large"
        assert seen == ["ok", "too_large"]  # the token, then the refused details
        assert peak < 8 * MB, f"peak {peak / MB:.1f} MB"
        assert time.monotonic() - started < 5
    finally:
        await runner.cleanup()


async def test_an_absurd_retry_after_is_capped():
    runner, url = await _serve(_absurd_429)
    try:
        async with aiohttp.ClientSession() as session:
            client = _client(session, url, max_retry_after=120.0)
            with pytest.raises(PartnerUnavailable) as caught:
                await client.get_event("3F004EC9D1EBBC76")
            await client.close()
        assert caught.value.outcome == "rate_limited"
        assert caught.value.retry_after == 120.0
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("outcomes", "said_at"),
    [
        pytest.param([True] * 30, [19], id="all-404-said-once-at-20"),
        pytest.param([False] * 30, [], id="none"),
        pytest.param([True, False, False] * 30, [], id="a-third-is-not-most"),
        pytest.param(
            [True] * 25 + [False] * 100 + [True] * 100, [19, 175], id="said-again-after-recovery"
        ),
        pytest.param([True] * 10, [], id="too-few-to-say"),
    ],
)
def test_not_found_watch(outcomes, said_at):
    watch = NotFoundWatch(window=100, least=20, most=0.5)
    said = [i for i, missed in enumerate(outcomes) if watch.record(missed)]
    assert said == said_at
    assert 0.0 <= watch.share <= 1.0


async def test_discovery_ids_at_the_partner_api_are_pointed_out_once(
    sim, tmp_path, start_daemon, log_stream
):
    ids = [f"17AOv8G6G5rI{i:03d}" for i in range(30)]  # Discovery-style: not Partner IDs
    for eid in ids[:5]:
        sim.partner.set_event(eid, time_zone="Europe/Berlin")  # mapped: answered
    body = (
        f"watch_sets:\n  - {{name: main, events: [{', '.join(ids)}]}}\n"
        f"partner: {{base_url: '{sim.partner_url}', api_key: partner-key-123, "
        "client_secret: partner-secret-456, rate_limit: {requests: 200, per_seconds: 1}}\n"
    )
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body))
    metric = d.metrics.registry.get_sample_value
    labels = {"api": "partner", "outcome": "not_found"}
    deadline = time.monotonic() + 10
    while (metric("availability_monitor_upstream_requests_total", labels) or 0) < 25:
        assert time.monotonic() < deadline, "lookups did not finish"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)
    assert metric("availability_monitor_partner_not_found_ratio") == pytest.approx(25 / 30)
    lines = [
        json.loads(x)
        for x in log_stream.getvalue().splitlines()
        if x.startswith("{") and "partner_event_id" in x
    ]
    assert len(lines) == 1
    assert lines[0]["level"] == "warning"
    assert metric("availability_monitor_upstream_requests_total", labels) == 25
    assert orjson.dumps(lines)  # a plain JSON line


async def test_a_redirect_is_not_followed_and_carries_the_key_nowhere():
    elsewhere: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        elsewhere.append(str(request.rel_url))
        return web.json_response({"event": {"name": "stolen"}})

    trap = web.Application()
    trap.router.add_route("*", "/{tail:.*}", record)
    trap_runner = web.AppRunner(trap, access_log=None)
    await trap_runner.setup()
    site = web.TCPSite(trap_runner, "127.0.0.1", 0)
    await site.start()
    trap_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(f"{trap_url}/steal?{request.query_string}")

    runner, url = await _serve(redirect)
    try:
        async with aiohttp.ClientSession() as session:
            client = _client(session, url)
            with pytest.raises(PartnerRequestError) as caught:
                await client.get_event("3F004EC9D1EBBC76")
            await client.close()
        assert caught.value.status == 302
        assert "partner-key-123" not in str(caught.value)
        assert elsewhere == []
    finally:
        await runner.cleanup()
        await trap_runner.cleanup()

"""The marketplace client against misbehaving answers: the body is read within a cap (an endless
stream, a gzip bomb), and an absurd Retry-After is capped, for the retry policy and the shared
budget alike. Against an aiohttp stand-in on loopback."""

from __future__ import annotations

import time
import tracemalloc
import zlib

import aiohttp
import pytest
from aiohttp import web

from monitor.poller.budget import RateBudget
from monitor.secrets import Secret
from monitor.upstream.marketplace import MarketplaceClient, MarketplaceUnavailable, RetryPolicy

MB = 1024 * 1024
_CHUNK = b'{"id": 1, "price": "1.00"},' * 2400


async def _endless(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(b'{"inventory": [')
    while True:
        await resp.write(_CHUNK)


_BOMB = zlib.compress(bytes(64 * MB), 9)  # 64 KB inflating to 64 MB


async def _bomb(request: web.Request) -> web.StreamResponse:
    return web.Response(
        body=_BOMB, headers={"Content-Type": "application/json", "Content-Encoding": "deflate"}
    )


async def _absurd_429(request: web.Request) -> web.StreamResponse:
    return web.Response(status=429, body=b"{}", headers={"Retry-After": "1e20"})


async def _serve(handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_patch("/v9/inventory", handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


@pytest.mark.parametrize("handler", [_endless, _bomb], ids=["endless-stream", "deflate-bomb"])
async def test_an_oversized_answer_is_refused_in_bounded_memory(handler):
    runner, url = await _serve(handler)
    outcomes: list[str] = []
    try:
        async with aiohttp.ClientSession() as session:
            client = MarketplaceClient(
                session=session,
                base_url=url,
                api_token=Secret("mkt-token-123"),
                on_request=lambda outcome, seconds: outcomes.append(outcome),
            )
            tracemalloc.start()
            try:
                started = time.monotonic()
                with pytest.raises(MarketplaceUnavailable) as caught:
                    await client.bulk_update([1, 2, 3], {"price": "10.00"})
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
        assert caught.value.outcome == "too_large"
        assert outcomes == ["too_large"]
        assert peak < 24 * MB, f"peak {peak / MB:.1f} MB"  # the default cap is 8 MB
        assert time.monotonic() - started < 5
    finally:
        await runner.cleanup()


async def test_an_absurd_retry_after_is_capped_for_the_policy_and_the_budget():
    runner, url = await _serve(_absurd_429)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    try:
        async with aiohttp.ClientSession() as session:
            budget = RateBudget(100, 1.0)
            client = MarketplaceClient(
                session=session,
                base_url=url,
                api_token=Secret("mkt-token-123"),
                budget=budget,
                retry=RetryPolicy(max_retries=0, rand=lambda: 0.5, sleep=sleep),
                max_retry_after=60.0,
            )
            with pytest.raises(MarketplaceUnavailable) as caught:
                await client.bulk_update([1], {"price": "10.00"})
        assert caught.value.retry_after == 60.0
        assert RetryPolicy(rand=lambda: 0.5).delay(0, caught.value.retry_after) == 60.0
        assert waits == []
        assert 50 < budget.paused_for <= 60.0  # the shared budget too: a minute, not 10**20 s
    finally:
        await runner.cleanup()


async def test_a_redirect_is_not_followed_and_carries_the_token_nowhere():
    elsewhere: list[str] = []

    async def record(request: web.Request) -> web.StreamResponse:
        elsewhere.append(request.headers.get("Authorization", ""))
        return web.json_response({"inventory": []})

    trap = web.Application()
    trap.router.add_route("*", "/{tail:.*}", record)
    trap_runner = web.AppRunner(trap, access_log=None)
    await trap_runner.setup()
    site = web.TCPSite(trap_runner, "127.0.0.1", 0)
    await site.start()
    trap_url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPTemporaryRedirect(f"{trap_url}/v9/inventory")

    runner, url = await _serve(redirect)
    try:
        async with aiohttp.ClientSession() as session:
            client = MarketplaceClient(
                session=session, base_url=url, api_token=Secret("mkt-token-123")
            )
            result = await client.bulk_update([1, 2], {"price": "10.00"})
        assert result.outcome == "rejected"  # a 3xx is a refusal of that request, not followed
        assert elsewhere == []
    finally:
        await runner.cleanup()
        await trap_runner.cleanup()

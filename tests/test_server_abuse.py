"""The listener under abuse, on loopback: heads bounded in size and time, connections capped,
malformed requests counted, and /metrics, /healthz, /readyz answering through it all."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from monitor.server.listener import ServerLimits, connection_cap
from tests.conftest import make_config
from tests.rawhttp import raw_request, request_bytes

BODY = "watch_sets:\n  - {name: main, interval_seconds: 1, events: [SLOW1]}\n"


async def probe(url: str, path: str) -> tuple[int, float]:
    started = time.monotonic()
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s,
        s.get(url + path) as r,
    ):
        await r.read()
        return r.status, time.monotonic() - started


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes | None:
    """What the server sent before closing, or None when it kept the connection open."""
    try:
        return await asyncio.wait_for(reader.read(), seconds)
    except TimeoutError:
        return None


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not exported")


async def metrics_text(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        return await r.text()


@pytest.mark.parametrize(
    ("name", "request_"),
    [
        ("long-line", request_bytes("GET", "/healthz?" + "a" * 9000)),
        ("long-header", request_bytes("GET", "/healthz", headers={"X-Big": b"b" * 9000})),
        ("many-headers", request_bytes(
            "GET", "/healthz", headers={f"X-H{i}": b"v" for i in range(70)})),
    ],
)  # fmt: skip
async def test_heads_over_the_limits_are_refused(sim, tmp_path, start_daemon, name, request_):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", BODY))
    status, _ = await raw_request(d.url, request_)
    assert status in (400, 431), name
    assert (await probe(d.url, "/healthz"))[0] == 200
    fits = request_bytes("GET", "/healthz", headers={f"X-H{i}": b"v" * 100 for i in range(50)})
    assert (await raw_request(d.url, fits))[0] == 200


async def test_a_head_sent_a_byte_a_second_is_cut_off(sim, tmp_path, start_daemon):
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", BODY), server_limits=ServerLimits(head_seconds=2)
    )
    reader, writer = await connect(d.url)
    started = time.monotonic()
    head = request_bytes("GET", "/healthz", headers={"X-Slow": b"x" * 30})
    closed_at = None
    for byte in head:
        if reader.at_eof():
            closed_at = time.monotonic()
            break
        writer.write(bytes([byte]))
        try:
            await writer.drain()
        except ConnectionError:
            closed_at = time.monotonic()
            break
        try:
            await asyncio.wait_for(reader.read(1), 0.5)  # a byte every half second
        except TimeoutError:
            continue
        closed_at = time.monotonic()  # EOF (or an answer: the head was complete - not here)
        break
    writer.close()
    assert closed_at is not None, "a slow head kept its connection"
    assert 1.5 <= closed_at - started <= 4.0


async def test_a_body_that_never_ends_is_408(sim, tmp_path, start_daemon):
    from monitor.secrets import Secret

    cfg = make_config(sim.url, tmp_path / "s.db", BODY)
    cfg = cfg.model_copy(
        update={"server": cfg.server.model_copy(update={"admin_token": Secret("t0k-slow-body")})}
    )
    d = await start_daemon(cfg, server_limits=ServerLimits(body_seconds=1))
    reader, writer = await connect(d.url)
    writer.write(
        b"POST /v1/watch-sets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0k-slow-body\r\n"
        b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"name": '
    )
    await writer.drain()
    started = time.monotonic()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.1 408") and b"Connection: close" in head
    assert 0.8 <= time.monotonic() - started <= 3


async def test_malformed_requests_are_counted_not_logged_each(
    sim, tmp_path, start_daemon, log_stream
):
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", BODY))
    garbage = [
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40,  # a TLS hello
        b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"BREW /pot HTCPCP/1.0\r\n\r\n",
        b"GET /healthz HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    ]
    for i in range(200):
        reader, writer = await connect(d.url)
        writer.write(garbage[i % len(garbage)])
        await writer.drain()
        await closed_within(reader, 2)
        writer.close()
    text = await metrics_text(d.url)
    assert metric(text, "availability_monitor_http_bad_requests_total") == 200
    lines = [orjson.loads(x) for x in log_stream.getvalue().splitlines() if x.startswith("{")]
    logged = [x for x in lines if x.get("logger") in ("monitor.server", "aiohttp.server")]
    assert 1 <= len(logged) <= 8, logged
    assert all(x["level"] == "warning" for x in logged)
    assert "Traceback" not in log_stream.getvalue()
    assert (await probe(d.url, "/healthz"))[0] == 200


async def test_connections_over_the_cap_get_503_and_close(sim, tmp_path, start_daemon):
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", BODY),
        server_limits=ServerLimits(max_connections=40),
    )
    held = [await connect(d.url) for _ in range(40)]
    await asyncio.sleep(0.1)
    reader, writer = await connect(d.url)
    answer = await closed_within(reader, 3)
    writer.close()
    assert answer is not None and answer.startswith(b"HTTP/1.1 503")
    assert b"too many connections" in answer
    for _, w in held:
        w.close()
    await asyncio.sleep(0.2)
    text = await metrics_text(d.url)
    assert metric(text, "availability_monitor_http_connections_refused_total") == 1
    assert metric(text, "availability_monitor_http_connections_open") <= 2


def test_the_cap_stays_under_half_the_file_limit():
    assert connection_cap(ServerLimits(), 1024) == 512
    assert connection_cap(ServerLimits(), 65536) == 4096
    assert connection_cap(ServerLimits(max_connections=100), 65536) == 100


async def test_probes_answer_while_a_thousand_slow_connections_are_open(
    sim, tmp_path, start_daemon
):
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", BODY), server_limits=ServerLimits(head_seconds=4)
    )
    await d.scheduler.run_once()
    slow = await asyncio.gather(*(connect(d.url) for _ in range(1000)))
    for _, writer in slow:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    for _ in range(3):
        for path in ("/healthz", "/metrics", "/readyz"):
            status, seconds = await probe(d.url, path)
            assert status == 200 and seconds < 2.0, (path, status, seconds)
        for _, writer in slow:
            writer.write(b"x")  # one more byte each: still no whole head
        await asyncio.sleep(0.3)
    text = await metrics_text(d.url)
    assert metric(text, "availability_monitor_http_connections_open") >= 1000
    left = 4.0 - (time.monotonic() - started) + 2.0
    answers = await asyncio.gather(*(closed_within(r, left) for r, _ in slow))
    assert all(a is not None for a in answers), "slow heads outlived their deadline"
    for _, writer in slow:
        writer.close()
    assert (await probe(d.url, "/healthz"))[0] == 200

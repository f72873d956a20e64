"""Hostile Inventory Status answers over real HTTP: each is a counted, logged failure of that
request, memory stays bounded (measured with tracemalloc), and no false transition is recorded.
The stand-in upstream is tests/hostile.py."""

from __future__ import annotations

import asyncio
import gc
import json
import struct
import time
import tracemalloc
import zlib
from functools import cache

import orjson
import pytest
from aiohttp import web

from monitor.domain import Transition
from tests.conftest import API_KEY, make_config
from tests.hostile import Hostile, answer

A, B = "EVTAAAAAAAAAAAA1", "EVTBBBBBBBBBBBB2"
MB = 1024 * 1024
MEMORY_BOUND = (
    16 * MB
)  # peak traced allocation while a hostile answer is read and refused (4 MB cap)


class Collect:
    def __init__(self) -> None:
        self.seen: list[Transition] = []

    async def notify(self, transitions: list[Transition]) -> None:
        self.seen.extend(transitions)


def one_set(*ids: str) -> str:
    return (
        f"watch_sets:\n  - name: main\n    interval_seconds: 60\n    events: [{', '.join(ids)}]\n"
    )


def outcome_count(d, outcome: str) -> float:
    return (
        d.metrics.registry.get_sample_value(
            "availability_monitor_upstream_requests_total",
            {"api": "inventory", "outcome": outcome},
        )
        or 0.0
    )


def failures(stream) -> list[dict]:
    out = []
    for line in stream.getvalue().splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            if rec.get("event") == "upstream request failed":
                out.append(rec)
    return out


@cache
def gzip_bomb() -> bytes:
    """A valid gzip stream of about 1 MB that inflates to 1 GiB of zeros: one self-contained
    deflate block of 1 MiB of zeros, repeated 1024 times."""
    zeros = bytes(MB)
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = packer.compress(zeros) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(1024):
        crc = zlib.crc32(zeros, crc)
    end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + block * 1024 + end + struct.pack("<II", crc, (1 << 30) & 0xFFFFFFFF)


async def bomb(request: web.Request, ids: list[str]) -> web.StreamResponse:
    return web.Response(
        body=gzip_bomb(), headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )


_CHUNK = b'{"eventId":"X","status":"TICKETS_AVAILABLE"},' * 1400  # ~64 KB


async def endless(request: web.Request, ids: list[str]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(b"[")
    while True:  # until the client hangs up
        await resp.write(_CHUNK)


async def fifty_mb_chunked(request: web.Request, ids: list[str]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    for _ in range(50 * MB // len(_CHUNK)):
        await resp.write(_CHUNK)
    return resp


async def fifty_mb_declared(request: web.Request, ids: list[str]) -> web.StreamResponse:
    # Written a piece at a time, so that the stand-in's own memory stays out of the measure.
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    n = 50 * MB // len(_CHUNK)
    resp.content_length = n * len(_CHUNK)
    await resp.prepare(request)
    for _ in range(n):
        await resp.write(_CHUNK)
    return resp


@cache
def million_objects() -> bytes:
    return b"[" + b"{}," * 999_999 + b"{}]"


async def many_objects(request: web.Request, ids: list[str]) -> web.StreamResponse:
    return web.Response(body=million_objects(), content_type="application/json")


async def deep(request: web.Request, ids: list[str]) -> web.StreamResponse:
    return web.Response(body=b"[" * 200_000 + b"]" * 200_000, content_type="application/json")


async def trickle(request: web.Request, ids: list[str]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    while True:  # a byte every 100 ms: never idle long, never done
        await resp.write(b" ")
        await asyncio.sleep(0.1)


HOSTILE = [
    pytest.param(bomb, "too_large", id="gzip-bomb-1MB-to-1GB"),
    pytest.param(fifty_mb_declared, "too_large", id="50MB-body-declared"),
    pytest.param(fifty_mb_chunked, "too_large", id="50MB-body-chunked"),
    pytest.param(endless, "too_large", id="endless-chunked-stream"),
    pytest.param(many_objects, "too_many_objects", id="a-million-objects"),
    pytest.param(deep, "too_many_objects", id="nested-200000-deep"),
]


@pytest.mark.parametrize(("handler", "outcome"), HOSTILE)
async def test_a_hostile_answer_is_a_counted_failure_in_bounded_memory(
    tmp_path, start_daemon, log_stream, handler, outcome
):
    got = Collect()
    async with Hostile() as up:
        cfg = make_config(up.url, tmp_path / "s.db", one_set(A, B), upstream="max_retries: 0\n")
        d = await start_daemon(cfg, notifiers=[got])
        assert (await d.scheduler.run_once())["main"].ok == 2
        before = d.live.observed_at[A]
        up.statuses[A] = "TICKETS_NOT_AVAILABLE"
        up.then(handler)
        gzip_bomb(), million_objects()  # built before measuring
        gc.collect()
        tracemalloc.start()
        try:
            base = tracemalloc.get_traced_memory()[0]
            started = time.monotonic()
            report = (await d.scheduler.run_once())["main"]
            took = time.monotonic() - started
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            tracemalloc.stop()
        assert report.failed == 2 and report.ok == 0
        assert peak < MEMORY_BOUND, f"peak {peak / MB:.1f} MB"
        assert took < 5
        assert outcome_count(d, outcome) == 1
        (line,) = failures(log_stream)
        assert line["outcome"] == outcome
        assert got.seen == []
        assert d.live.observed_at[A] == before
        assert d.live.status(A) == "TICKETS_AVAILABLE"
        # The next well-formed answer is taken: the change is seen, once.
        assert (await d.scheduler.run_once())["main"].ok == 2
        assert [(t.event_id, t.current) for t in got.seen] == [(A, "TICKETS_NOT_AVAILABLE")]


async def test_a_trickling_body_ends_at_the_total_timeout(tmp_path, start_daemon, log_stream):
    async with Hostile() as up:
        up.then(trickle)
        cfg = make_config(
            up.url, tmp_path / "s.db", one_set(A), upstream="max_retries: 0\ntimeout_seconds: 1\n"
        )
        d = await start_daemon(cfg)
        started = time.monotonic()
        report = (await d.scheduler.run_once())["main"]
        took = time.monotonic() - started
        assert report.failed == 1
        assert 0.9 <= took < 3
        assert outcome_count(d, "timeout") == 1


async def test_the_answer_cap_is_configurable(tmp_path, start_daemon):
    ids = [f"EVT{i:013d}" for i in range(1000)]
    async with Hostile() as up:
        cfg = make_config(
            up.url,
            tmp_path / "s.db",
            one_set(*ids),
            upstream="max_answer_bytes: 65536\nmax_retries: 0\nmethod: POST\n",
        )
        d = await start_daemon(cfg)
        report = (await d.scheduler.run_once())["main"]
        # A 1000-event answer is ~60 KB with status only; with resale status it is more.
        assert len(up.body(ids)) < 65536
        assert report.ok == 1000
        up.then(answer(200, b"[" + b" " * 70000 + b"]", {"Content-Type": "application/json"}))
        assert (await d.scheduler.run_once())["main"].failed == 1000
        assert outcome_count(d, "too_large") == 1


def _twice(first: str, second: str):
    async def handle(request: web.Request, ids: list[str]) -> web.StreamResponse:
        rows = [{"eventId": i, "status": "TICKETS_AVAILABLE"} for i in ids if i != A]
        rows += [{"eventId": A, "status": first}, {"eventId": A, "status": second}]
        return web.Response(body=orjson.dumps(rows), content_type="application/json")

    return handle


async def test_an_event_named_twice_with_different_statuses_gives_no_observation(
    tmp_path, start_daemon, log_stream
):
    got = Collect()
    async with Hostile() as up:
        cfg = make_config(up.url, tmp_path / "s.db", one_set(A, B))
        d = await start_daemon(cfg, notifiers=[got])
        await d.scheduler.run_once()
        before = d.live.observed_at[A]
        up.then(_twice("TICKETS_NOT_AVAILABLE", "TICKETS_AVAILABLE"))
        report = (await d.scheduler.run_once())["main"]
        assert report.ok == 2  # the request succeeded; A alone has no observation from it
        assert d.live.observed_at[A] == before
        assert d.live.observed_at[B] > before
        await d.scheduler.run_once()  # the next normal answer: nothing to reverse
        assert got.seen == []
        assert (
            d.metrics.registry.get_sample_value(
                "availability_monitor_upstream_conflicting_events_total"
            )
            == 1
        )
        assert "names events twice with different statuses" in log_stream.getvalue()


async def test_an_event_named_twice_with_the_same_status_is_observed(tmp_path, start_daemon):
    got = Collect()
    async with Hostile() as up:
        d = await start_daemon(
            make_config(up.url, tmp_path / "s.db", one_set(A, B)), notifiers=[got]
        )
        await d.scheduler.run_once()
        up.then(_twice("FEW_TICKETS_LEFT", "FEW_TICKETS_LEFT"))
        await d.scheduler.run_once()
        assert [(t.event_id, t.current) for t in got.seen] == [(A, "FEW_TICKETS_LEFT")]


async def test_a_redirect_is_not_followed_and_the_key_goes_nowhere(
    tmp_path, start_daemon, log_stream
):
    async with Hostile() as up, Hostile() as elsewhere:
        target = f"{elsewhere.url}/inventory-status/v1/availability?apikey={API_KEY}&events={A}"
        for status in (301, 302, 307, 308):
            up.then(answer(status, b"", {"Location": target}))
        cfg = make_config(up.url, tmp_path / "s.db", one_set(A), upstream="max_retries: 0\n")
        d = await start_daemon(cfg)
        for _ in range(4):
            assert (await d.scheduler.run_once())["main"].failed == 1
        assert elsewhere.seen == []
        assert outcome_count(d, "redirect") == 4
        assert API_KEY not in log_stream.getvalue()

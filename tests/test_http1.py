"""The webhook HTTP/1.1 client against real servers on loopback: framing, keep-alive, failures,
the SSRF guard at connect time, and TLS."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from monitor.notify.http1 import MAX_BODY, Http1Client, HttpError
from monitor.notify.ssrf import GuardedResolver

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class FakeDns(AbstractResolver):
    """Fixed answers through the real resolver interface."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        ip = self.records[host]
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return [{"hostname": host, "host": ip, "port": port, "family": fam, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


def client(deny_private: bool = False, **kw: object) -> Http1Client:
    dns = FakeDns({"hooks.test": "127.0.0.1", "metadata.test": "169.254.169.254"})
    return Http1Client(
        resolver=GuardedResolver(dns, deny_private=deny_private),
        user_agent="test/1",
        **kw,  # type: ignore[arg-type]
    )


async def read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = 0
    for line in head.split("\r\n"):
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    return head, await reader.readexactly(length)


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[int]]]:
    """Start a raw TCP server on loopback with a connection handler; returns its port."""
    servers: list[asyncio.Server] = []
    handling: set[asyncio.Task[object]] = set()

    async def start(handler: Handler) -> int:
        async def each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handling.add(task)
            try:
                await handler(reader, writer)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
                handling.discard(task)

        server = await asyncio.start_server(each, "127.0.0.1", 0)
        servers.append(server)
        return int(server.sockets[0].getsockname()[1])

    yield start
    for task in list(handling):
        task.cancel()
    await asyncio.gather(*handling, return_exceptions=True)
    for s in servers:
        s.close()
        await s.wait_closed()


async def test_a_post_its_headers_and_one_kept_alive_connection(serve) -> None:  # type: ignore[no-untyped-def]
    seen: list[tuple[str, bytes]] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                seen.append(await read_request(reader))
            except asyncio.IncompleteReadError:
                writer.close()
                return
            writer.write(b"HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\nX-Thing: a\r\n\r\nok")

    port = await serve(handler)
    c = client()
    for n in range(3):
        answer = await c.post(
            f"http://hooks.test:{port}/in?x=1", {"webhook-id": f"m{n}"}, b"{}", 5.0
        )
        assert answer.status == 202 and answer.headers["x-thing"] == "a"
    await c.close()
    assert connections == 1
    head, body = seen[0]
    assert head.startswith("POST /in?x=1 HTTP/1.1\r\n") and body == b"{}"
    assert f"Host: hooks.test:{port}\r\n" in head and "webhook-id: m0\r\n" in head
    assert "Content-Length: 2\r\n" in head and "User-Agent: test/1\r\n" in head


@pytest.mark.parametrize(
    "answer",
    [
        # chunked, with an extension and a trailer, split at awkward places
        [
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n",
            b"0\r\nT: 1\r\n\r\n",
        ],
        # an interim answer first, then the real one, the body in two pieces
        [b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab", b"cde"],
        [b"HTTP/1.1 204 No Content\r\n\r\n"],
    ],
)
async def test_framings_that_keep_the_connection(serve, answer: list[bytes]) -> None:  # type: ignore[no-untyped-def]
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            for part in answer:
                writer.write(part)
                await writer.drain()
                await asyncio.sleep(0.01)

    port = await serve(handler)
    c = client()
    for _ in range(2):
        got = await c.post(f"http://127.0.0.1:{port}/", {}, b"x", 5.0)
        assert got.status in (200, 204)
    await c.close()
    assert connections == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\nuntil the end",  # no length: the body runs to the close
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1),  # not worth reading
    ],
)
async def test_answers_after_which_the_connection_is_not_kept(serve, answer: bytes) -> None:  # type: ignore[no-untyped-def]
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_request(reader)
        writer.write(answer)
        await writer.drain()
        await asyncio.sleep(0.2)  # the client answers without waiting for the close
        writer.close()

    port = await serve(handler)
    c = client()
    for _ in range(2):
        assert (await c.post(f"http://127.0.0.1:{port}/", {}, b"x", 5.0)).status == 200
    await c.close()
    assert connections == 2


async def test_an_idle_connection_the_server_closed_is_replaced_unnoticed(serve) -> None:  # type: ignore[no-untyped-def]
    served = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await read_request(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()  # keep-alive promised, yet closed: the next request finds it dead

    port = await serve(handler)
    c = client()
    for _ in range(3):
        assert (await c.post(f"http://127.0.0.1:{port}/", {}, b"x", 5.0)).status == 200
        await asyncio.sleep(0.05)
    await c.close()
    assert served == 3


async def test_failures_are_reported_not_hidden(serve) -> None:  # type: ignore[no-untyped-def]
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(10)

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH\r\n\r\n")

    async def hangs_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.close()

    c = client()
    with pytest.raises(TimeoutError):
        await c.post(f"http://127.0.0.1:{await serve(silent)}/", {}, b"x", 0.2)
    with pytest.raises(HttpError):
        await c.post(f"http://127.0.0.1:{await serve(garbage)}/", {}, b"x", 5.0)
    with pytest.raises(ConnectionError):
        await c.post(f"http://127.0.0.1:{await serve(hangs_up)}/", {}, b"x", 5.0)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there
    with pytest.raises(ConnectionRefusedError):
        await c.post(f"http://127.0.0.1:{port}/", {}, b"x", 5.0)
    await c.close()


async def test_the_ssrf_guard_refuses_at_connect_time(serve) -> None:  # type: ignore[no-untyped-def]
    c = client(deny_private=True)
    with pytest.raises(OSError, match=r"refused to connect to hooks\.test"):
        await c.post("http://hooks.test:8080/x", {}, b"x", 5.0)
    with pytest.raises(OSError, match=r"refused to connect to metadata\.test"):
        await c.post("http://metadata.test/x", {}, b"x", 5.0)
    await c.close()


async def test_an_aiohttp_server_and_retry_after(tmp_path: Path) -> None:
    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=429, headers={"Retry-After": "30"}, text="slow down")

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    c = client()
    try:
        for _ in range(2):
            answer = await c.post(f"http://127.0.0.1:{port}/hook", {}, b"{}", 5.0)
            assert answer.status == 429 and answer.headers.get("retry-after") == "30"
    finally:
        await c.close()
        await runner.cleanup()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed")
async def test_https_verifies_the_certificate(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "1", "-subj", "/CN=hooks.test",
         "-addext", "subjectAltName=DNS:hooks.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await read_request(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        trusting = client(ssl_context=ssl.create_default_context(cafile=str(cert)))
        for _ in range(2):
            assert (await trusting.post(f"https://hooks.test:{port}/", {}, b"x", 5.0)).status == 200
        await trusting.close()
        doubting = client()  # the system's CAs: a self-signed certificate does not verify
        with pytest.raises(ssl.SSLCertVerificationError):
            await doubting.post(f"https://hooks.test:{port}/", {}, b"x", 5.0)
        await doubting.close()
    finally:
        server.close()

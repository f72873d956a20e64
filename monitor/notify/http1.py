"""A small HTTP/1.1 client for webhook POSTs: kept-alive connections and nothing else.

Why not aiohttp's client: at ~1,000 webhooks a second its per-request work was most of the
daemon's CPU (about 100 µs a POST on a 2-core machine, where this takes about a third of that),
and the burst of a poll answer, several hundred transitions at once, queued behind it. A webhook
needs little of HTTP: one POST with a small body, the status and a few headers back; no
redirects, cookies, proxies or compression.

Every new connection goes through the resolver it is given (the SSRF guard: `GuardedResolver`
refuses forbidden addresses after resolution); IP literals are the caller's to check. https
uses the default TLS context (certificates verified against the system's CAs).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

#: The largest response head read, and the largest body consumed to keep a connection.
MAX_HEAD = 65536
MAX_BODY = 65536


class HttpError(Exception):
    """The peer broke HTTP/1.1 (a malformed or oversized answer)."""


class Unanswered(ConnectionError):
    """The connection closed before any byte of an answer came."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A response: its status and headers (the body is read and dropped)."""

    status: int
    headers: CIMultiDictProxy[str]


@dataclass(frozen=True, slots=True)
class _Target:
    """What a URL means for a connection and a request, worked out once per URL."""

    origin: tuple[str, str, int]  # scheme, host, port
    host: str  # to resolve or connect to (IDNA-encoded, no brackets)
    port: int
    tls: bool
    literal: bool  # an IP address: connected to as is
    head: bytes  # request line, Host and User-Agent


class Http1Client:
    """POSTs over kept-alive HTTP/1.1 connections, pooled per origin (scheme, host, port)."""

    def __init__(
        self,
        *,
        resolver: AbstractResolver,
        user_agent: str,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 128,
        idle_seconds: float = 30.0,
    ) -> None:
        self._resolver = resolver
        self._user_agent = user_agent
        self._ssl = ssl_context
        self._max_idle = max_idle  # idle connections kept per origin
        self._idle_seconds = idle_seconds
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._targets: dict[str, _Target] = {}

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes, timeout: float
    ) -> Answer:
        """POST `body` with `headers` (Content-Length is added); TimeoutError after `timeout`
        seconds in all; OSError for connections that fail, HttpError for broken answers."""
        target = self._target(url)
        lines = [target.head]
        for name, value in headers.items():
            lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        lines.append(b"Content-Length: %d\r\n\r\n" % len(body))
        lines.append(body)
        request = b"".join(lines)
        async with asyncio.timeout(timeout):
            while True:
                conn = self._take_idle(target.origin)
                reused = conn is not None
                if conn is None:
                    conn = await self._connect(target)
                try:
                    answer = await conn.request(request)
                except Unanswered:
                    conn.close()
                    if reused:
                        continue  # the server had closed it while idle: once more, on a new one
                    raise
                except BaseException:
                    conn.close()  # a late answer must not be taken for the next request's
                    raise
                self._give_back(target.origin, conn)
                return answer

    async def close(self) -> None:
        """Close every connection (the resolver is the caller's, and stays open)."""
        for conn in list(self._open):
            conn.close()
        self._idle.clear()

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= 1024:
                self._targets.clear()
            target = self._targets[url] = self._parse(url)
        return target

    def _parse(self, url: str) -> _Target:
        u = URL(url)
        if u.scheme not in ("http", "https") or not u.raw_host or u.port is None:
            raise HttpError(f"not an http(s) URL with a host: {url}")
        host = u.raw_host
        literal = _is_ip(host)
        shown = f"[{host}]" if ":" in host else host
        if not u.is_default_port():
            shown += f":{u.port}"
        head = (
            f"POST {u.raw_path_qs or '/'} HTTP/1.1\r\nHost: {shown}\r\n"
            f"User-Agent: {self._user_agent}\r\n"
        ).encode("latin-1")
        return _Target((u.scheme, host, u.port), host, u.port, u.scheme == "https", literal, head)

    def _take_idle(self, origin: tuple[str, str, int]) -> _Connection | None:
        pool = self._idle.get(origin)
        now = asyncio.get_running_loop().time()
        while pool:
            conn = pool.pop()
            if conn.usable and now - conn.idle_since < self._idle_seconds:
                return conn
            conn.close()
        return None

    def _give_back(self, origin: tuple[str, str, int], conn: _Connection) -> None:
        pool = self._idle.setdefault(origin, [])
        if not conn.usable or len(pool) >= self._max_idle:
            conn.close()
            return
        conn.idle_since = asyncio.get_running_loop().time()
        pool.append(conn)

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        if target.literal:
            ip_family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
            addresses: list[tuple[str, int, int]] = [(target.host, target.port, ip_family)]
        else:
            # The SSRF guard's resolver raises OSError when every address is forbidden.
            found = await self._resolver.resolve(target.host, target.port, socket.AF_UNSPEC)
            addresses = [(r["host"], r["port"], r["family"]) for r in found]
        context = None
        if target.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        error: OSError = OSError(f"no address for {target.host}")
        for host, port, family_number in addresses:
            family = socket.AddressFamily(family_number)
            try:
                _, conn = await loop.create_connection(
                    lambda: _Connection(self._open),
                    host,
                    port,
                    family=family,
                    ssl=context,
                    server_hostname=target.host if context is not None else None,
                )
            except OSError as exc:
                error = exc
                continue
            return conn
        raise error


class _Connection(asyncio.Protocol):
    """One connection: one request at a time, its answer parsed as the bytes come."""

    def __init__(self, registry: set[_Connection]) -> None:
        self._registry = registry
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Answer] | None = None
        self._parser = _Parser()
        self._lost = False
        self._keep = True
        self.idle_since = 0.0

    @property
    def usable(self) -> bool:
        """Open, idle, and allowed to carry another request."""
        t = self._transport
        return self._keep and not self._lost and t is not None and not t.is_closing()

    def request(self, data: bytes) -> asyncio.Future[Answer]:
        """Send one request; the future is its answer."""
        assert self._transport is not None
        assert self._waiter is None
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._parser = _Parser()
        self._transport.write(data)
        return waiter

    def close(self) -> None:
        """Close now (unsent data dropped)."""
        self._keep = False
        if self._transport is not None:
            self._transport.abort()

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._registry.add(self)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None:
            self.close()  # bytes nobody asked for: this connection cannot be trusted
            return
        try:
            answer = self._parser.feed(data)
        except HttpError as exc:
            self._finish(exc)
            self.close()
            return
        if answer is not None:
            self._keep = self._parser.keep_alive
            self._finish(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._registry.discard(self)
        if self._waiter is not None:
            if self._parser.started:
                self._finish(ConnectionError("the connection closed in the middle of an answer"))
            else:
                self._finish(Unanswered("the connection closed before an answer"))

    def _finish(self, result: Answer | BaseException) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)


class _Parser:
    """An HTTP/1.1 response, fed as it arrives (RFC 9112 message framing)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._answer: Answer | None = None
        self._left = 0  # body bytes still expected (Content-Length) or of the current chunk
        # head | length | chunk-size | chunk-data | chunk-end | trailer | close (a body that runs
        # to the end of the connection, or one too large to read: answered at once, not kept)
        self._mode = "head"
        self._body = 0
        self.keep_alive = False
        self.started = False

    def feed(self, data: bytes) -> Answer | None:
        """Take bytes; the answer once the whole response is in (HttpError when broken)."""
        self.started = True
        self._buf += data
        while True:
            mode = self._mode
            if mode == "head":
                if not self._head():
                    return None
            elif mode == "length":
                take = min(self._left, len(self._buf))
                del self._buf[:take]
                self._left -= take
                if self._left:
                    return None
                return self._done()
            elif mode == "chunk-size":
                line = self._line()
                if line is None:
                    return None
                try:
                    self._left = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise HttpError("malformed chunk size") from None
                self._count(self._left)
                self._mode = "chunk-data" if self._left else "trailer"
            elif mode == "chunk-data":
                take = min(self._left, len(self._buf))
                del self._buf[:take]
                self._left -= take
                if self._left:
                    return None
                self._mode = "chunk-end"
            elif mode == "chunk-end":
                line = self._line()
                if line is None:
                    return None
                if line:
                    raise HttpError("malformed chunk")
                self._mode = "chunk-size"
            elif mode == "trailer":
                line = self._line()
                if line is None:
                    return None
                if not line:
                    return self._done()
            else:  # close: the body is not worth waiting for; the connection is not kept
                self._buf.clear()
                return self._answer

    def _head(self) -> bool:
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise HttpError("the answer's head is too large")
            return False
        lines = bytes(self._buf[:end]).decode("latin-1").split("\r\n")
        del self._buf[: end + 4]
        version, _, rest = lines[0].partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(code)
        headers: CIMultiDict[str] = CIMultiDict()
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpError("malformed header line")
            headers.add(name, value.strip())
        if 100 <= status < 200:
            if status == 101:
                raise HttpError("the server switched protocols")
            return True  # an interim answer (100 Continue, 103 Early Hints): the real one follows
        self._answer = Answer(status, CIMultiDictProxy(headers))
        tokens = {t.strip().lower() for t in headers.get("Connection", "").split(",")}
        self.keep_alive = version == "HTTP/1.1" and "close" not in tokens
        coding = headers.get("Transfer-Encoding")
        length = headers.getall("Content-Length", [])
        if status in (204, 304):
            self._mode, self._left = "length", 0
        elif coding is not None:
            if coding.split(",")[-1].strip().lower() != "chunked":
                self._mode, self.keep_alive = "close", False
            else:
                self._mode = "chunk-size"
        elif length:
            if len(set(length)) != 1 or not length[0].isdigit():
                raise HttpError("malformed Content-Length")
            self._mode, self._left = "length", int(length[0])
            self._count(self._left)
        else:
            self._mode, self.keep_alive = "close", False
        return True

    def _line(self) -> bytes | None:
        end = self._buf.find(b"\r\n")
        if end < 0:
            if len(self._buf) > MAX_HEAD:
                raise HttpError("a line of the answer is too long")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 2]
        return line

    def _count(self, n: int) -> None:
        self._body += n
        if self._body > MAX_BODY:
            # Not worth reading to keep the connection: answer now, then close it.
            self._mode, self.keep_alive = "close", False

    def _done(self) -> Answer:
        assert self._answer is not None
        if self._buf:
            self.keep_alive = False  # bytes after the answer: nothing asked for them
        return self._answer


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True

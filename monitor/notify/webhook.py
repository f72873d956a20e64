"""One webhook attempt: build the body, sign it fresh, POST it, classify the answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from monitor import __version__
from monitor.clock import Clock, SystemClock
from monitor.core.backoff import retry_after_seconds
from monitor.logs import redact
from monitor.notify import payload
from monitor.notify.base import AttemptResult
from monitor.notify.signing import sign
from monitor.notify.ssrf import GuardedResolver, refused_ip_literal
from monitor.notify.subscriptions import Subscription
from monitor.store.base import Delivery


def make_session(
    *, deny_private: bool, resolver: aiohttp.abc.AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A client session whose every connection passes the SSRF guard."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(resolver, deny_private=deny_private),
        # Each subscription limits itself (max_in_flight, up to 64); this only caps the sum, so
        # a few busy subscriptions never queue behind one another for kept-alive connections.
        limit=512,
        ttl_dns_cache=10,  # short: re-check a hostname's addresses often (DNS rebinding)
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": f"availability-monitor/{__version__}"},
    )


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    """A subscription as an outbox target."""

    sub: Subscription
    sender: WebhookSender

    @property
    def name(self) -> str:
        """The subscription's name."""
        return self.sub.name

    @property
    def enabled(self) -> bool:
        """Whether it is enabled."""
        return self.sub.enabled

    @property
    def max_in_flight(self) -> int:
        """Its concurrency."""
        return self.sub.max_in_flight

    async def attempt(self, delivery: Delivery) -> AttemptResult:
        """POST the delivery."""
        return await self.sender.attempt(self.sub, delivery)


class WebhookSender:
    """Sends one delivery. Never follows redirects: a 3xx is a failure."""

    def __init__(
        self,
        *,
        session: aiohttp.ClientSession,
        timeout_seconds: float = 15.0,
        deny_private: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._deny_private = deny_private
        self._clock = clock or SystemClock()
        self._refusals: dict[str, str | None] = {}  # URL -> why its IP literal is refused

    def _refusal(self, url: str) -> str | None:
        # Parsed once per URL rather than once per delivery: the same few URLs, over and over.
        try:
            return self._refusals[url]
        except KeyError:
            if len(self._refusals) >= 1024:
                self._refusals.clear()
            why = self._refusals[url] = refused_ip_literal(
                urlsplit(url).hostname or "", self._deny_private
            )
            return why

    async def attempt(self, sub: Subscription, delivery: Delivery) -> AttemptResult:
        """POST the delivery to the subscription, signed with every current secret."""
        refusal = self._refusal(sub.url)
        if refusal:
            return AttemptResult("refused", error=f"refused to connect: {refusal}")
        body, content_type = payload.build(
            sub.format, delivery.transition, delivery.created_at, delivery.id
        )
        timestamp = int(self._clock.wall())  # fresh on every attempt
        headers = {
            "Content-Type": content_type,
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(delivery.id, timestamp, body, sub.secrets),
        }
        try:
            async with self._session.post(
                sub.url, data=body, headers=headers, allow_redirects=False, timeout=self._timeout
            ) as resp:
                status = resp.status
                resp_headers = resp.headers
                await resp.content.read(4096)  # a little, so keep-alive stays usable
        except TimeoutError:
            return AttemptResult("failure", error="no answer within the timeout")
        except aiohttp.ClientError as exc:
            text = redact(str(exc))
            outcome = "refused" if "refused to connect to" in text else "failure"
            return AttemptResult(outcome, error=f"{type(exc).__name__}: {text}")
        except OSError as exc:
            return AttemptResult("failure", error=f"{type(exc).__name__}: {redact(str(exc))}")
        except asyncio.CancelledError:
            raise
        if 200 <= status < 300:
            return AttemptResult("success", status)
        if status == 410:
            return AttemptResult("gone", status, error="410 Gone")
        wait = None
        if status in (429, 503):
            wait = retry_after_seconds(resp_headers, self._clock.wall())
        reason = "redirect not followed" if 300 <= status < 400 else f"HTTP {status}"
        return AttemptResult("failure", status, wait, reason)

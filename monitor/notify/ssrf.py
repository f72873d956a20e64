"""Keeping webhooks from reaching places they must not (SSRF guard).

Addresses are checked after DNS resolution, at connect time, by a resolver that wraps the real
one, so a hostname that resolves (or later re-resolves) to a forbidden address is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Always refused: link-local (cloud metadata lives at 169.254.169.254) and AWS's IPv6 metadata.
ALWAYS_DENIED = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
)
#: Refused with `deny_private_networks: true` (multi-tenant deployments).
PRIVATE = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
    ipaddress.ip_network("10.0.0.0/8"),
    ipaddress.ip_network("172.16.0.0/12"),
    ipaddress.ip_network("192.168.0.0/16"),
    ipaddress.ip_network("100.64.0.0/10"),
    ipaddress.ip_network("fc00::/7"),
    ipaddress.ip_network("192.0.0.0/24"),
    ipaddress.ip_network("198.18.0.0/15"),
)


class BlockedAddress(ValueError):
    """The URL leads to an address webhooks may not reach."""


def _normalise(addr: IPAddress) -> IPAddress:
    if isinstance(addr, ipaddress.IPv6Address):
        # ::ffff:169.254.169.254 and 64:ff9b::a9fe:a9fe reach the IPv4 address behind them.
        if addr.ipv4_mapped is not None:
            return addr.ipv4_mapped
        if addr in ipaddress.ip_network("64:ff9b::/96"):
            return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if addr.sixtofour is not None:
            return addr.sixtofour
    return addr


def address_refusal(address: str, deny_private: bool) -> str | None:
    """Why an address may not be reached, or None when it may."""
    try:
        addr = _normalise(ipaddress.ip_address(address.split("%", 1)[0]))
    except ValueError:
        return f"{address} is not an IP address"
    if any(addr in net for net in ALWAYS_DENIED if net.version == addr.version):
        return f"{addr} is link-local or a cloud metadata address"
    if deny_private and (
        addr.is_private
        or addr.is_loopback
        or any(addr in net for net in PRIVATE if net.version == addr.version)
    ):
        return f"{addr} is a loopback or private address (deny_private_networks is on)"
    return None


def check_url_syntax(url: str) -> None:
    """http or https, a host, and no credentials, within the config's URL limits (length, DNS
    labels, port); raises ValueError with a reason."""
    from monitor.config.urls import check_url_shape

    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("webhook URLs must be http or https")
    if parts.username or parts.password:
        raise ValueError("put no credentials in the URL; webhooks are signed instead")
    check_url_shape(url)


def check_url(url: str, deny_private: bool) -> None:
    """Syntax plus, for an IP literal, the address rules (hostnames are checked at connect)."""
    check_url_syntax(url)
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    why = address_refusal(host, deny_private)
    if why:
        raise BlockedAddress(why)


async def resolve_and_check(
    url: str, deny_private: bool, resolver: AbstractResolver | None = None
) -> None:
    """`check_url`, then resolve the host now and refuse it if any address is forbidden."""
    check_url(url, deny_private)
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    inner = resolver or DefaultResolver()
    try:
        results = await inner.resolve(host, parts.port or 0, socket.AF_UNSPEC)
    except OSError as exc:
        raise ValueError(f"cannot resolve {host}: {exc}") from None
    finally:
        if resolver is None:
            await inner.close()
    for r in results:
        why = address_refusal(r["host"], deny_private)
        if why:
            raise BlockedAddress(f"{host} resolves to {why}")


class GuardedResolver(AbstractResolver):
    """Resolves through `inner`, then refuses forbidden addresses (raises OSError)."""

    def __init__(self, inner: AbstractResolver | None = None, *, deny_private: bool) -> None:
        self._inner = inner or DefaultResolver()
        self._deny_private = deny_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if address_refusal(r["host"], self._deny_private) is None]
        if not allowed:
            reasons = {address_refusal(r["host"], self._deny_private) for r in results}
            raise OSError(f"refused to connect to {host}: {'; '.join(sorted(map(str, reasons)))}")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def refused_ip_literal(host: str, deny_private: bool) -> str | None:
    """aiohttp skips the resolver for IP literals: the sender checks those itself."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return address_refusal(host, deny_private)

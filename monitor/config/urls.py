"""The shape every URL in a config (or an API body) must have: checked without any I/O."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

from monitor.config import limits as L

_LABEL_RE = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")
_UNSAFE_RE = re.compile(r"[\x00-\x20\x7f]")


def check_url_shape(url: str) -> SplitResult:
    """http or https, at most 2,048 characters, a host name whose labels have at most 63 and
    whose whole at most 253 characters (or an IP literal), a valid port, no credentials and no
    whitespace or control characters. Raises ValueError with the reason."""
    if len(url) > L.URL_MAX:
        raise ValueError(f"the URL is longer than {L.URL_MAX:,} characters")
    if _UNSAFE_RE.search(url):
        raise ValueError("the URL has whitespace or a control character in it")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if not parts.hostname:
        raise ValueError("the URL has no host")
    if "@" in parts.netloc:
        raise ValueError("put no credentials in the URL")
    if port == 0:
        raise ValueError("invalid URL: port 0")
    check_host(parts.hostname)
    return parts


def check_host(host: str) -> None:
    """An IP address, or a DNS name of labels of 1-63 characters, at most 253 in all."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return
    except ValueError:
        pass
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(
            f"invalid host name: each label must have 1 to {L.DNS_LABEL_MAX} characters"
        ) from None
    name = ascii_host.removesuffix(".")
    if len(name) > L.HOST_MAX:
        raise ValueError(f"the host name is longer than {L.HOST_MAX} characters")
    for label in name.split("."):
        if len(label) > L.DNS_LABEL_MAX:
            raise ValueError(f"a label of the host name is longer than {L.DNS_LABEL_MAX}")
        if not _LABEL_RE.fullmatch(label):
            raise ValueError("invalid host name: labels are letters, digits, - and _")


def is_loopback_host(host: str) -> bool:
    """localhost, or a loopback IP literal (127.0.0.0/8, ::1)."""
    name = host.lower().removesuffix(".")
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return False

"""The sd_notify protocol, by hand: datagrams of `KEY=value` lines to `$NOTIFY_SOCKET`.

systemd (with `Type=notify`) hands a service the path of a Unix datagram socket in
`NOTIFY_SOCKET`; a path starting with `@` is in the abstract namespace. The service sends
`READY=1` once it serves, `STATUS=...` lines for `systemctl status`, `WATCHDOG=1` pings at least
every `WATCHDOG_USEC` microseconds when `WatchdogSec=` is set, and `STOPPING=1` on shutdown.

Without `NOTIFY_SOCKET` every call is a no-op, and a failed send is logged at debug level and
otherwise ignored: notifying systemd must never take the daemon down.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from monitor.logs import get_logger

log = get_logger("monitor.sdnotify")


class SdNotifier:
    """Sends sd_notify messages to the service manager, if there is one.

    `socket_path` defaults to `$NOTIFY_SOCKET`; `environ` (default `os.environ`, read once, here)
    is where that and `WATCHDOG_USEC`/`WATCHDOG_PID` come from.
    """

    def __init__(
        self, socket_path: str | None = None, *, environ: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if environ is None else environ
        path = socket_path if socket_path is not None else env.get("NOTIFY_SOCKET", "")
        self._address: bytes | None = _address(path)
        if path and self._address is None:
            log.debug("NOTIFY_SOCKET is not a Unix socket path; sd_notify is off", path=path)
        self._watchdog_usec = env.get("WATCHDOG_USEC", "")
        self._watchdog_pid = env.get("WATCHDOG_PID", "")
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds within which systemd expects `WATCHDOG=1`, or None without a watchdog.

        None also when notifications are off, when `WATCHDOG_USEC` is not a positive integer,
        or when `WATCHDOG_PID` names another process (the watchdog is meant for that one).
        Ping at about half of this interval.
        """
        if not self.enabled:
            return None
        if self._watchdog_pid:
            try:
                if int(self._watchdog_pid) != os.getpid():
                    return None
            except ValueError:
                return None
        try:
            usec = int(self._watchdog_usec)
        except ValueError:
            return None
        return usec / 1_000_000 if usec > 0 else None

    def send(self, *fields: str) -> bool:
        """Send `fields` (each `KEY=value`) as one datagram; True if it was sent.

        Never raises: without a socket this does nothing, and a failed send is logged at debug.
        """
        if self._address is None or not fields:
            return False
        data = "\n".join(fields).encode("utf-8")
        try:
            if self._sock is None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # A full socket buffer must not stall the event loop: drop the message instead.
                sock.setblocking(False)
                self._sock = sock
            self._sock.sendto(data, self._address)
        except OSError as exc:
            log.debug("sd_notify send failed", error=str(exc), fields=list(fields))
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """`READY=1`: startup is done (state loaded, server listening); optionally a status."""
        fields = ["READY=1"]
        if status is not None:
            fields.append(_status_field(status))
        return self.send(*fields)

    def status(self, text: str) -> bool:
        """`STATUS=text`: one line shown by `systemctl status` (newlines become spaces)."""
        return self.send(_status_field(text))

    def watchdog(self) -> bool:
        """`WATCHDOG=1`: the service is alive and making progress."""
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """`RELOADING=1` with `MONOTONIC_USEC`: a config reload started (send `ready()` after)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> bool:
        """`STOPPING=1`: shutdown has begun; optionally a status."""
        fields = ["STOPPING=1"]
        if status is not None:
            fields.append(_status_field(status))
        return self.send(*fields)

    def close(self) -> None:
        """Close the socket (a later send opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status_field(text: str) -> str:
    return "STATUS=" + " ".join(text.splitlines())


def _address(path: str) -> bytes | None:
    """The socket address for `sendto`: a file path, or `@name` for the abstract namespace."""
    if path.startswith("@") and len(path) > 1:
        return b"\0" + os.fsencode(path[1:])
    if path.startswith("/"):
        return os.fsencode(path)
    return None

"""sd_notify over a real Unix datagram socket: a file in tmp_path, and an abstract one."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.sdnotify import SdNotifier


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound to a file, as systemd's NOTIFY_SOCKET is; (socket, path)."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def messages(sock: socket.socket) -> list[str]:
    """Every datagram waiting on `sock`, decoded."""
    out: list[str] = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return out


def test_messages_reach_a_file_socket(receiver):
    sock, path = receiver
    n = SdNotifier(path)
    assert n.enabled
    assert n.ready()
    assert sock.recv(4096) == b"READY=1"
    assert n.status("polling 3 watch sets")
    assert sock.recv(4096) == b"STATUS=polling 3 watch sets"
    assert n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert n.stopping("draining")
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=draining"
    assert n.send("EXTEND_TIMEOUT_USEC=5000000", "STATUS=slow start")
    assert sock.recv(4096) == b"EXTEND_TIMEOUT_USEC=5000000\nSTATUS=slow start"
    n.close()


def test_reloading_carries_the_monotonic_clock(receiver):
    sock, path = receiver
    n = SdNotifier(path)
    assert n.reloading()
    first, second = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=") and int(second.split("=")[1]) > 0
    n.close()


def test_status_is_one_line(receiver):
    sock, path = receiver
    n = SdNotifier(path)
    n.ready("state loaded\nlistening")
    assert sock.recv(4096) == b"READY=1\nSTATUS=state loaded listening"
    n.close()


def test_abstract_socket():
    name = f"availability-monitor-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        n = SdNotifier("@" + name)
        assert n.enabled and n.ready()
        assert sock.recv(4096) == b"READY=1"
        n.close()
    finally:
        sock.close()


def test_default_comes_from_the_environment(receiver, monkeypatch):
    sock, path = receiver
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = SdNotifier()
    assert n.enabled and n.watchdog()
    assert sock.recv(4096) == b"WATCHDOG=1"
    n.close()
    assert SdNotifier(environ={"NOTIFY_SOCKET": path}).enabled


@pytest.mark.parametrize("value", [None, "", "relative.sock", "@", "vsock:2:1234"])
def test_without_a_usable_socket_everything_is_a_no_op(monkeypatch, value):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    env = {"WATCHDOG_USEC": "1000000"}
    if value is not None:
        env["NOTIFY_SOCKET"] = value
    n = SdNotifier(environ=env)
    assert not n.enabled
    assert n.watchdog_interval() is None
    assert not n.ready() and not n.status("x") and not n.watchdog() and not n.stopping()
    assert not n.send("READY=1")
    n.close()


def test_send_errors_are_swallowed_and_logged_at_debug(tmp_path, log_stream):
    n = SdNotifier(str(tmp_path / "nobody-listens.sock"))
    assert n.enabled
    assert n.ready() is False
    assert n.watchdog() is False
    n.close()
    assert "sd_notify send failed" in log_stream.getvalue()
    assert '"level":"debug"' in log_stream.getvalue().replace(" ", "")


def test_a_full_socket_drops_messages_instead_of_blocking(receiver):
    sock, path = receiver
    n = SdNotifier(path)
    sent = [n.send("STATUS=" + "x" * 1000) for _ in range(10_000)]
    assert sent[0] and not all(sent)  # the receiver's queue filled up: later ones were dropped
    assert messages(sock)
    n.close()


def test_empty_send_does_nothing(receiver):
    sock, path = receiver
    n = SdNotifier(path)
    assert n.send() is False
    assert messages(sock) == []
    n.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "30000000"}, 30.0),
        ({"WATCHDOG_USEC": "500000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "abc"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "-5"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval(tmp_path, env, expected):
    n = SdNotifier(environ={"NOTIFY_SOCKET": str(tmp_path / "n.sock"), **env})
    assert n.watchdog_interval() == expected


def test_watchdog_interval_from_the_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "n.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "20000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert SdNotifier().watchdog_interval() == 20.0

"""Processes for the benchmarks: start, watch (CPU and RSS from /proc), talk HTTP to, stop."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


class BenchError(RuntimeError):
    """A scenario could not be run (a process died, a server never answered)."""


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- /proc --------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    # After the command name: state is field 3, utime field 14, stime field 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size now, from /proc/<pid>/statm (pages resident x page size)."""
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE


def peak_rss_bytes(pid: int) -> int:
    """VmHWM (peak resident set) from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


# -- HTTP ---------------------------------------------------------------------------------------


def http(method: str, url: str, body: Any = None, timeout: float = 30.0) -> tuple[int, bytes]:
    """One request with the standard library; (status, body). Connection errors raise OSError."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str, timeout: float = 60.0) -> Any:
    """GET a JSON document; raises BenchError on a non-2xx answer."""
    status, body = http("GET", url, timeout=timeout)
    if not 200 <= status < 300:
        raise BenchError(f"GET {url}: HTTP {status}: {body[:200]!r}")
    return json.loads(body)


def answers(url: str) -> int | None:
    """The status of GET url, or None when nothing listens yet."""
    try:
        return http("GET", url, timeout=5.0)[0]
    except OSError:
        return None


# -- processes ----------------------------------------------------------------------------------


@dataclass
class Proc:
    """A child process started by the benchmark, with its output going to a log file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started: float  # time.monotonic() just before the process was created
    final_cpu: float = 0.0  # CPU seconds it had used when it was stopped

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def check(self) -> None:
        """Raise if the process has died."""
        if not self.alive():
            raise BenchError(
                f"{self.name} exited with code {self.popen.returncode}:\n{self.tail()}"
            )

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_bytes(self.pid)

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        if self.alive():
            with contextlib.suppress(OSError, ValueError):
                self.final_cpu = self.cpu()
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


def spawn(
    name: str,
    args: Sequence[str],
    log_dir: Path,
    *,
    lines: Callable[[str, float], None] | None = None,
    watch: Literal["stdout", "stderr"] = "stdout",
    env: dict[str, str] | None = None,
) -> Proc:
    """Start `python args...` in the repository, its output going to a log file.

    With `lines`, each line of the `watch`ed stream is handed over instead, with the monotonic
    time it was read.
    """
    log_path = log_dir / f"{name}.log"
    log_file: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - owned by the child
    started = time.monotonic()
    popen = subprocess.Popen(
        [PYTHON, *args],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if lines and watch == "stdout" else log_file,
        stderr=subprocess.PIPE if lines and watch == "stderr" else log_file,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    log_file.close()
    proc = Proc(name, popen, log_path, started)
    if lines is not None:
        stream = popen.stdout if watch == "stdout" else popen.stderr
        assert stream is not None
        threading.Thread(
            target=_pump, args=(stream, lines, log_path), name=f"{name}-{watch}", daemon=True
        ).start()
    return proc


def _pump(stream: IO[bytes], handler: Callable[[str, float], None], log_path: Path) -> None:
    """Hand each line over as it comes, and keep a copy in the log file."""
    with open(log_path, "ab") as copy:
        for raw in iter(stream.readline, b""):
            handler(raw.decode(errors="replace").rstrip("\n"), time.monotonic())
            copy.write(raw)


def wait_for(
    what: str, predicate: Callable[[], bool], timeout: float, procs: Sequence[Proc] = ()
) -> float:
    """Poll `predicate` every 20 ms until true; returns time.monotonic() when it became true."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return time.monotonic()
        for p in procs:
            p.check()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


class Group:
    """Processes stopped together, newest first, however the scenario ends."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def __enter__(self) -> Group:
        return self

    def __exit__(self, *exc: object) -> None:
        for p in reversed(self.procs):
            p.stop()

    def cpu(self) -> float:
        """CPU seconds used by every process of the group (the stopped ones until they stopped)."""
        total = 0.0
        for p in self.procs:
            if p.alive():
                with contextlib.suppress(OSError, ValueError):
                    total += p.cpu()
                    continue
            total += p.final_cpu
        return total

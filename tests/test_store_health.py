"""A state store that cannot write makes the daemon not ready, says why, and recovers by itself.

Real faults on real files: the state file deleted under the running daemon, a read-only file
(chattr +i: even root cannot write it), a full filesystem (a small tmpfs filled up). Each turns
/readyz to 503 with the root cause and back to 200 without a restart where the fault can go
away, and nothing already stored is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.clock import ManualClock
from monitor.store.health import StateFileMoved, WriteFailure, WriteHealth, root_cause
from monitor.store.sqlite import SQLiteStore
from tests.conftest import make_config

A, B = "EVTAAAAAAAAAAAA1", "EVTBBBBBBBBBBBB2"
SETS = f"watch_sets:\n  - name: main\n    interval_seconds: 60\n    events: [{A}, {B}]\n"


async def ready(d: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s, s.get(d.url + "/readyz") as r:
        return r.status, await r.json()


async def metrics_text(d: Any) -> str:
    async with aiohttp.ClientSession() as s, s.get(d.url + "/metrics") as r:
        return await r.text()


async def until(check: Any, seconds: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def logged(stream: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


async def started(start_daemon: Any, sim: Any, path: Path) -> Any:
    store = SQLiteStore(path, check_seconds=0.05)
    d = await start_daemon(make_config(sim.url, path, SETS), store=store)
    await d.scheduler.run_once()  # the key is accepted: ready
    assert (await ready(d))[0] == 200
    return d


# -- the state file deleted or replaced ---------------------------------------------------------


async def test_a_deleted_state_file_is_noticed_and_never_written_again(
    sim, tmp_path, start_daemon, log_stream
):
    path = tmp_path / "state.db"
    d = await started(start_daemon, sim, path)
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    path.unlink()

    async def not_ready() -> bool:
        return (await ready(d))[0] == 503

    await until(not_ready)
    _, body = await ready(d)
    assert "deleted or moved away" in body["reason"] and str(path) in body["reason"]
    text = await metrics_text(d)
    assert "availability_monitor_state_store_ok 0.0" in text
    assert 'availability_monitor_state_store_errors_total{kind="moved"}' in text
    # The next change is not written to the orphan (nor anywhere): it is judged again later.
    sim.world.set_status(B, status="TICKETS_NOT_AVAILABLE")
    await d.scheduler.run_once()
    assert [t.event_id for t in await d.store.transitions_since(0, 10)] == [A]
    await asyncio.sleep(0.2)  # more checks: still one line, and still not ready
    lines = [r for r in logged(log_stream) if r.get("kind") == "moved"]
    assert len(lines) == 1 and lines[0]["level"] == "error"
    assert (await ready(d))[0] == 503
    await d.stop()
    # SQLite leaves the old file's side files; the store removes them (they are its own).
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("state.db")) == [
        "state.db.lock"
    ]


async def test_a_replaced_state_file_is_noticed(sim, tmp_path, start_daemon):
    path = tmp_path / "state.db"
    d = await started(start_daemon, sim, path)
    other = tmp_path / "restored.db"
    other.write_bytes(b"")
    os.replace(other, path)  # what a restore copied into place does

    async def reason() -> bool:
        status, body = await ready(d)
        return status == 503 and "replaced by another file" in body["reason"]

    await until(reason)


# -- a read-only state file ----------------------------------------------------------------------


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """The file cannot be written, by anyone (root included), until the block ends."""
    try:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a file immutable here: {exc}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


async def test_a_restart_on_a_read_only_state_file_is_not_ready_until_it_is_writable(
    sim, tmp_path, start_daemon
):
    path = tmp_path / "state.db"
    first = await started(start_daemon, sim, path)
    await first.stop()
    with immutable(path):
        store = SQLiteStore(path, check_seconds=0.05)
        d = await start_daemon(make_config(sim.url, path, SETS), store=store)
        await d.scheduler.run_once()  # the upstream accepts the key: only the store is wrong
        status, body = await ready(d)
        assert status == 503
        assert "attempt to write a readonly database" in body["reason"]
        assert 'state_store_errors_total{kind="readonly"}' in await metrics_text(d)

    async def back() -> bool:
        return (await ready(d))[0] == 200

    await until(back)  # writable again: ready without a restart
    assert "availability_monitor_state_store_ok 1.0" in await metrics_text(d)


# -- a full filesystem ---------------------------------------------------------------------------


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs, mounted for the test (skips where mounting is not allowed)."""
    where = tmp_path / "fs"
    where.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {exc}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


def fill(where: Path) -> Path:
    """Fill the filesystem up; the filler file, to delete for room."""
    filler = where / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


async def test_a_full_filesystem_is_not_ready_and_recovers_losing_nothing(
    sim, small_fs, start_daemon, log_stream
):
    path = small_fs / "state.db"
    d = await started(start_daemon, sim, path)
    filler = fill(small_fs)
    for n in range(1, 5):  # enough changes to need room that is not there
        sim.world.set_status(A, status="FEW_TICKETS_LEFT" if n % 2 else "TICKETS_AVAILABLE")
        sim.world.set_status(B, resale_status="TICKETS_NOT_AVAILABLE" if n % 2 else None)
        await d.scheduler.run_once()
        if (await ready(d))[0] == 503:
            break
    status, body = await ready(d)
    assert status == 503 and "database or disk is full" in body["reason"]
    errors = [r for r in logged(log_stream) if r["level"] == "error"]
    assert any("database or disk is full" in json.dumps(r) for r in errors)
    assert not any("cannot rollback" in json.dumps(r) for r in logged(log_stream))
    assert 'state_store_errors_total{kind="full"}' in await metrics_text(d)
    stored_before = await d.store.transitions_since(0, 100)

    filler.unlink()  # room again: the next poll stores what could not be stored
    await d.scheduler.run_once()
    assert (await ready(d))[0] == 200
    after = await d.store.transitions_since(0, 100)
    assert after[: len(stored_before)] == stored_before  # nothing stored was lost
    now = sim.world.status_of(A, 0.0)[0]
    assert [t.current for t in after if t.event_id == A][-1:] in ([], [now])
    assert (await d.store.load_states())[A].state.status[0] == now


# -- the rules, by table --------------------------------------------------------------------------


class _SQLiteError(Exception):
    def __init__(self, text: str, code: str) -> None:
        super().__init__(text)
        self.sqlite_errorname = code


class _PgError(Exception):
    def __init__(self, text: str, state: str) -> None:
        super().__init__(text)
        self.sqlstate = state


def _chained(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__context__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "kind", "cause"),
    [
        (_SQLiteError("database or disk is full", "SQLITE_FULL"), "full", "database or disk"),
        (
            _chained(
                _SQLiteError("cannot rollback - no transaction is active", "SQLITE_ERROR"),
                _SQLiteError("database or disk is full", "SQLITE_FULL"),
            ),
            "full",  # what made the transaction fail, not the failed rollback after it
            "database or disk is full",
        ),
        (
            _SQLiteError("attempt to write a readonly database", "SQLITE_READONLY_DBMOVED"),
            "readonly",
            "readonly",
        ),
        (_SQLiteError("disk I/O error", "SQLITE_IOERR_WRITE"), "io", "disk I/O"),
        (_PgError("could not extend file", "53100"), "full", "extend"),
        (_PgError("cannot execute UPDATE in a read-only transaction", "25006"), "readonly", "read"),
        (_PgError("terminating connection", "57P01"), "unavailable", "terminating"),
        (_PgError("duplicate key", "23505"), "error", "duplicate"),
        (ConnectionRefusedError("refused"), "unavailable", "refused"),
        (StateFileMoved("the state file was deleted"), "moved", "deleted"),
        (RuntimeError("boom"), "error", "boom"),
        (_chained(RuntimeError("wrapped"), _PgError("x", "25006")), "readonly", "x"),
    ],
)
def test_root_cause(exc: BaseException, kind: str, cause: str) -> None:
    failure = root_cause(exc)
    assert failure.kind == kind and cause in failure.cause


def test_root_cause_masks_secrets() -> None:
    failure = root_cause(OSError("connect to https://x/?apikey=SECRETVALUE failed"))
    assert "SECRETVALUE" not in failure.cause


def test_write_health_rules(log_stream) -> None:
    clock = ManualClock()
    h = WriteHealth(clock, what="state file", summary_seconds=60)
    seen: list[str | None] = []
    h.observe(lambda f: seen.append(f.kind if f else None))
    full = WriteFailure("full", "database or disk is full")
    assert h.state() == (True, "ok")
    for _ in range(100):
        h.failed(full)
        clock.advance(1)
    assert h.state() == (False, "the state file cannot take writes: database or disk is full")
    h.succeeded(probe=True)  # a probe fits where a batch did not: still not ready
    assert not h.ok
    h.succeeded()
    assert h.ok and seen == ["full"] * 100 + [None]
    # A probe's failure is undone by a probe's success.
    h.failed(WriteFailure("readonly", "attempt to write a readonly database"), probe=True)
    assert not h.ok
    h.succeeded(probe=True)
    assert h.ok
    # A moved file is final.
    h.failed(WriteFailure("moved", "the state file was deleted"))
    h.succeeded()
    assert h.state() == (False, "the state file cannot take writes: the state file was deleted")
    lines = [r for r in logged(log_stream) if "cannot take writes" in r.get("event", "")]
    # 100 failures in 100 s: the first, one summary a minute later, then the others' first.
    assert [r.get("repeated", 0) for r in lines] == [0, 59, 0, 0]

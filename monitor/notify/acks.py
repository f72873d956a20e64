"""Acknowledgements of delivered messages, written in batches in the background.

A 2xx frees the sender at once; the row leaves the outbox a little later, together with the
others of that moment, in one transaction (one fsync for many). Until then the row stays pending
in the store, so a crash in between means the message is sent again after the restart, with
the same webhook-id: a duplicate, which at-least-once allows, and never a loss. Only successes
come here; a failed attempt is written by the outbox itself before anything else happens.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from monitor.clock import Clock, SystemClock
from monitor.core.summary import Summary
from monitor.logs import get_logger

log = get_logger("monitor.outbox")


class AckWriter:
    """Gathers delivered IDs for `linger` seconds, then writes them with `write` in one go.

    `written` is told which IDs are in the store as delivered. A write that fails is tried
    again after `retry_seconds` (the IDs stay pending in the store meanwhile).
    """

    def __init__(
        self,
        write: Callable[[Sequence[str]], Awaitable[None]],
        written: Callable[[Sequence[str]], None],
        *,
        linger: float = 0.05,
        retry_seconds: float = 1.0,
        clock: Clock | None = None,
        log_every: float = 60.0,
    ) -> None:
        self._write = write
        self._written = written
        self._linger = linger
        self._retry = retry_seconds
        self._waiting: list[str] = []
        self._writing = 0  # IDs in the write under way
        self._ready = asyncio.Event()
        self._lock = asyncio.Lock()  # one write at a time, in the order the IDs came
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._clock = clock or SystemClock()
        self._failures = Summary(log_every, max_keys=1)  # a write retried every second

    def __len__(self) -> int:
        """IDs not yet written (those of a write under way included)."""
        return len(self._waiting) + self._writing

    def add(self, delivery_id: str) -> None:
        """A delivery had its 2xx: write it soon."""
        if self._closed:
            return  # shutting down: the row stays pending and is sent again after a restart
        self._waiting.append(delivery_id)
        self._ready.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="outbox-acks")

    async def flush(self) -> bool:
        """Write everything added so far, now. Returns whether it all went in."""
        while self._waiting or self._writing:
            if not await self._write_batch():
                return False
        return True

    async def close(self, timeout: float) -> None:
        """Stop the background writer and flush what is left, within `timeout` seconds."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.flush(), timeout)
        if self._waiting:
            log.warning("acknowledgements not written; sent again after a restart", n=len(self))

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            await asyncio.sleep(self._linger)  # let the successes of this moment gather
            self._ready.clear()
            if not await self._write_batch():
                await asyncio.sleep(self._retry)
                self._ready.set()

    async def _write_batch(self) -> bool:
        async with self._lock:
            batch, self._waiting = self._waiting, []
            if not batch:
                return True
            self._writing = len(batch)
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                self._waiting[:0] = batch
                raise
            except Exception:
                held = self._failures.admit("write", self._clock.monotonic())
                if held is not None:
                    log.exception(
                        "could not record delivered messages; trying again",
                        **({"repeated": held} if held else {}),
                    )
                self._waiting[:0] = batch
                return False
            finally:
                self._writing = 0
        self._written(batch)
        return True

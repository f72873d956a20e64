"""The lease loop of one replica: which shards it polls and which rate-budget slots it spends.

Events are hashed into `shards`. Each replica holds leases (owner, expiry, fencing token) on a
fair share of them and polls only their events; a replica that joins takes its share as others
give up their surplus; one that dies loses its leases when they expire and the others take them
over. The rate limit belongs to the API key, so it is cut into slots, one per request of the
window (`requests` of `rate_limit`), also held by lease: a replica sends at most as many
requests per window as it holds slots, and the slots of all replicas never add up to more than
the limit. Only replicas holding a slot take shards (with 5 requests a second, at most 5
replicas poll; more are hot standbys). Every write of observations and transitions carries the
shards' fencing tokens and is refused once a lease has moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol

from monitor.core.shards import fair_share, rebalance, shard_of
from monitor.logs import get_logger
from monitor.metrics import Metrics
from monitor.store.base import Fence

log = get_logger("monitor.cluster")

SHARD = "shard"
SLOT = "slot"


class LeaseStore(Protocol):
    """What the coordinator needs of the store (PostgreSQL)."""

    async def ensure_leases(self, kind: str, count: int) -> None: ...
    async def heartbeat(self, replica: str) -> None: ...
    async def forget_replica(self, replica: str) -> None: ...
    async def live_replicas(self, within: float) -> list[str]: ...
    async def lease_owners(self) -> dict[tuple[str, int], str]: ...
    async def acquire_leases(
        self, kind: str, count: int, owner: str, seconds: float
    ) -> list[tuple[int, int, str | None, float | None]]: ...
    async def renew_leases(self, kind: str, owner: str, seconds: float) -> dict[int, int]: ...
    async def release_leases(self, kind: str, owner: str, ids: list[int]) -> None: ...


def default_replica_id() -> str:
    """host-pid-random: unique per process, readable in the lease table."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Coordinator:
    """Holds this replica's leases and tells the rest of the daemon what is its."""

    def __init__(
        self,
        *,
        store: LeaseStore,
        metrics: Metrics,
        shards: int,
        slots: int,
        lease_seconds: float,
        replica_id: str | None = None,
        on_change: Callable[[set[int], set[int], int], Awaitable[None]] | None = None,
    ) -> None:
        self._store = store
        self._metrics = metrics
        self.shards = shards
        self.slots = slots
        self.lease_seconds = lease_seconds
        self.replica_id = replica_id or default_replica_id()
        self._on_change = on_change
        self.owned: dict[int, int] = {}  # shard -> fencing token
        self.owned_slots: dict[int, int] = {}
        self._valid_until = 0.0  # monotonic: leases are ours until then, unless renewed
        self._last_ok = 0.0
        self._task: asyncio.Task[None] | None = None
        self._shard_cache: dict[str, int] = {}

    # -- what is mine ----------------------------------------------------------------------

    def shard(self, event_id: str) -> int:
        """An event's shard (cached: it is asked on every poll)."""
        s = self._shard_cache.get(event_id)
        if s is None:
            s = self._shard_cache[event_id] = shard_of(event_id, self.shards)
        return s

    def valid(self) -> bool:
        """Whether the leases we think we hold are still ours by our own clock."""
        return asyncio.get_running_loop().time() < self._valid_until

    def mine(self, event_id: str) -> bool:
        """Whether this replica polls the event now."""
        return self.shard(event_id) in self.owned and self.valid()

    def fence(self, event_ids: Iterable[str]) -> Fence:
        """The fence for a write touching these events."""
        tokens: dict[int, int] = {}
        for eid in event_ids:
            s = self.shard(eid)
            token = self.owned.get(s)
            tokens[s] = token if token is not None else -1  # not ours: the write must fail
        return Fence(self.replica_id, tokens)

    def healthy(self) -> tuple[bool, str]:
        """For /readyz: the lease loop is renewing."""
        loop = asyncio.get_running_loop().time()
        if loop - self._last_ok > self.lease_seconds:
            return False, "cannot renew leases (PostgreSQL unreachable?)"
        return True, f"{len(self.owned)} shards, {len(self.owned_slots)} budget slots"

    # -- the loop --------------------------------------------------------------------------

    async def start(self) -> None:
        """Create lease rows, take a first share, and start renewing."""
        await self._store.ensure_leases(SHARD, self.shards)
        await self._store.ensure_leases(SLOT, self.slots)
        await self.cycle()
        self._task = asyncio.create_task(self._loop(), name="leases")

    async def stop(self) -> None:
        """Give every lease back at once, so others take over without waiting for expiry."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await self._store.release_leases(SHARD, self.replica_id, list(self.owned))
            await self._store.release_leases(SLOT, self.replica_id, list(self.owned_slots))
            await self._store.forget_replica(self.replica_id)
        self.owned.clear()
        self.owned_slots.clear()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.cycle()
            except Exception as exc:
                self._metrics.cluster_lease_renewals_total.labels("error").inc()
                log.warning("lease cycle failed", error=str(exc))

    async def cycle(self) -> None:
        """Renew, then rebalance: take a fair share of slots, then of shards; give up surplus."""
        st = self._store
        me = self.replica_id
        d = self.lease_seconds
        started = asyncio.get_running_loop().time()
        await st.heartbeat(me)
        shards_before, slots_before = set(self.owned), len(self.owned_slots)
        renewed = await st.renew_leases(SHARD, me, d)
        slots = await st.renew_leases(SLOT, me, d)
        lost = set(self.owned) - set(renewed)
        if lost:
            self._metrics.cluster_leases_lost_total.inc(len(lost))
            log.warning("shard leases lost", shards=sorted(lost))
        self.owned, self.owned_slots = renewed, slots
        self._valid_until = started + d * 0.9  # stop a little before the server's expiry
        replicas = await st.live_replicas(d)
        if me not in replicas:
            replicas = sorted([*replicas, me])
        live = len(replicas)
        owners = await st.lease_owners()
        # Every replica sorts the same list, so the shares add up: the first ones by ID take
        # one more when the division is not even; beyond `slots` replicas, the rest stand by.
        slot_target = fair_share(self.slots, min(live, self.slots), replicas.index(me))
        take, give = rebalance(len(slots), slot_target)
        if give:
            drop = sorted(slots)[-give:]
            await st.release_leases(SLOT, me, drop)
            for s in drop:
                del self.owned_slots[s]
        if take:
            for sid, token, _, _ in await st.acquire_leases(SLOT, take, me, d):
                self.owned_slots[sid] = token

        holders = {o for (kind, _), o in owners.items() if kind == SLOT} | (
            {me} if self.owned_slots else set()
        )
        ranked = sorted(holders)
        target = fair_share(self.shards, len(ranked), ranked.index(me)) if self.owned_slots else 0
        take, give = rebalance(len(self.owned), target)
        if give:
            drop = sorted(self.owned)[-give:]
            await st.release_leases(SHARD, me, drop)
            for s in drop:
                del self.owned[s]
        if take:
            for sid, token, previous, orphaned in await st.acquire_leases(SHARD, take, me, d):
                self.owned[sid] = token
                if previous is not None and previous != me and orphaned is not None:
                    self._metrics.cluster_takeover_seconds.observe(orphaned)
                    log.info(
                        "shard taken over", shard=sid, from_replica=previous,
                        expired_for_seconds=round(orphaned, 2),
                    )  # fmt: skip
        self._last_ok = asyncio.get_running_loop().time()
        m = self._metrics
        m.cluster_lease_renewals_total.labels("ok").inc()
        m.cluster_shards_owned.set(len(self.owned))
        m.cluster_budget_slots_owned.set(len(self.owned_slots))
        m.cluster_replicas_live.set(live)
        gained = set(self.owned) - shards_before
        dropped = shards_before - set(self.owned)
        if (gained or dropped or len(self.owned_slots) != slots_before) and self._on_change:
            await self._on_change(gained, dropped, len(self.owned_slots))

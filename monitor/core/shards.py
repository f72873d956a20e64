"""Sharding and fair shares for several replicas. Pure."""

from __future__ import annotations

import zlib


def shard_of(event_id: str, shards: int) -> int:
    """The shard an event belongs to: a stable hash, the same on every replica and release."""
    return zlib.crc32(event_id.encode()) % shards


def fair_share(total: int, holders: int, rank: int = 0) -> int:
    """How many of `total` items the holder of `rank` (0-based, in an order every holder
    agrees on) takes: shares differ by at most one and add up to `total`."""
    if holders <= 0:
        return total
    if rank >= holders:
        return 0
    return total // holders + (1 if rank < total % holders else 0)


def rebalance(mine: int, target: int) -> tuple[int, int]:
    """(to acquire, to release) to move from `mine` toward `target`."""
    if mine < target:
        return target - mine, 0
    return 0, mine - target

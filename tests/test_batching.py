"""Table tests for batch planning: size limit, one region per batch, oldest first, each event once."""

from __future__ import annotations

import random

import pytest

from monitor.core.batching import MAX_BATCH, Batch, DuePool, plan_batches

# (events as (id, region, priority), batch_size, expected batches as (region, ids))
PLANS = [
    pytest.param([], 1000, [], id="nothing-due"),
    pytest.param([("a", None, 1)], 1000, [(None, ("a",))], id="one-event-no-region"),
    pytest.param(
        [("b", None, 2), ("c", None, 3), ("a", None, 1)],
        1000,
        [(None, ("a", "b", "c"))],
        id="oldest-priority-first",
    ),
    pytest.param(
        [(f"e{i}", None, i) for i in range(5)],
        2,
        [(None, ("e0", "e1")), (None, ("e2", "e3")), (None, ("e4",))],
        id="split-at-batch-size",
    ),
    pytest.param(
        [("a", "UK", 1), ("b", "US", 2), ("c", "UK", 3)],
        1000,
        [("UK", ("a", "c")), ("US", ("b",))],
        id="regions-never-mixed",
    ),
    pytest.param(
        [("a", "UK", 1), ("b", "US", 2), ("c", "UK", 3)],
        1,
        [("UK", ("a",)), ("US", ("b",)), ("UK", ("c",))],
        id="oldest-first-across-regions",
    ),
    pytest.param(
        [("a", "UK", 5), ("b", None, 1), ("c", "UK", 2)],
        1000,
        [(None, ("b",)), ("UK", ("c", "a"))],
        id="no-region-is-its-own-region",
    ),
    pytest.param(
        [("a", None, 5), ("b", None, 3), ("a", None, 1)],
        1000,
        [(None, ("a", "b"))],
        id="added-by-two-sets-once-lower-priority-wins",
    ),
    pytest.param(
        [("a", None, 1), ("b", None, 3), ("a", None, 9)],
        1000,
        [(None, ("a", "b"))],
        id="added-again-later-keeps-lower-priority",
    ),
    pytest.param(
        [("a", None, 1), ("a", None, 1), ("a", None, 1)],
        1000,
        [(None, ("a",))],
        id="added-three-times-appears-once",
    ),
    pytest.param(
        [("a", "UK", 1), ("b", "UK", 1), ("c", "UK", 1)],
        2,
        [("UK", ("a", "b")), ("UK", ("c",))],
        id="equal-priority-in-insertion-order",
    ),
]


@pytest.mark.parametrize(("events", "batch_size", "expected"), PLANS)
def test_plan_batches(events, batch_size, expected):
    assert plan_batches(events, batch_size) == [Batch(r, ids) for r, ids in expected]


@pytest.mark.parametrize(
    ("n", "batch_size", "sizes"),
    [
        pytest.param(2500, 1000, [1000, 1000, 500], id="2500-by-1000"),
        pytest.param(1000, 1000, [1000], id="exactly-one-full-batch"),
        pytest.param(1001, 1000, [1000, 1], id="one-over"),
        pytest.param(7, 3, [3, 3, 1], id="7-by-3"),
        pytest.param(3, 1, [1, 1, 1], id="batch-size-1"),
    ],
)
def test_plan_batch_sizes(n, batch_size, sizes):
    batches = plan_batches(((f"e{i}", "US", float(i)) for i in range(n)), batch_size)
    assert [len(b.event_ids) for b in batches] == sizes
    assert [eid for b in batches for eid in b.event_ids] == [f"e{i}" for i in range(n)]


@pytest.mark.parametrize(
    ("seed", "batch_size"),
    [
        pytest.param(1, 1, id="seed1-size1"),
        pytest.param(2, 7, id="seed2-size7"),
        pytest.param(3, 100, id="seed3-size100"),
        pytest.param(4, 1000, id="seed4-size1000"),
    ],
)
def test_plan_invariants(seed, batch_size):
    """Never over batch_size, one region per batch, each distinct event exactly once."""
    rng = random.Random(seed)
    regions = [None, "UK", "US", "DE"]
    region_of = {f"e{i}": rng.choice(regions) for i in range(600)}
    events = [(eid, region_of[eid], rng.random()) for eid in region_of]
    events += [(eid, region_of[eid], rng.random()) for eid in rng.sample(sorted(region_of), 200)]
    batches = plan_batches(events, batch_size)
    flat = [eid for b in batches for eid in b.event_ids]
    assert sorted(flat) == sorted(region_of)
    for b in batches:
        assert 1 <= len(b.event_ids) <= batch_size
        assert {region_of[eid] for eid in b.event_ids} == {b.region}


def test_plan_oldest_batch_first_across_regions():
    """Each batch starts with the oldest event still waiting, whatever its region."""
    rng = random.Random(7)
    events = [(f"e{i}", rng.choice(["UK", "US"]), rng.random()) for i in range(300)]
    prio = {eid: p for eid, _, p in events}
    remaining = dict(prio)
    for batch in plan_batches(events, 10):
        assert prio[batch.event_ids[0]] == min(remaining.values())
        for eid in batch.event_ids:
            del remaining[eid]


@pytest.mark.parametrize(
    ("batch_size", "ok"),
    [
        pytest.param(0, False, id="zero"),
        pytest.param(-1, False, id="negative"),
        pytest.param(1001, False, id="over-1000"),
        pytest.param(1, True, id="one"),
        pytest.param(MAX_BATCH, True, id="max"),
    ],
)
def test_plan_batch_size_validation(batch_size, ok):
    if ok:
        assert plan_batches([("a", None, 1)], batch_size) == [Batch(None, ("a",))]
    else:
        with pytest.raises(ValueError, match="batch_size"):
            plan_batches([("a", None, 1)], batch_size)


# ------------------------------------------------------------------------------------------
# DuePool directly
# ------------------------------------------------------------------------------------------


def pool_of(*events):
    pool = DuePool()
    for eid, region, prio in events:
        pool.add(eid, region, prio)
    return pool


@pytest.mark.parametrize(
    ("adds", "returns"),
    [
        pytest.param([("a", None, 1)], [True], id="new"),
        pytest.param([("a", None, 1), ("a", None, 1)], [True, False], id="same-again"),
        pytest.param([("a", None, 1), ("a", None, 5)], [True, False], id="higher-priority-again"),
        pytest.param([("a", None, 5), ("a", None, 1)], [True, False], id="lower-priority-again"),
        pytest.param([("a", None, 1), ("b", None, 1)], [True, True], id="two-events"),
    ],
)
def test_add_returns_whether_new(adds, returns):
    pool = DuePool()
    assert [pool.add(*a) for a in adds] == returns
    assert len(pool) == len({a[0] for a in adds})


@pytest.mark.parametrize(
    ("events", "drop", "limit", "batch", "dropped", "left"),
    [
        pytest.param(
            [("a", None, 1), ("b", None, 2), ("c", None, 3)],
            {"b"},
            10,
            ("a", "c"),
            ["b"],
            0,
            id="drop-one",
        ),
        pytest.param(
            [("a", None, 1), ("b", None, 2)],
            {"a", "b"},
            10,
            (),
            ["a", "b"],
            0,
            id="drop-all-empty-batch",
        ),
        pytest.param(
            [("a", None, 1), ("b", None, 2), ("c", None, 3), ("d", None, 4)],
            {"a"},
            2,
            ("b", "c"),
            ["a"],
            1,
            id="dropped-do-not-use-batch-slots",
        ),
        pytest.param(
            [("a", "UK", 1), ("b", "US", 2)],
            {"b"},
            10,
            ("a",),
            [],
            1,
            id="other-region-untouched",
        ),
        pytest.param(
            [("a", None, 1)],
            set(),
            10,
            ("a",),
            [],
            0,
            id="nothing-dropped",
        ),
    ],
)
def test_take_with_drop(events, drop, limit, batch, dropped, left):
    pool = pool_of(*events)
    taken = pool.take(limit, drop=drop.__contains__)
    assert taken.batch.event_ids == batch
    assert taken.dropped == dropped
    assert len(pool) == left
    for eid in dropped:
        assert eid not in pool


def test_take_empty_pool():
    taken = DuePool().take(10)
    assert taken.batch == Batch(None, ())
    assert taken.dropped == []


@pytest.mark.parametrize(
    ("events", "discard", "expected"),
    [
        pytest.param([("a", None, 1), ("b", None, 2)], ["a"], [(None, ("b",))], id="discard-head"),
        pytest.param([("a", None, 1), ("b", None, 2)], ["b"], [(None, ("a",))], id="discard-tail"),
        pytest.param([("a", None, 1)], ["zzz"], [(None, ("a",))], id="discard-unknown-is-no-op"),
        pytest.param(
            [("a", "UK", 1), ("b", "US", 2)], ["a"], [("US", ("b",))], id="discard-region"
        ),
        pytest.param([("a", None, 1)], ["a", "a"], [], id="discard-twice"),
    ],
)
def test_discard(events, discard, expected):
    pool = pool_of(*events)
    for eid in discard:
        pool.discard(eid)
    out = []
    while len(pool):
        out.append(pool.take(1000).batch)
    assert out == [Batch(r, ids) for r, ids in expected]
    assert pool.take(1000).batch.event_ids == ()


def test_discard_then_add_again():
    pool = pool_of(("a", None, 1), ("b", None, 2))
    pool.discard("a")
    assert "a" not in pool
    assert pool.add("a", None, 3) is True
    assert pool.take(10).batch == Batch(None, ("b", "a"))


def test_lowering_priority_moves_event_ahead():
    pool = pool_of(("a", None, 5), ("b", None, 3), ("c", None, 4))
    assert pool.add("a", None, 1) is False
    assert len(pool) == 3
    assert pool.take(1).batch == Batch(None, ("a",))
    assert pool.take(10).batch == Batch(None, ("b", "c"))
    assert len(pool) == 0


def test_lowering_priority_changes_which_region_goes_first():
    pool = pool_of(("uk", "UK", 5), ("us", "US", 3))
    pool.add("uk", "UK", 1)
    assert pool.take(10).batch == Batch("UK", ("uk",))
    assert pool.take(10).batch == Batch("US", ("us",))


def test_raising_priority_is_ignored():
    pool = pool_of(("a", None, 1), ("b", None, 3))
    pool.add("a", None, 9)
    assert pool.take(1).batch == Batch(None, ("a",))


def test_taken_event_can_be_queued_again():
    pool = pool_of(("a", None, 1))
    assert pool.take(10).batch == Batch(None, ("a",))
    assert "a" not in pool
    assert pool.add("a", None, 2) is True
    assert pool.take(10).batch == Batch(None, ("a",))


def test_contains_and_len():
    pool = pool_of(("a", None, 1), ("b", "UK", 2), ("a", None, 0))
    assert len(pool) == 2
    assert "a" in pool
    assert "b" in pool
    assert "c" not in pool


class _ModelPool:
    """The pool's meaning, written the obvious way: a dict and a full sort per take."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, str | None]] = {}

    def add(self, eid: str, region: str | None, prio: float) -> bool:
        old = self.entries.get(eid)
        if old is not None and old[0] <= prio and old[1] == region:
            return False
        self.entries[eid] = (prio, region)
        return old is None

    def take(self, limit: int, drop) -> tuple[Batch, list[str]]:
        if not self.entries:
            return Batch(None, ()), []
        order = sorted(self.entries, key=lambda e: self.entries[e][0])
        region = self.entries[order[0]][1]
        ids: list[str] = []
        dropped: list[str] = []
        for eid in order:
            if len(ids) == limit:
                break
            if self.entries[eid][1] != region:
                continue
            del self.entries[eid]
            (dropped if drop(eid) else ids).append(eid)
        return Batch(region, tuple(ids)), dropped


@pytest.mark.parametrize("seed", range(60))
def test_pool_matches_its_model(seed):
    """Random adds (one by one and in bursts), re-adds at other priorities and regions,
    discards and takes with drops: the pool hands out what the model does, in the same order."""
    rng = random.Random(seed)
    pool, model = DuePool(), _ModelPool()
    names = [f"e{i}" for i in range(40)]
    regions = [None, None, "UK", "US"]
    unwanted = set(rng.sample(names, 5))
    for _ in range(300):
        op = rng.random()
        if op < 0.3:
            eid, region, prio = rng.choice(names), rng.choice(regions), rng.random()
            assert pool.add(eid, region, prio) == model.add(eid, region, prio)
        elif op < 0.5:
            region = rng.choice(regions)
            burst = rng.sample(names, rng.randint(1, 15))
            prios = [rng.random() for _ in burst]
            expected = sum(model.add(e, region, p) for e, p in zip(burst, prios, strict=True))
            assert pool.add_many(burst, region, prios) == expected
        elif op < 0.6:
            eid = rng.choice(names)
            pool.discard(eid)
            model.entries.pop(eid, None)
        else:
            limit = rng.randint(1, 12)
            if rng.random() < 0.5:
                taken = pool.take(limit, drop=unwanted.__contains__)
            else:
                taken = pool.take(
                    limit,
                    split=lambda ids: (
                        [e for e in ids if e not in unwanted],
                        [e for e in ids if e in unwanted],
                    ),
                )
            batch, dropped = model.take(limit, unwanted.__contains__)
            assert (taken.batch, taken.dropped) == (batch, dropped)
        assert len(pool) == len(model.entries)
        assert all((e in pool) == (e in model.entries) for e in names)

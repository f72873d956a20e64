"""Table tests for batch planning: size limit, one region per batch, oldest first, each event once."""

from __future__ import annotations

import random

import pytest

from monitor.core.batching import MAX_BATCH, Batch, DueQueue, plan_batches, sort_by_priority

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
# DueQueue directly
# ------------------------------------------------------------------------------------------


def queue_of(*events):
    queue = DueQueue()
    for eid, region, prio in events:
        queue.add_many([eid], region, [prio])
    return queue


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        pytest.param([("a", None, 5), ("a", None, 1), ("b", None, 3)], [("a", "b")],
                     id="listed-twice-keeps-lower-priority"),
        pytest.param([("a", None, 1), ("a", None, 9), ("b", None, 3)], [("a", "b")],
                     id="higher-priority-again-ignored"),
        pytest.param([("a", None, 1), ("b", None, 1), ("a", None, 1)], [("a", "b")],
                     id="same-again-ignored"),
        pytest.param([("a", "UK", 1), ("b", "US", 2), ("a", "US", 3)], [("b", "a")],
                     id="last-region-wins"),
    ],
)  # fmt: skip
def test_plan_lists_an_event_once(plan, expected):
    assert [b.event_ids for b in plan_batches(plan)] == expected


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
@pytest.mark.parametrize("how", ["drop", "split"])
def test_take_with_drop(events, drop, limit, batch, dropped, left, how):
    queue = queue_of(*events)
    if how == "drop":
        taken = queue.take(limit, drop=drop.__contains__)
    else:
        taken = queue.take(
            limit,
            split=lambda ids: ([e for e in ids if e not in drop], [e for e in ids if e in drop]),
        )
    assert taken.batch.event_ids == batch
    assert taken.dropped == dropped
    assert len(queue) == left


def test_take_empty_queue():
    taken = DueQueue().take(10)
    assert taken.batch == Batch(None, ())
    assert taken.dropped == []


def test_drain_returns_everything_queued():
    queue = queue_of(("a", "UK", 1), ("b", None, 2), ("c", None, 0))
    assert queue.take(1).batch == Batch(None, ("c",))
    queue.add_many(["d", "e"], "US", [5, 4])
    assert sorted(queue.drain()) == ["a", "b", "d", "e"]
    assert len(queue) == 0
    assert queue.take(10).batch == Batch(None, ())


def test_priorities_must_match_events():
    with pytest.raises(ValueError, match="one priority per event"):
        DueQueue().add_many(["a", "b"], None, [1.0])


def test_taken_event_can_be_queued_again():
    queue = queue_of(("a", None, 1))
    assert queue.take(10).batch == Batch(None, ("a",))
    assert len(queue) == 0
    queue.add_many(["a"], None, [2])
    assert queue.take(10).batch == Batch(None, ("a",))


def test_later_burst_merges_with_what_is_left():
    queue = DueQueue()
    queue.add_many(["a", "b", "c", "d"], None, [1, 3, 5, 7])
    assert queue.take(2).batch.event_ids == ("a", "b")
    queue.add_many(["x", "y"], None, [4, 0])
    assert queue.take(10).batch.event_ids == ("y", "x", "c", "d")


def test_equal_priorities_keep_the_order_they_came_in():
    queue = DueQueue()
    queue.add_many(["a", "b"], None, [1, 1])
    queue.add_many(["c"], None, [1])
    queue.add_many(["d", "e"], None, [0, 1])
    assert queue.take(10).batch.event_ids == ("d", "a", "b", "c", "e")


class _ModelQueue:
    """The queue's meaning, written the obvious way: a dict and a full sort per take."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[float, int, str | None]] = {}
        self.seq = 0

    def add(self, eid: str, region: str | None, prio: float) -> None:
        self.entries[eid] = (prio, self.seq, region)
        self.seq += 1

    def take(self, limit: int, drop) -> tuple[Batch, list[str]]:
        if not self.entries:
            return Batch(None, ()), []
        order = sorted(self.entries, key=lambda e: self.entries[e][:2])
        region = self.entries[order[0]][2]
        ids: list[str] = []
        dropped: list[str] = []
        for eid in order:
            if len(ids) == limit:
                break
            if self.entries[eid][2] != region:
                continue
            del self.entries[eid]
            (dropped if drop(eid) else ids).append(eid)
        return Batch(region, tuple(ids)), dropped


@pytest.mark.parametrize("seed", range(60))
def test_queue_matches_its_model(seed):
    """Random bursts of adds (of events not queued), and takes with drops: the queue hands out
    what the model does, in the same order."""
    rng = random.Random(seed)
    queue, model = DueQueue(), _ModelQueue()
    names = [f"e{i}" for i in range(40)]
    regions = [None, None, "UK", "US"]
    unwanted = set(rng.sample(names, 5))
    for _ in range(300):
        if rng.random() < 0.4:
            region = rng.choice(regions)
            free = [e for e in names if e not in model.entries]
            burst = rng.sample(free, min(len(free), rng.randint(1, 15)))
            # Ties within a region on purpose (they keep arrival order); none across regions
            # (which region goes first on a tie is not specified).
            offset = {None: 0.0, "UK": 0.25, "US": 0.5}[region]
            if rng.random() < 0.5:
                prios = [rng.randint(0, 20) + offset for _ in burst]
            else:  # runs of equal priorities, as one answer's events have
                prios = []
                while len(prios) < len(burst):
                    prios += [rng.randint(0, 20) + offset] * rng.randint(1, 20)
                del prios[len(burst) :]
            for e, p in zip(burst, prios, strict=True):
                model.add(e, region, p)
            queue.add_many(burst, region, prios)
        else:
            limit = rng.randint(1, 12)
            if rng.random() < 0.5:
                taken = queue.take(limit, drop=unwanted.__contains__)
            else:
                taken = queue.take(
                    limit,
                    split=lambda ids: (
                        [e for e in ids if e not in unwanted],
                        [e for e in ids if e in unwanted],
                    ),
                )
            batch, dropped = model.take(limit, unwanted.__contains__)
            assert (taken.batch, taken.dropped) == (batch, dropped)
        assert len(queue) == len(model.entries)


@pytest.mark.parametrize(
    "prios",
    [
        pytest.param([], id="empty"),
        pytest.param([3.0], id="one"),
        pytest.param([2.0] * 40 + [1.0] * 40 + [2.0] * 40 + [0.5] * 40, id="few-runs-with-ties"),
        pytest.param([float(i % 7) for i in range(200)], id="many-runs"),
        pytest.param([5.0, 4.0] * 3 + [1.0] * 100, id="runs-at-the-limit"),
        pytest.param([float((i * 37) % 11) for i in range(33)] + [0.0] * 600, id="mixed"),
    ],
)
def test_sort_by_priority_is_a_stable_sort(prios):
    ids = [f"e{i}" for i in range(len(prios))]
    order = sorted(range(len(ids)), key=prios.__getitem__)
    got_ids, got_prios = sort_by_priority(ids, prios)
    assert got_ids == [ids[i] for i in order]
    assert got_prios == [prios[i] for i in order]

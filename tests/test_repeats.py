"""Repeated answers: skipped only while judging them again could not find anything new."""

from __future__ import annotations

from array import array

import aiohttp
import orjson
import pytest

from monitor.config.catalog import build_catalog
from monitor.core.transitions import EventState
from monitor.poller.repeats import RepeatMemo, Seen
from monitor.secrets import Secret
from monitor.upstream.delta import Layout
from monitor.upstream.inventory import InventoryAnswer, InventoryClient, body_digest, parse_answer
from tests.conftest import API_KEY, make_config

A, B = "EVTAAAAAAAAAAAA1", "EVTBBBBBBBBBBBB2"
AV, FEW = "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT"
STATE = EventState((AV, None, 0), (AV, None, 0))


def body(*pairs: tuple[str, str]) -> bytes:
    return orjson.dumps([{"eventId": e, "status": s, "resaleStatus": AV} for e, s in pairs])


def seen(ids: list[str], digest: bytes = b"d", rules_from: object = None) -> Seen:
    return Seen(ids, digest, [STATE] * len(ids), rules_from, 0, [])


@pytest.mark.parametrize(
    ("region", "ids", "digest", "hit"),
    [
        pytest.param(None, [A, B], b"d", True, id="same"),
        pytest.param(None, [A, B], b"x", False, id="other-digest"),
        pytest.param(None, [B, A], b"d", False, id="other-order"),
        pytest.param(None, [A], b"d", False, id="fewer-ids"),
        pytest.param("UK", [A, B], b"d", False, id="other-region"),
    ],
)
def test_recall_needs_the_same_request_and_body(region, ids, digest, hit):
    memo = RepeatMemo()
    memo.remember(None, seen([A, B]))
    assert (memo.recall(region, ids, digest) is not None) == hit


def test_memo_is_bounded_and_keeps_the_newest():
    memo = RepeatMemo(max_entries=2)
    for eid in ("e1", "e2", "e3"):
        memo.remember(None, seen([eid]))
    assert len(memo) == 2
    assert memo.recall(None, ["e1"], b"d") is None
    assert memo.recall(None, ["e3"], b"d") is not None
    memo.remember(None, seen(["e2"], b"new"))  # replaced, not added
    assert len(memo) == 2
    assert memo.recall(None, ["e2"], b"d") is None
    assert memo.recall(None, ["e2"], b"new") is not None


def _layout(ids: list[str]) -> Layout:
    n = len(ids)
    return Layout(ids, array("q", [0] * n), [AV] * n, [AV] * n)


def test_memo_holds_at_most_max_ids_per_table_oldest_out():
    memo = RepeatMemo(max_ids=10)
    requests = [[f"r{r}e{i}" for i in range(4)] for r in range(4)]
    for ids in requests:
        memo.remember(None, seen(ids))
        memo.keep_layout(None, ids, _layout(ids))
    # 4 IDs each, at most 10 held: the two newest requests stay, in each table.
    assert [memo.recall(None, ids, b"d") is not None for ids in requests] == [
        False,
        False,
        True,
        True,
    ]
    assert [memo.layout(None, ids) is not None for ids in requests] == [False, False, True, True]
    memo.keep_layout(None, requests[2], _layout(requests[2]))  # kept again: now the newest
    memo.keep_layout(None, requests[0], _layout(requests[0]))
    assert [memo.layout(None, ids) is not None for ids in requests] == [True, False, True, False]
    memo.keep_layout(None, requests[2], None)  # forgotten: frees its IDs
    memo.keep_layout(None, requests[1], _layout(requests[1]))
    assert [memo.layout(None, ids) is not None for ids in requests] == [True, True, False, False]


def test_lowering_the_limit_drops_the_oldest_at_once():
    memo = RepeatMemo()
    requests = [[f"r{r}e{i}" for i in range(3)] for r in range(5)]
    for ids in requests:
        memo.remember(None, seen(ids))
        memo.keep_layout(None, ids, _layout(ids))
    memo.limit_ids(6)
    assert len(memo) == 2
    assert [memo.layout(None, ids) is not None for ids in requests] == [False] * 3 + [True] * 2


async def test_processor_bounds_the_memo_by_the_watched_events(sim, tmp_path, start_daemon):
    """Requests that churn (here: every answer to a request no longer made) cannot hold more
    than twice the watched events plus a batch."""
    d = await start_daemon(
        make_config(
            sim.url, tmp_path / "s.db", f"watch_sets:\n  - {{name: m, events: [{A}, {B}]}}\n"
        )
    )
    proc = d.processor
    raw = body((A, AV), (B, AV))
    for i in range(3000):
        request = [A, B] if i % 2 else [B, A]
        answer = parse_answer(raw if i % 2 else body((B, AV), (A, AV)), request, keep_layout=True)
        answer.digest = body_digest(f"{i}".encode())
        await proc.process_answer(f"region-{i}", request, answer, float(i))
    memo = proc._repeats
    assert memo._layouts.held <= 2 * 2 + 1000
    assert memo._seen.held <= 2 * 2 + 1000
    assert len(memo._layouts) <= (2 * 2 + 1000) // 2


async def test_client_leaves_a_known_body_undecoded(sim):
    sim.world.set_status(A, status=FEW)
    async with aiohttp.ClientSession() as session:
        client = InventoryClient(session=session, base_url=sim.url, api_key=Secret(API_KEY))
        fresh = await client.fetch([A, B], known=lambda digest: False)
        assert fresh.repeat is None
        assert fresh.statuses[0] == FEW
        assert fresh.digest is not None
        again = await client.fetch([A, B], known=lambda digest: digest == fresh.digest)
        assert again.repeat is not None and again.statuses == []
        assert body_digest(again.repeat) == fresh.digest
        plain = await client.fetch([A, B])
        assert (plain.digest, plain.repeat) == (None, None)


async def test_repeat_is_judged_again_when_states_moved(sim, tmp_path, start_daemon):
    """An answer repeats byte for byte, but one of its events changed through another request
    meanwhile: the repeat is judged after all, and the change back is a transition."""
    d = await start_daemon(
        make_config(
            sim.url, tmp_path / "s.db", f"watch_sets:\n  - {{name: m, events: [{A}, {B}]}}\n"
        )
    )
    proc = d.processor
    both = body((A, AV), (B, AV))

    def answer(ids: list[str], raw: bytes) -> InventoryAnswer:
        digest = body_digest(raw)
        if proc.known_answers(None, ids)(digest):
            return InventoryAnswer(list(ids), [], [], digest=digest, repeat=raw)
        decoded = parse_answer(raw, ids)
        decoded.digest = digest
        return decoded

    assert await proc.process_answer(None, [A, B], answer([A, B], both), 1.0) == []  # baselines
    assert not proc.known_answers(None, [A, B])(body_digest(both))  # they changed states
    assert await proc.process_answer(None, [A, B], answer([A, B], both), 2.0) == []
    assert proc.known_answers(None, [A, B])(body_digest(both))  # changed nothing: remembered

    skipped = d.metrics.upstream_repeated_answers_total
    assert skipped._value.get() == 0
    repeated = answer([A, B], both)
    assert repeated.repeat is not None
    assert await proc.process_answer(None, [A, B], repeated, 3.0) == []
    assert d.live.observed_at[A] == d.live.observed_at[B] == 3.0
    assert skipped._value.get() == 1

    moved = await proc.process_answer(None, [A], answer([A], body((A, FEW))), 4.0)
    assert [(t.event_id, t.previous, t.current) for t in moved] == [(A, AV, FEW)]

    repeated = answer([A, B], both)
    assert repeated.repeat is not None  # same request, same body as remembered...
    back = await proc.process_answer(None, [A, B], repeated, 5.0)
    assert [(t.event_id, t.previous, t.current) for t in back] == [(A, FEW, AV)]  # ...judged
    assert skipped._value.get() == 1  # judged, so not counted as skipped
    assert d.live.status(A) == AV


async def test_repeat_is_judged_again_after_a_reload(sim, tmp_path, start_daemon):
    """Rules may have changed with the config: a remembered answer is not trusted across it."""
    config = make_config(
        sim.url, tmp_path / "s.db", f"watch_sets:\n  - {{name: m, events: [{A}]}}\n"
    )
    d = await start_daemon(config)
    proc = d.processor
    raw = body((A, AV))
    for at in (1.0, 2.0):
        decoded = parse_answer(raw, [A])
        decoded.digest = body_digest(raw)
        await proc.process_answer(None, [A], decoded, at)
    assert proc.known_answers(None, [A])(body_digest(raw))
    d.catalog = build_catalog(config)  # as a reload does: a new catalog
    states_before = dict(d.live.states)
    repeated = InventoryAnswer([A], [], [], digest=body_digest(raw), repeat=raw)
    assert await proc.process_answer(None, [A], repeated, 3.0) == []
    assert repeated.repeat is None and repeated.statuses == [AV]  # decoded and judged this time
    assert d.live.states == states_before


def test_a_layout_is_found_only_for_its_own_request(monkeypatch):
    memo = RepeatMemo()
    memo.keep_layout(None, [A, B], _layout([A, B]))
    assert memo.layout(None, [A, B]) is not None
    assert memo.layout("UK", [A, B]) is None
    assert memo.layout(None, [B, A]) is None
    # Two requests whose keys collide: the IDs are compared all the same.
    monkeypatch.setattr(
        RepeatMemo, "_key", staticmethod(lambda region, ids: (region, 0, None, None))
    )
    memo.keep_layout(None, [A, B], _layout([A, B]))
    memo.remember(None, seen([A, B]))
    assert memo.layout(None, [A, B]) is not None
    assert memo.layout(None, ["X", "Y"]) is None
    assert memo.recall(None, [A, B], b"d") is not None
    assert memo.recall(None, ["X", "Y"], b"d") is None
    with pytest.raises(ValueError, match="another request"):
        memo.keep_layout(None, ["X", "Y"], _layout([A, B]))


def test_requests_that_differ_inside_take_each_others_place():
    """The key reads a request's length and ends only: two requests alike there share it, and
    each is found only while it is the one kept."""
    first, second = [A, "M1", B], [A, "M2", B]
    memo = RepeatMemo()
    memo.remember(None, seen(first))
    memo.keep_layout(None, first, _layout(first))
    assert memo.recall(None, second, b"d") is None
    assert memo.layout(None, second) is None
    memo.remember(None, seen(second))
    memo.keep_layout(None, second, _layout(second))
    assert memo.recall(None, first, b"d") is None and memo.layout(None, first) is None
    assert memo.recall(None, second, b"d") is not None
    assert memo.layout(None, second) is not None
    assert (memo._seen.held, memo._layouts.held) == (3, 3)

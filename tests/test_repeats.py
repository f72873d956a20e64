"""Repeated answers: skipped only while judging them again could not find anything new."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from monitor.config.catalog import build_catalog
from monitor.core.transitions import EventState
from monitor.poller.repeats import RepeatMemo, Seen
from monitor.secrets import Secret
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

"""Answers decoded as a delta of the last one: the same columns as a full decode, or none."""

from __future__ import annotations

import random

import aiohttp
import orjson
import pytest

from monitor.domain import STATUSES
from monitor.secrets import Secret
from monitor.upstream.delta import Layout, decode_delta, layout_of, objects
from monitor.upstream.errors import MalformedAnswer
from monitor.upstream.inventory import InventoryClient, parse_answer
from tests.conftest import API_KEY, make_config

N = 40
IDS = [f"EVT{i:013d}" for i in range(N)]
AV, FEW, SOLD = "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE"


def items(statuses: list[str | None]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for eid, s in zip(IDS, statuses, strict=True):
        item: dict[str, object] = {"eventId": eid}
        if s is not None:
            item["status"] = s
        item["resaleStatus"] = AV
        out.append(item)
    return out


BASE = [STATUSES[i % len(STATUSES)] for i in range(N)]
PREVIOUS = orjson.dumps(items(list(BASE)))


def previous_layout() -> Layout:
    full = parse_answer(PREVIOUS, IDS, keep_layout=True)
    assert full.layout is not None
    return full.layout


def changed(**at: object) -> bytes:
    """PREVIOUS with the objects at the given places replaced (`p3={...}` for place 3)."""
    data: list[object] = list(items(list(BASE)))
    for key, value in at.items():
        data[int(key[1:])] = value
    return orjson.dumps(data)


# (new body, whether the delta decodes it) - whenever it does, its columns must be a full
# decode's; whenever it does not, the full decode still gives the answer.
CASES = [
    pytest.param(PREVIOUS, True, id="same-bytes"),
    pytest.param(
        changed(p3={"eventId": IDS[3], "status": SOLD, "resaleStatus": AV}), True, id="one-status"
    ),
    pytest.param(
        changed(
            p0={"eventId": IDS[0], "status": FEW, "resaleStatus": SOLD},
            p39={"eventId": IDS[39], "status": SOLD, "resaleStatus": FEW},
        ),
        True,
        id="first-and-last",
    ),
    pytest.param(
        changed(p5={"resaleStatus": AV, "status": SOLD, "eventId": IDS[5]}),
        True,
        id="keys-reordered",
    ),
    pytest.param(
        changed(p5={"eventid": IDS[5], "status": SOLD, "resaleStatus": AV}),
        True,
        id="eventid-spelling",
    ),
    pytest.param(changed(p7={"eventId": IDS[7], "resaleStatus": AV}), True, id="status-absent"),
    pytest.param(
        changed(p7={"eventId": IDS[7], "status": SOLD, "resaleStatus": AV, "x": [1, 2]}),
        True,
        id="extra-key-no-braces",
    ),
    pytest.param(
        changed(p7={"eventId": IDS[7], "status": "NEW_KIND", "resaleStatus": AV}),
        False,
        id="unknown-status",
    ),
    pytest.param(
        changed(p7={"eventId": IDS[7], "status": 3, "resaleStatus": AV}),
        False,
        id="status-not-a-string",
    ),
    pytest.param(
        changed(p7={"eventId": IDS[7], "status": ["SOLD_OUT"], "resaleStatus": AV}),
        False,
        id="status-a-list",
    ),
    pytest.param(
        changed(p7={"eventId": IDS[8], "status": SOLD, "resaleStatus": AV}),
        False,
        id="other-event-at-place",
    ),
    pytest.param(
        changed(p7={"eventId": IDS[7], "status": SOLD, "resaleStatus": AV, "x": "},{"}),
        False,
        id="brace-in-string",
    ),
    pytest.param(
        changed(p7={"eventId": IDS[7], "status": SOLD, "resaleStatus": AV, "x": {"y": 1}}),
        False,
        id="nested-object",
    ),
    pytest.param(changed(p7=[IDS[7], SOLD]), False, id="not-an-object"),
    pytest.param(PREVIOUS.replace(b"},{", b"}, {", 1), False, id="whitespace-between"),
    pytest.param(PREVIOUS[:-1] + b",{}]", False, id="one-object-more"),
    pytest.param(b"[" + PREVIOUS[PREVIOUS.index(b"},{") + 2 :], False, id="one-object-less"),
    pytest.param(orjson.dumps(items([SOLD] * N)), False, id="most-changed"),
    pytest.param(b"[]", False, id="empty"),
    pytest.param(b'{"eventId": 1}', False, id="not-an-array"),
]


@pytest.mark.parametrize(("new", "by_delta"), CASES)
def test_delta_decodes_as_a_full_decode_would(new, by_delta):
    delta = decode_delta(new, IDS, previous_layout())
    assert (delta is not None) == by_delta
    try:
        full = parse_answer(new, IDS)
    except MalformedAnswer:
        full = None
    if delta is not None:
        assert full is not None
        assert (delta[0], delta[1]) == (full.statuses, full.resales)
        assert full.ids == IDS and full.unknown_statuses == full.ignored == 0
        assert not full.missing
        # The new layout reads the answer after it as a full decode would, too.
        again = decode_delta(new, IDS, delta[2])
        assert again is not None and (again[0], again[1]) == (full.statuses, full.resales)


@pytest.mark.parametrize(("new", "by_delta"), CASES)
def test_parse_answer_with_a_previous_layout_gives_the_same_answer(new, by_delta):
    try:
        plain = parse_answer(new, IDS)
    except MalformedAnswer:
        with pytest.raises(MalformedAnswer):
            parse_answer(new, IDS, previous_layout(), keep_layout=True)
        return
    with_previous = parse_answer(new, IDS, previous_layout(), keep_layout=True)
    assert (with_previous.ids, with_previous.statuses, with_previous.resales) == (
        plain.ids,
        plain.statuses,
        plain.resales,
    )
    assert (with_previous.unknown_statuses, with_previous.ignored, with_previous.missing) == (
        plain.unknown_statuses,
        plain.ignored,
        plain.missing,
    )


@pytest.mark.parametrize("seed", range(30))
def test_random_changes_decode_as_in_full(seed):
    """A chain of answers, each changing a few statuses of the last: decoded as deltas all
    along, always what a full decode gives."""
    rng = random.Random(seed)
    values: list[str | None] = [*STATUSES, None]
    current = list(BASE)
    layout = previous_layout()
    used = 0
    for _ in range(20):
        for i in rng.sample(range(N), rng.randint(0, 6)):
            current[i] = rng.choice(values)
        new = orjson.dumps(items(current))
        full = parse_answer(new, IDS)
        got = parse_answer(new, IDS, layout, keep_layout=True)
        assert (got.statuses, got.resales) == (full.statuses, full.resales)
        used += decode_delta(new, IDS, layout) is not None
        assert got.layout is not None
        layout = got.layout
    assert used >= 15  # the chain was decoded as deltas, not in full


def test_layout_keeps_one_shared_object_per_status():
    decoded = orjson.loads(PREVIOUS)
    statuses = [d["status"] for d in decoded]
    layout = layout_of(PREVIOUS, statuses, [d["resaleStatus"] for d in decoded])
    assert layout is not None
    assert all(s is STATUSES[STATUSES.index(s)] for s in layout.statuses)
    assert not any(s is t for s, t in zip(layout.statuses, statuses, strict=True))


def test_objects_needs_exactly_one_flat_object_per_event():
    assert objects(b'[{"a":1},{"a":2}]', 2) == [b'"a":1', b'"a":2']
    assert objects(b'[{"a":1},{"a":2}]', 3) is None
    assert objects(b'[{"a":"}{"},{"a":2}]', 2) is None
    assert objects(b"[]", 0) is None


async def test_the_daemon_decodes_a_changed_answer_as_a_delta(sim, tmp_path, start_daemon):
    """Through the real simulator: one event of eight changes between two polls; the second
    answer is decoded against the first one's layout, and the transition is the one expected."""
    ids = [f"EVTDELTA{i:08d}" for i in range(8)]
    listed = ", ".join(ids)
    d = await start_daemon(
        make_config(
            sim.url, tmp_path / "s.db", f"watch_sets:\n  - {{name: m, events: [{listed}]}}\n"
        )
    )
    await d.scheduler.run_once()
    layout = d.processor.last_layout(None, ids)
    assert layout is not None and len(layout.hashes) == 8
    sim.world.set_status(ids[2], status=SOLD)
    await d.scheduler.run_once()
    assert d.live.status(ids[2]) == SOLD
    after = d.processor.last_layout(None, ids)
    assert after is not None and after is not layout
    assert after.statuses[2] == SOLD
    assert list(after.hashes) != list(layout.hashes)

    async with aiohttp.ClientSession() as session:
        client = InventoryClient(session=session, base_url=sim.url, api_key=Secret(API_KEY))
        sim.world.set_status(ids[5], status=FEW)
        answer = await client.fetch(ids, previous=after, known=lambda digest: False)
        assert answer.statuses[5] == FEW and answer.statuses[2] == SOLD
        assert answer.layout is not None

"""Answers decoded as a delta of the last one: the same columns as a full decode, or none."""

from __future__ import annotations

import random

import aiohttp
import orjson
import pytest

from monitor.domain import STATUSES
from monitor.secrets import Secret
from monitor.upstream import delta as delta_module
from monitor.upstream.delta import MOST_CHANGED, Layout, decode_delta, layout_of, objects
from monitor.upstream.errors import MalformedAnswer
from monitor.upstream.inventory import InventoryClient, parse_answer
from tests.conftest import API_KEY, make_config

N = 40


@pytest.fixture(autouse=True)
def _delta_enabled(monkeypatch):
    """As in any process whose hash seed is drawn at random (see `delta.ENABLED`)."""
    monkeypatch.setattr(delta_module, "ENABLED", True)


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


def obj(i: int, **fields: object) -> dict[str, object]:
    """The object of the event at place i, its status changed to SOLD unless told otherwise."""
    return {"eventId": IDS[i], "status": SOLD, "resaleStatus": AV, **fields}


def at(i: int, **fields: object) -> bytes:
    """PREVIOUS with the object at place i replaced by `obj(i, **fields)`."""
    return changed(**{f"p{i}": obj(i, **fields)})


# (new body, whether the delta decodes it) - whenever it does, its columns must be a full
# decode's; whenever it does not, the full decode still gives the answer.
CASES = [
    pytest.param(PREVIOUS, True, id="same-bytes"),
    pytest.param(at(3), True, id="one-status"),
    pytest.param(
        changed(p0=obj(0, status=FEW, resaleStatus=SOLD), p39=obj(39, resaleStatus=FEW)),
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
    pytest.param(at(7, x=[1, 2]), True, id="extra-key-no-braces"),
    pytest.param(at(7, status="NEW_KIND"), False, id="unknown-status"),
    pytest.param(at(7, status=3), False, id="status-not-a-string"),
    pytest.param(at(7, status=[SOLD]), False, id="status-a-list"),
    pytest.param(at(7, eventId=IDS[8]), False, id="other-event-at-place"),
    pytest.param(at(7, x="},{"), False, id="brace-in-string"),
    pytest.param(at(7, x={"y": 1}), False, id="nested-object"),
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
    layout = layout_of(PREVIOUS, IDS, statuses, [d["resaleStatus"] for d in decoded])
    assert layout is not None
    assert all(s is STATUSES[STATUSES.index(s)] for s in layout.statuses)
    assert not any(s is t for s, t in zip(layout.statuses, statuses, strict=True))


def test_objects_needs_exactly_one_flat_object_per_event():
    assert objects(b'[{"a":1},{"a":2}]', 2) == [b'"a":1', b'"a":2']
    assert objects(b'[{"a":1},{"a":2}]', 3) is None
    assert objects(b'[{"a":"}{"},{"a":2}]', 2) is None
    assert objects(b"[]", 0) is None


async def test_the_daemon_decodes_a_changed_answer_as_a_delta(
    sim, tmp_path, start_daemon, monkeypatch
):
    """Through the real simulator: one event of eight changes between two polls; the second
    answer is decoded against the first one's layout, and the transition is the one expected."""
    from monitor.upstream import inventory

    deltas: list[bool] = []
    real = inventory.decode_delta

    def spy(*args):
        out = real(*args)
        deltas.append(out is not None)
        return out

    monkeypatch.setattr(inventory, "decode_delta", spy)
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
    assert deltas == [True]  # the second answer went through the delta, and only it
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


def test_a_fixed_hash_seed_turns_the_delta_off(monkeypatch):
    layout = previous_layout()
    new = at(3)
    assert decode_delta(new, IDS, layout) is not None
    monkeypatch.setattr(delta_module, "ENABLED", False)
    assert decode_delta(new, IDS, layout) is None
    assert parse_answer(PREVIOUS, IDS, keep_layout=True).layout is None
    assert parse_answer(new, IDS, layout).statuses[3] == SOLD


def _all_eventid_with_one_stray_eventid_key() -> tuple[bytes, list[dict[str, object]]]:
    data: list[dict[str, object]] = [{"eventid": e, "status": AV, "resaleStatus": AV} for e in IDS]
    data[0] = {"eventId": "LEGACY-0", "eventid": IDS[0], "status": AV, "resaleStatus": AV}
    return orjson.dumps(data), data


def test_eventid_column_is_read_only_where_no_object_has_an_eventId():
    """Found in review: the full decode read `eventid` throughout although one object had an
    `eventId` of its own, which the careful path reads first. Both paths now agree, and no
    layout is kept from such an answer, so a delta cannot carry the first reading on."""
    body, data = _all_eventid_with_one_stray_eventid_key()
    first = parse_answer(body, IDS, keep_layout=True)
    assert first.layout is None
    assert IDS[0] in first.missing and first.ignored == 1
    data[1] = obj(1)
    new = orjson.dumps(data)
    assert parse_answer(new, IDS, first.layout).missing == parse_answer(new, IDS).missing


def test_no_layout_from_an_answer_the_careful_path_read():
    data = items(list(BASE))
    data[4] = obj(4, status="NEW_KIND")
    careful = parse_answer(orjson.dumps(data), IDS, keep_layout=True)
    assert careful.unknown_statuses == 1 and careful.layout is None


def test_a_delta_that_fails_leaves_the_layout_as_it_was():
    layout = previous_layout()
    before = (list(layout.hashes), list(layout.statuses), list(layout.resales))
    new = changed(
        p1=obj(1),
        p30=obj(30, status="NEW_KIND"),
    )
    assert decode_delta(new, IDS, layout) is None
    assert (list(layout.hashes), list(layout.statuses), list(layout.resales)) == before
    ok = decode_delta(at(1), IDS, layout)
    assert ok is not None
    ok[0][2] = "changed by the caller"  # the answer's columns are not the layout's
    assert ok[2].statuses[2] == BASE[2]


def test_a_layout_serves_only_its_own_request_and_length():
    layout = previous_layout()
    other = [f"OTHER{i:011d}" for i in range(N)]
    # The very same bytes, asked for under other IDs: no object changed, yet none is theirs.
    assert decode_delta(PREVIOUS, other, layout) is None
    assert parse_answer(PREVIOUS, other, layout).missing == other
    assert decode_delta(PREVIOUS, IDS[:-1], layout) is None
    assert layout_of(PREVIOUS, IDS[:-1], list(BASE), list(BASE)) is None
    braces = orjson.dumps([{**item, "x": "}{"} for item in items(list(BASE))])
    assert layout_of(braces, IDS, list(BASE), [AV] * N) is None


@pytest.mark.parametrize(
    ("k", "by_delta"), [(int(N * MOST_CHANGED), True), (int(N * MOST_CHANGED) + 1, False)]
)
def test_the_share_of_changed_objects_a_delta_takes(k, by_delta):
    # Every resale status in BASE is AV: each of the k objects really changes.
    new = changed(**{f"p{i}": obj(i, status=BASE[i], resaleStatus=FEW) for i in range(k)})
    assert (decode_delta(new, IDS, previous_layout()) is not None) == by_delta


def test_one_event_answers():
    ids = IDS[:1]
    old = orjson.dumps([{"eventId": ids[0], "status": AV, "resaleStatus": AV}])
    layout = parse_answer(old, ids, keep_layout=True).layout
    assert layout is not None
    assert decode_delta(old, ids, layout) is not None  # nothing changed: nothing to decode
    new = orjson.dumps([{"eventId": ids[0], "status": FEW, "resaleStatus": AV}])
    assert decode_delta(new, ids, layout) is None  # one of one changed: past the share


def _odd_object(rng: random.Random, eid: str) -> bytes:
    """One object as an upstream might send it, odd ones included (spellings, junk IDs,
    unknown or non-string values, braces and escapes in strings, spacing, duplicate keys)."""
    fields: dict[str, object] = {}
    mode = rng.random()
    if mode < 0.6:
        fields["eventId"] = eid
    elif mode < 0.75:
        fields["eventid"] = eid
    elif mode < 0.85:
        fields["eventId"] = rng.choice(["X", None, 5, ""])
        fields["eventid"] = eid
    else:
        fields["eventId"] = eid
        fields["eventid"] = rng.choice(["X", eid])
    values = [*STATUSES, None, "NEW_KIND", 3, True, [], "tickets_available"]
    for key in ("status", "resaleStatus"):
        if rng.random() < 0.9:
            fields[key] = rng.choice(values)
    if rng.random() < 0.1:
        fields["x"] = rng.choice(["}{", "},{", "\u007b", 'a"b', [1, {"y": 1}], {"z": 2}])
    pairs = list(fields.items())
    rng.shuffle(pairs)
    out = b"{" + b",".join(orjson.dumps(k) + b":" + orjson.dumps(v) for k, v in pairs) + b"}"
    if rng.random() < 0.05:
        out = out.replace(b"{", b"{ ", 1)
    if rng.random() < 0.05:
        out = out[:-1] + b',"status":"TICKETS_NOT_AVAILABLE"}'
    return out


def _decoded(body: bytes, ids: list[str], layout: Layout | None) -> tuple[object, ...]:
    try:
        a = parse_answer(body, ids, layout, keep_layout=True)
    except MalformedAnswer:
        return ("malformed",)
    return (a.ids, a.statuses, a.resales, a.unknown_statuses, a.ignored, a.missing)


@pytest.mark.parametrize("seed", range(200))
def test_odd_answers_decode_as_in_full(seed):
    """Chains of answers with odd objects among plain ones: with or without the last layout,
    every field of the decoded answer is the same (the fuzzing that found the `eventid` case)."""
    rng = random.Random(seed)
    n = rng.choice([1, 2, 3, 5, 8, 13, 40])
    ids = [f"EV{seed}_{i}" for i in range(n)]
    objs = [
        orjson.dumps({"eventId": e, "status": rng.choice(STATUSES), "resaleStatus": AV})
        for e in ids
    ]
    if rng.random() < 0.3:  # `eventid` throughout, some with a stray `eventId` too
        objs = [
            orjson.dumps({"eventId": rng.choice(["X", 5, ""]), "eventid": e, "status": AV})
            if rng.random() < 0.2
            else orjson.dumps({"eventid": e, "status": rng.choice(STATUSES)})
            for e in ids
        ]
    layout = parse_answer(b"[" + b",".join(objs) + b"]", ids, keep_layout=True).layout
    for _ in range(10):
        for i in rng.sample(range(n), min(n, rng.randint(0, max(1, n // 4)))):
            objs[i] = (
                _odd_object(rng, ids[i] if rng.random() < 0.9 else rng.choice(ids))
                if rng.random() < 0.5
                else orjson.dumps(
                    {"eventId": ids[i], "status": rng.choice(STATUSES), "resaleStatus": AV}
                )
            )
        body = b"[" + b",".join(objs) + b"]"
        assert _decoded(body, ids, layout) == _decoded(body, ids, None)
        try:
            got = parse_answer(body, ids, layout, keep_layout=True)
        except MalformedAnswer:
            continue
        if got.layout is not None:
            layout = got.layout


# Answers that name an event twice, or hold far more objects than events asked for (pure).
TWICE = [
    pytest.param(
        b'[{"eventId":"A1","status":"TICKETS_AVAILABLE"},{"eventId":"A1","status":"TICKETS_NOT_AVAILABLE"},'
        b'{"eventId":"B2","status":"FEW_TICKETS_LEFT"}]',
        ["B2"],
        ["A1"],
        id="different-status-no-observation",
    ),
    pytest.param(
        b'[{"eventId":"A1","status":"TICKETS_AVAILABLE"},{"eventId":"A1","status":"TICKETS_AVAILABLE"},'
        b'{"eventId":"B2","status":"FEW_TICKETS_LEFT"}]',
        ["A1", "B2"],
        [],
        id="same-status-observed-once",
    ),
    pytest.param(
        b'[{"eventId":"A1","status":"TICKETS_AVAILABLE","resaleStatus":"TICKETS_AVAILABLE"},'
        b'{"eventid":"A1","status":"TICKETS_AVAILABLE","resaleStatus":"TICKETS_NOT_AVAILABLE"},'
        b'{"eventId":"B2","status":"FEW_TICKETS_LEFT"}]',
        ["B2"],
        ["A1"],
        id="different-resale-status-no-observation",
    ),
]


@pytest.mark.parametrize(("body", "observed", "conflicting"), TWICE)
def test_an_event_named_twice(body, observed, conflicting):
    answer = parse_answer(body, ["A1", "B2"])
    assert answer.ids == observed
    assert answer.conflicting == conflicting
    assert answer.missing == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" + b"{}," * 99 + b"{}]", id="100-objects-for-2-ids"),
        pytest.param(b"[" * 50 + b"]" * 50, id="nested-50-deep"),
        pytest.param(b'[{"eventId":"A1","x":' + b"{" * 30 + b"}" * 30 + b"}]", id="deep-object"),
    ],
)
def test_far_more_objects_than_ids_are_refused_before_parsing(body):
    from monitor.upstream.errors import TooManyObjects

    with pytest.raises(TooManyObjects):
        parse_answer(body, ["A1", "B2"])


def test_a_few_objects_beyond_the_ids_are_tolerated():
    body = orjson.dumps([{"eventId": f"X{i}", "status": "UNKNOWN"} for i in range(18)])
    assert parse_answer(body, ["A1", "B2"]).ignored == 18

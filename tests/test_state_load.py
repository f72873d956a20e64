"""Loading every stored state at start-up: Store.iter_states and LiveState.load_all.

Run against SQLite and PostgreSQL alike (the fixtures of test_store); chunks are made small so
that a few dozen events take many of them.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from monitor.config.catalog import Catalog, Profile, SetSpec
from monitor.core.transitions import EventState, Rules
from monitor.domain import UNKNOWN
from monitor.poller.live import LiveState
from monitor.store import postgres, sqlite_states
from monitor.store.base import StateChunk, Store
from monitor.store.sqlite import SQLiteStore
from tests import test_store as suite
from tests.test_store import AVAILABLE, FEW, NONE, state

# The store suite's fixtures: each test runs on SQLite and on PostgreSQL.
backend = suite.backend
store = suite.store

VARIED = {
    "A": state(AVAILABLE),
    "B": EventState((FEW, NONE, 2), (AVAILABLE, FEW, 1)),
    "C": EventState((None, None, 0), (None, None, 0)),
    "D": EventState((UNKNOWN, None, 0), (NONE, None, 0)),
    "E": state(FEW, AVAILABLE, 99),
}


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 7 events: a few dozen events make many chunks."""
    monkeypatch.setattr(sqlite_states, "STATE_CHUNK", 7)
    monkeypatch.setattr(postgres, "STATE_CHUNK", 7)


async def chunks_of(store: Store, event_ids: list[str] | None = None) -> list[StateChunk]:
    return [chunk async for chunk in store.iter_states(event_ids)]


def flat(chunks: list[StateChunk]) -> dict[str, tuple[EventState, float]]:
    out: dict[str, tuple[EventState, float]] = {}
    for chunk in chunks:
        assert len(chunk.event_ids) == len(chunk.states) == len(chunk.observed_at)
        assert Counter(chunk.states) == chunk.tally
        for eid, st, at in zip(chunk.event_ids, chunk.states, chunk.observed_at, strict=True):
            assert eid not in out, f"{eid} came twice"
            out[eid] = (st, at)
    return out


async def test_iter_states_gives_what_load_states_gives(store: Store) -> None:
    await store.record(VARIED, [], 1700000000.25)
    await store.record({"F": state(NONE)}, [], 100.5)
    loaded = await store.load_states()
    assert flat(await chunks_of(store)) == {k: (v.state, v.observed_at) for k, v in loaded.items()}


async def test_iter_states_loads_every_chunk_with_one_object_per_state_and_time(
    store: Store,
) -> None:
    states = {f"EV{i:03d}": VARIED["AB"[i % 2]] for i in range(60)}
    await store.record(states, [], 50.0)
    chunks = await chunks_of(store)
    assert len(chunks) >= 60 // 7
    assert all(len(c.event_ids) <= 7 for c in chunks)
    got = flat(chunks)
    assert {k: v[0] for k, v in got.items()} == states
    assert len({id(st) for st, _ in got.values()}) == 2
    assert len({id(at) for _, at in got.values()}) == 1


async def test_iter_states_of_some_events(store: Store) -> None:
    await store.record({f"EV{i:03d}": state(FEW) for i in range(30)}, [], 5.0)
    wanted = ["EV003", "EV017", "EV029", "GHOST"]
    assert set(flat(await chunks_of(store, wanted))) == {"EV003", "EV017", "EV029"}


async def test_iter_states_of_an_empty_store(store: Store) -> None:
    assert flat(await chunks_of(store)) == {}


async def test_iter_states_observation_times_to_the_microsecond(store: Store) -> None:
    await store.record({"A": state()}, [], 1700000000.1234567)
    [(_, at)] = flat(await chunks_of(store)).values()
    assert 1700000000.123456 <= at <= 1700000000.1234567


async def test_sqlite_rows_the_fast_form_cannot_carry_are_read_one_by_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await store.record({f"EV{i:02d}": state() for i in range(20)}, [], 7.0)
        odd = {
            "EV05": state("SOMETHING_NEW"),  # a status the code has no digit for
            "EV06,EV07": state(FEW),  # a comma, the fast form's separator
            "EV12": state(FEW, AVAILABLE, 5000),  # a streak too long for its digits
        }
        await store.record(odd, [], 8.0)
        got = flat(await chunks_of(store))
    finally:
        await store.close()
    assert len(got) == 21
    for eid, st in odd.items():
        assert got[eid] == (st, 8.0)
    assert got["EV00"] == (state(), 7.0)


# -- LiveState.load_all ------------------------------------------------------------------------


def fresh(text: str) -> str:
    """An equal string that is a new object (literals and str() of a str are shared)."""
    return "".join(list(text))


def catalog_of(ids: list[str], *sets: tuple[str, list[str]]) -> Catalog:
    one = Profile(None, -1, None, ("s",), Rules())
    specs = {name: SetSpec(name, 60.0, 1, False, tuple(members)) for name, members in sets}
    return Catalog(
        profiles=dict.fromkeys(ids, one),
        sets=specs or {"s": SetSpec("s", 60.0, 1, False, tuple(ids))},
    )


async def test_load_all_keys_the_live_dicts_with_the_catalogs_strings(store: Store) -> None:
    ids = [fresh(f"EV{i:03d}") for i in range(40)]
    await store.record({fresh(e): state(FEW) for e in ids}, [], 3.0)
    catalog = catalog_of(ids)
    live = LiveState()
    assert await live.load_all(store.iter_states(), catalog) == 40
    assert all(a is b for a, b in zip(live.states, catalog.profiles, strict=True))
    assert all(a is b for a, b in zip(live.observed_at, catalog.profiles, strict=True))
    assert live.states == dict.fromkeys(ids, state(FEW))
    assert live.observed_at == dict.fromkeys(ids, 3.0)
    assert live.status_counts("s")[FEW] == 40


async def test_load_all_leaves_out_watched_events_the_store_does_not_know(store: Store) -> None:
    await store.record({"EV01": state(FEW), "OLD": state(NONE)}, [], 3.0)
    catalog = catalog_of(["EV01", "EV02", "EV03"])
    live = LiveState()
    assert await live.load_all(store.iter_states(), catalog) == 2
    # Unwatched events keep their state: a reload may watch them again.
    assert live.states == {"EV01": state(FEW), "OLD": state(NONE)}
    assert set(live.observed_at) == {"EV01", "OLD"}
    assert live.status_counts("s") == {
        AVAILABLE: 0, FEW: 1, NONE: 0, UNKNOWN: 2,
    }  # fmt: skip


@pytest.mark.parametrize(
    "shape", ["one-set", "two-sets", "set-of-some", "unwatched-stored", "missing"]
)
async def test_load_all_counts_as_recount_does(store: Store, shape: str) -> None:
    ids = [f"EV{i:02d}" for i in range(30)]
    stored = {e: VARIED["ABCDE"[i % 5]] for i, e in enumerate(ids)}
    sets: list[tuple[str, list[str]]] = []
    if shape == "two-sets":
        sets = [("s", ids[:20]), ("t", ids[10:])]
    elif shape == "set-of-some":
        sets = [("s", ids[:10])]
    elif shape == "unwatched-stored":
        stored["ELSEWHERE"] = state(NONE)
    elif shape == "missing":
        del stored["EV07"], stored["EV21"]
    await store.record(stored, [], 9.0)
    catalog = catalog_of(ids, *sets)
    live = LiveState()
    await live.load_all(store.iter_states(), catalog)
    counted = {name: live.status_counts(name) for name in catalog.sets}
    live.recount(catalog)
    assert counted == {name: live.status_counts(name) for name in catalog.sets}
    assert sum(counted[next(iter(catalog.sets))].values()) == len(
        next(iter(catalog.sets.values())).event_ids
    )


async def test_load_all_into_a_live_state_that_has_states_merges(store: Store) -> None:
    await store.record({"EV01": state(FEW)}, [], 3.0)
    live = LiveState()
    live.states["EV02"] = state(NONE)
    live.observed_at["EV02"] = 1.0
    await live.load_all(store.iter_states(), catalog_of(["EV01", "EV02"]))
    assert live.states == {"EV01": state(FEW), "EV02": state(NONE)}
    assert live.observed_at == {"EV01": 3.0, "EV02": 1.0}


async def test_equal_states_from_a_store_and_from_polls_are_one_object(store: Store) -> None:
    await store.record({"EV01": state(FEW)}, [], 3.0)
    live = LiveState()
    catalog = catalog_of(["EV01", "EV02"])
    await live.load_all(store.iter_states(), catalog)
    live.apply(catalog, {"EV02": state(FEW)})
    assert live.states["EV01"] is live.states["EV02"]


def test_replace_forgets_what_the_chunks_do_not_name_and_keys_with_the_given_strings() -> None:
    live = LiveState()
    live.states.update({"EV01": state(NONE), "EV02": state(NONE), "EV09": state(NONE)})
    live.observed_at.update(dict.fromkeys(live.states, 1.0))
    ours = [fresh("EV01"), fresh("EV02"), fresh("EV03")]
    chunk = StateChunk(["EV01", "EV03"], [state(FEW), state(FEW)], [2.0, 2.0], {state(FEW): 2})
    live.replace(ours, [chunk])
    assert live.states == {"EV01": state(FEW), "EV03": state(FEW), "EV09": state(NONE)}
    assert live.observed_at == {"EV01": 2.0, "EV03": 2.0, "EV09": 1.0}
    assert next(k for k in live.states if k == "EV03") is ours[2]


def test_adopt_keys_swaps_in_the_catalogs_strings_in_place() -> None:
    live = LiveState()
    states, seen = live.states, live.observed_at
    states.update({"EV01": state(FEW), "EV02": state(NONE), "OLD": state(NONE)})
    seen.update({"EV01": 1.0, "EV02": 2.0, "OLD": 3.0})
    catalog = catalog_of([fresh("EV01"), fresh("EV02"), fresh("EV03")])
    live.adopt_keys(catalog.profiles)
    assert live.states is states and live.observed_at is seen  # the poller holds them
    assert states == {"EV01": state(FEW), "EV02": state(NONE), "OLD": state(NONE)}
    assert seen == {"EV01": 1.0, "EV02": 2.0, "OLD": 3.0}
    ours = {id(k) for k in catalog.profiles}
    assert all(id(k) in ours for k in [*states, *seen] if k != "OLD")


async def test_a_restart_and_a_reload_keep_one_string_per_event_id(sim, tmp_path: Path) -> None:
    import yaml
    from prometheus_client import CollectorRegistry

    from monitor.app import Daemon
    from tests.conftest import API_KEY, make_config

    events = tmp_path / "events.csv"
    events.write_text("id\n" + "".join(f"EV{i:03d}\n" for i in range(20)), encoding="utf-8")
    cfg = make_config(
        sim.url, tmp_path / "s.db", f"watch_sets: [{{name: main, events_file: {events}}}]\n"
    )
    raw = cfg.model_dump(mode="json", exclude_none=True)
    raw["upstream"]["api_key"] = API_KEY
    raw["watch_sets"] = [{"name": "main", "events_file": str(events)}]
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(raw))
    first = Daemon(cfg, registry=CollectorRegistry())
    await first.start(schedule=False)
    await first.scheduler.run_once()  # the store remembers every event
    await first.stop()

    d = Daemon(cfg, config_path=str(path), registry=CollectorRegistry())
    await d.start(schedule=False)
    try:

        def one_string_each() -> bool:
            ours = {id(k) for k in d.catalog.profiles}
            return all(id(k) in ours for k in [*d.live.states, *d.live.observed_at])

        assert len(d.live.states) == 20
        assert one_string_each()
        before = list(d.catalog.profiles)
        assert d.reload()  # the same file: the strings read before stay
        assert all(a is b for a, b in zip(d.catalog.profiles, before, strict=True))
        assert one_string_each()
        events.write_text("id\n" + "".join(f"EV{i:03d}\n" for i in range(5, 25)))
        assert d.reload()  # a changed file: the live dicts take its strings
        old = {id(k) for k in before}  # still alive: their ids are theirs alone
        assert not any(id(k) in old for k in d.catalog.profiles)
        ours = {id(k) for k in d.catalog.profiles}
        assert all(id(k) in ours for k in d.live.states if k >= "EV005")
        assert len(d.live.states) == 20  # unwatched ones keep their state
        await d.scheduler.run_once()
        assert set(d.live.observed_at) == {f"EV{i:03d}" for i in range(5, 25)}
    finally:
        await d.stop()


async def test_a_sqlite_load_gives_the_thread_switch_interval_back(tmp_path: Path) -> None:
    import asyncio
    import contextlib
    import sys

    store = SQLiteStore(tmp_path / "state.db")
    await store.open()
    try:
        await store.record({f"EV{i:02d}": state() for i in range(30)}, [], 1.0)
        before = sys.getswitchinterval()
        assert len(flat(await chunks_of(store))) == 30
        assert sys.getswitchinterval() == before
        async with contextlib.aclosing(store.iter_states()) as chunks:
            async for _chunk in chunks:
                break  # a caller that stops early
        assert sys.getswitchinterval() == before
        async for _chunk in store.iter_states():
            break  # without aclosing, the loop closes the iterator on its next turn
        await asyncio.sleep(0.01)
        assert sys.getswitchinterval() == before
    finally:
        await store.close()

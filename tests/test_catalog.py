"""The catalog's shared profiles, its views, and events files read as ID strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import ConfigError, parse_config
from monitor.config.catalog import Catalog, EventSpec, Profile, build_catalog
from monitor.config.event_files import FileEntry, ListedEvents, read_events_csv
from monitor.core.transitions import DEFAULT_RULES, Rules
from tests.test_config import API, y

EVENTS_CSV = y("""
    id,venue,time_zone,region,partner_event_id
    E1,,Europe/Berlin,de,
    E2,v2,,,
    E3,,,,
    E1,,,,
    E4,v1,,uk,P4
    E5,,,,
    E3,,,,
    E8,,Asia/Tokyo,,
""")

MIXED = API + y("""
    maintenance: {start: '01:00', end: '02:00'}
    venues:
      - {id: v1, time_zone: Europe/London, maintenance: {start: '03:00', end: '04:00'}}
      - {id: v2}
    watch_sets:
      - name: a
        confirm_after: 3
        events: [{id: E1, region: de}, E2, {id: E9, partner_event_id: P9}]
        events_file: events.csv
      - name: b
        track_unknown: true
        events: [E4, {id: E7, partner_event_id: Q7}, E3, E10]
      - name: c
        events_file: events.csv
""")

STRICT, TRACKING, BOTH = Rules(3, False), Rules(1, True), Rules(3, True)
# event: (region, (zone, window) or None, venue, sets, rules, partner_id, zone_source)
EXPECTED = {
    "E1": ("DE", ("Europe/Berlin", "01:00-02:00"), None, ("a", "c"), STRICT, None, "config"),
    "E2": (None, None, "v2", ("a", "c"), STRICT, None, None),
    "E9": (None, None, None, ("a",), STRICT, "P9", None),
    "E3": (None, None, None, ("a", "b", "c"), BOTH, None, None),
    "E4": ("UK", ("Europe/London", "03:00-04:00"), "v1", ("a", "b", "c"), BOTH, "P4", "config"),
    "E5": (None, None, None, ("a", "c"), STRICT, None, None),
    "E8": (None, ("Asia/Tokyo", "01:00-02:00"), None, ("a", "c"), STRICT, None, "config"),
    "E7": (None, None, None, ("b",), TRACKING, "Q7", None),
    "E10": (None, None, None, ("b",), TRACKING, None, None),
}


@pytest.fixture
def mixed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Catalog:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text(EVENTS_CSV, encoding="utf-8")
    return build_catalog(parse_config(MIXED, env={}))


def test_every_event_gets_the_values_of_its_listings(mixed: Catalog) -> None:
    got = {}
    for eid, e in mixed.events.items():
        zone = mixed.zone_of(eid)
        where = (zone.name, str(zone.window)) if zone else None
        got[eid] = (e.region, where, e.venue, e.watch_sets, e.rules, e.partner_id, e.zone_source)
        assert e.event_id == eid
        assert e.partner_event_id == (e.partner_id or eid)
    assert got == EXPECTED
    assert list(got) == list(EXPECTED)  # the order of first listing
    assert mixed.sets["a"].event_ids == ("E1", "E2", "E9", "E3", "E4", "E5", "E8")
    assert mixed.sets["c"].event_ids == ("E1", "E2", "E3", "E4", "E5", "E8")


def test_events_alike_share_one_profile(mixed: Catalog) -> None:
    assert mixed.profiles["E2"] is not mixed.profiles["E5"]  # a venue makes E2 differ
    plain = build_catalog(
        parse_config(
            API + "watch_sets: [{name: s, events: [A, B, C, {id: D, region: uk}]}]\n", env={}
        )
    )
    assert plain.profiles["A"] is plain.profiles["B"] is plain.profiles["C"]
    assert plain.profiles["D"] is not plain.profiles["A"]
    assert plain.events["A"] == EventSpec("A", None, -1, None, ("s",), Rules())
    assert plain.events["B"] == plain.events["A"]._replace(event_id="B")


def test_events_and_rules_are_views_of_the_profiles(mixed: Catalog) -> None:
    assert len(mixed.events) == len(mixed.rules) == len(EXPECTED)
    assert "E4" in mixed.events and "E4" in mixed.rules and "nope" not in mixed.events
    assert mixed.events.get("nope") is None
    assert mixed.events.get("nope", "x") == "x"
    assert mixed.events.get("E4") == mixed.events["E4"]
    assert mixed.rules["E3"] == mixed.rules.get("E3") == BOTH
    assert mixed.rules.get("nope", DEFAULT_RULES) is DEFAULT_RULES
    assert dict(mixed.rules) == {eid: v[4] for eid, v in EXPECTED.items()}
    with pytest.raises(KeyError):
        mixed.events["nope"]
    mixed.profiles["NEW"] = mixed.share(Profile(None, -1, None, ("b",), TRACKING))
    assert mixed.events["NEW"].watch_sets == ("b",)
    assert mixed.rules["NEW"] == TRACKING


def test_a_resolved_zone_changes_only_that_event_and_is_shared(mixed: Catalog) -> None:
    before = mixed.events["E5"]
    assert mixed.resolve("E5", "America/Chicago")
    assert not mixed.resolve("E5", "America/Chicago")  # nothing changes the second time
    assert not mixed.resolve("E1", "America/Chicago")  # a configured zone stays
    zone = mixed.zone_of("E5")
    assert zone is not None and zone.name == "America/Chicago"
    assert mixed.events["E5"] == before._replace(
        zone=mixed.events["E5"].zone, zone_source="partner"
    )
    assert mixed.zone_of("E3") is None
    assert mixed.resolve("E2", "America/Chicago", "v1")  # the venue lends its window
    zone = mixed.zone_of("E2")
    assert zone is not None and str(zone.window) == "03:00-04:00"
    assert mixed.resolve("E3", "America/Chicago")
    assert mixed.profiles["E3"] is not mixed.profiles["E5"]  # other sets
    mixed.resolve("E10", "America/Chicago")
    mixed.resolve("E7", "America/Chicago")
    assert mixed.profiles["E10"].zone == mixed.profiles["E7"].zone


def test_events_without_a_time_zone(mixed: Catalog) -> None:
    assert mixed.without_time_zone() == 6
    assert mixed.without_time_zone(mixed.sets["b"].event_ids) == 3
    assert mixed.without_time_zone(()) == 0
    plain = build_catalog(parse_config(API + "watch_sets: [{name: s, events: [A, B]}]\n", env={}))
    assert plain.without_time_zone() == 2
    zoned = build_catalog(
        parse_config(API + "watch_sets: [{name: s, events: [{id: A, time_zone: UTC}]}]\n", env={})
    )
    assert zoned.without_time_zone() == 0
    # A catalog made by hand counts the same way.
    hand = Catalog(profiles=dict(mixed.profiles), zones=mixed.zones)
    assert hand.without_time_zone() == 6
    assert sum(hand.profile_counts().values()) == len(EXPECTED)


def test_the_cross_reference_errors_keep_their_wording_and_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text(
        y("""
            id,venue,time_zone,region,partner_event_id
            E1,,Europe/Berlin,de,
            E2,v9,,,
            E3,,,,
            E1,,America/New_York,,
            E4,v1,,uk,P4
            bad id,,,,
            E5,,,,
            E6,,,toolongregion,
            E7,v1,Asia/Tokyo,,
        """),
        encoding="utf-8",
    )
    text = API + y("""
        venues:
          - {id: v1, time_zone: Europe/London}
          - {id: v1, time_zone: Europe/Paris}
        watch_sets:
          - name: a
            events: [{id: E1, time_zone: Asia/Kolkata}, E2, {id: E3, venue: nowhere}]
            events_file: events.csv
          - name: b
            events: [{id: E4, region: fr}, {id: E7, partner_event_id: Q7}]
          - name: a
            events: [{id: E5, venue: zzz}]
          - name: c
            events_file: events.csv
    """)
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    bad_id = "invalid event ID 'bad id': must be 1 to 64 characters of A-Z a-z 0-9 _ -"
    region = "invalid region 'toolongregion': expected a short code such as UK"
    kolkata = "event E1 has time_zone 'Asia/Kolkata' at watch_sets[0].events[0]"
    assert [(i.path, i.message) for i in info.value.issues] == [
        ("watch_sets[0].events_file", f"events.csv line 7, column id: {bad_id}"),
        ("watch_sets[0].events_file", f"events.csv line 9, column region: {region}"),
        ("watch_sets[3].events_file", f"events.csv line 7, column id: {bad_id}"),
        ("watch_sets[3].events_file", f"events.csv line 9, column region: {region}"),
        ("venues[1].id", "duplicate venue 'v1'"),
        ("watch_sets[0].events[2].venue", "unknown venue 'nowhere'"),
        ("watch_sets[0].events_file", f"events.csv line 2: {kolkata}, here 'Europe/Berlin'"),
        ("watch_sets[0].events_file", "events.csv line 3: unknown venue 'v9'"),
        ("watch_sets[0].events_file", f"events.csv line 5: {kolkata}, here 'America/New_York'"),
        ("watch_sets[1].events[0].region", "event E4 has region 'UK' at events.csv line 6, here 'FR'"),
        ("watch_sets[2].name", "duplicate name 'a'"),
        ("watch_sets[3].events_file", f"events.csv line 2: {kolkata}, here 'Europe/Berlin'"),
        ("watch_sets[3].events_file", "events.csv line 3: unknown venue 'v9'"),
        ("watch_sets[3].events_file", f"events.csv line 5: {kolkata}, here 'America/New_York'"),
    ]  # fmt: skip


# -- events files ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("id\nE1\nE2\nE-3_x\n", id="plain"),
        pytest.param("id\r\nE1\r\nE2\r\nE-3_x\r\n", id="crlf"),
        pytest.param("\ufeffid\nE1\n\nE2\nE-3_x", id="bom-blank-line-no-final-newline"),
        pytest.param(" id \nE1\n  E2\nE-3_x \n", id="spaces"),
        pytest.param('id\n"E1"\nE2\nE-3_x\n', id="quoted"),
        pytest.param("id,region\nE1,\nE2,\nE-3_x,\n", id="empty-attribute-column"),
    ],
)
def test_an_events_file_of_bare_ids_reads_the_same_whatever_its_form(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "events.csv"
    path.write_text(content, encoding="utf-8")
    issues: list[object] = []
    rows = read_events_csv(str(path), "key", issues)  # type: ignore[arg-type]
    assert issues == []
    assert rows.ids == ("E1", "E2", "E-3_x")
    assert rows.attributed == {} and rows.lines == {}


def test_an_events_file_keeps_entries_only_for_rows_with_attributes(tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text("id,region,venue\nE1,,\nE2,uk,\n\nE3,,v1\nE4,,\n", encoding="utf-8")
    rows = read_events_csv(str(path), "key", [])
    assert rows.ids == ("E1", "E2", "E3", "E4")
    assert rows.attributed == {1: FileEntry("E2", region="UK"), 2: FileEntry("E3", venue="v1")}
    assert rows.lines == {1: 3, 2: 5}


def test_listed_events_behave_as_the_list_they_stand_for() -> None:
    listed = parse_config(
        API + "watch_sets: [{name: s, events: [{id: Y1, region: uk}, Y2]}]\n", env={}
    )
    yaml_entries = listed.watch_sets[0].events
    events = ListedEvents(yaml_entries, ("F1", "F2", "F3"), {1: FileEntry("F2", venue="v")})
    as_list = [*yaml_entries, FileEntry("F1"), FileEntry("F2", venue="v"), FileEntry("F3")]
    assert len(events) == 5
    assert list(events) == as_list
    assert events == as_list and as_list == events
    assert events[0] is yaml_entries[0]
    assert events[3] == FileEntry("F2", venue="v")
    assert events[-1] == FileEntry("F3")
    assert events[1:4] == as_list[1:4]
    with pytest.raises(IndexError):
        events[5]
    assert [e.id for e in events] == ["Y1", "Y2", "F1", "F2", "F3"]
    assert [(i, e.id) for i, e in events.with_attributes()] == [(0, "Y1"), (1, "Y2"), (3, "F2")]
    assert [e.model_dump(exclude_none=True) for e in events][2:4] == [
        {"id": "F1"},
        {"id": "F2", "venue": "v"},
    ]


def test_a_set_of_one_events_file_shares_its_id_tuple(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text("id\nE1\nE2\nE3\n", encoding="utf-8")
    (tmp_path / "twice.csv").write_text("id\nE1\nE2\nE1\n", encoding="utf-8")
    config = parse_config(
        API
        + "watch_sets: [{name: s, events_file: events.csv}, {name: t, events_file: twice.csv}]\n",
        env={},
    )
    catalog = build_catalog(config)
    listed = config.watch_sets[0].events
    assert isinstance(listed, ListedEvents)
    assert catalog.sets["s"].event_ids is listed.file_ids
    assert catalog.sets["t"].event_ids == ("E1", "E2")
    assert all(a is b for a, b in zip(catalog.profiles, listed.file_ids, strict=True))

"""Table tests for the config loader: every bad input names its key path and says what is wrong."""

from __future__ import annotations

import textwrap
from datetime import time

import pytest

from monitor.config import ConfigError, load_config, parse_config
from monitor.config.catalog import build_catalog
from monitor.core.transitions import Rules

API = "upstream:\n  api_key: k-123\n"


def y(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def issues_of(text: str, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env or {})
    return [(i.path, i.message) for i in info.value.issues]


def assert_issue(issues: list[tuple[str, str]], path: str, *fragments: str) -> None:
    matching = [m for p, m in issues if p == path]
    assert matching, f"no issue at {path!r}; got {issues}"
    assert any(all(f in m for f in fragments) for m in matching), (
        f"no issue at {path!r} mentions {fragments}; got {matching}"
    )


# (config text, env, expected key path, fragments the message must contain)
BAD = [
    # --- unknown keys, with a did-you-mean hint, at several depths ----------------------------
    pytest.param(
        API + "maintenace: {}\n", {}, "maintenace", ["unknown key", "did you mean 'maintenance'"],
        id="unknown-key-top-level",
    ),
    pytest.param(
        API + "zzz: 1\n", {}, "zzz", ["unknown key", "expected one of", "watch_sets"],
        id="unknown-key-top-level-no-close-match",
    ),
    pytest.param(
        API + "  batch_sise: 3\n", {}, "upstream.batch_sise", ["did you mean 'batch_size'"],
        id="unknown-key-upstream",
    ),
    pytest.param(
        API + "  rate_limit:\n    request: 3\n", {}, "upstream.rate_limit.request",
        ["did you mean 'requests'"], id="unknown-key-rate-limit",
    ),
    pytest.param(
        API + y("""
            watch_sets:
              - name: tour
                intervl_seconds: 30
        """),
        {}, "watch_sets[0].intervl_seconds", ["did you mean 'interval_seconds'"],
        id="unknown-key-watch-set",
    ),
    pytest.param(
        API + y("""
            watch_sets:
              - name: tour
                events:
                  - E1
                  - {id: E2, venu: v1}
        """),
        {}, "watch_sets[0].events[1].venu", ["did you mean 'venue'"],
        id="unknown-key-event-entry",
    ),
    pytest.param(
        API + y("""
            venues:
              - id: v1
                maintenance: {strt: '01:00'}
        """),
        {}, "venues[0].maintenance.strt", ["did you mean 'start'"],
        id="unknown-key-venue-maintenance",
    ),
    # --- required keys, env interpolation ----------------------------------------------------
    pytest.param(
        "upstream: {}\n", {}, "upstream.api_key", ["required key is missing", "api_key_file"],
        id="missing-api-key",
    ),
    pytest.param("watch_sets: []\n", {}, "upstream", ["required"], id="missing-upstream"),
    pytest.param("", {}, "upstream", ["required"], id="empty-file"),
    pytest.param(
        "upstream:\n  api_key: ${TM_API_KEY}\n", {}, "upstream.api_key",
        ["environment variable TM_API_KEY is not set"], id="env-unset-api-key",
    ),
    pytest.param(
        API + y("""
            watch_sets:
              - name: tour
                interval_seconds: ${POLL_INTERVAL}
        """),
        {}, "watch_sets[0].interval_seconds", ["POLL_INTERVAL", "not set"],
        id="env-unset-nested",
    ),
    pytest.param(
        API + y("""
            watch_sets:
              - name: tour
                events: [E1, "${SECOND_EVENT}"]
        """),
        {"OTHER": "x"}, "watch_sets[0].events[1]", ["SECOND_EVENT", "not set"],
        id="env-unset-in-list",
    ),
    pytest.param(
        "upstream:\n  api_key: ${1BAD}\n", {}, "upstream.api_key",
        ["invalid variable reference ${1BAD}"], id="env-bad-reference",
    ),
    pytest.param(
        "upstream:\n  api_key: ''\n", {}, "upstream.api_key", ["must not be empty"],
        id="api-key-empty",
    ),
    # --- event IDs: plain-string entries are reported at the entry itself --------------------
    pytest.param(
        API + "watch_sets:\n  - name: tour\n    events: [E1, 'has space']\n", {},
        "watch_sets[0].events[1]", ["invalid event ID 'has space'"], id="event-id-space",
    ),
    pytest.param(
        API + f"watch_sets:\n  - name: tour\n    events: [E1, {'x' * 65}]\n", {},
        "watch_sets[0].events[1]", ["invalid event ID", "1 to 64"], id="event-id-65-chars",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: tour\n    events: [E1, 'Évènement']\n", {},
        "watch_sets[0].events[1]", ["invalid event ID 'Évènement'"], id="event-id-unicode",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: tour\n    events: [E1, '']\n", {},
        "watch_sets[0].events[1]", ["invalid event ID ''"], id="event-id-empty",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: tour\n    events: [E1, 'a/b']\n", {},
        "watch_sets[0].events[1]", ["invalid event ID 'a/b'"], id="event-id-slash",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: tour\n    events: [{id: 'has space'}]\n", {},
        "watch_sets[0].events[0].id", ["invalid event ID 'has space'"],
        id="event-id-in-mapping-entry",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: tour\n    events: [{id: E1, region: 'U K'}]\n", {},
        "watch_sets[0].events[0].region", ["invalid region"], id="bad-region",
    ),
    # --- time zones ----------------------------------------------------------------------------
    pytest.param(
        API + "watch_sets:\n  - name: tour\n    events: [{id: E1, time_zone: Mars/Olympus}]\n",
        {}, "watch_sets[0].events[0].time_zone", ["unknown time zone 'Mars/Olympus'"],
        id="unknown-tz-event",
    ),
    pytest.param(
        API + "venues:\n  - {id: v1, time_zone: Europe/Berlln}\n", {},
        "venues[0].time_zone", ["unknown time zone 'Europe/Berlln'"], id="unknown-tz-venue",
    ),
    pytest.param(
        API + "venues:\n  - {id: v1, time_zone: ''}\n", {},
        "venues[0].time_zone", ["unknown time zone ''"], id="unknown-tz-empty",
    ),
    pytest.param(
        API + "venues:\n  - {id: v1, time_zone: Europe}\n", {},
        "venues[0].time_zone", ["unknown time zone 'Europe'"], id="unknown-tz-is-a-tzdata-directory",
    ),
    # --- watch sets, venues, cross references --------------------------------------------------
    pytest.param(
        API + "watch_sets:\n  - name: Bad Name\n", {}, "watch_sets[0].name",
        ["invalid name 'Bad Name'"], id="bad-watch-set-name",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: Tour\n", {}, "watch_sets[0].name",
        ["invalid name 'Tour'"], id="watch-set-name-uppercase",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: tour\n  - name: other\n  - name: tour\n", {},
        "watch_sets[2].name", ["duplicate name 'tour'"], id="duplicate-watch-set-name",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: tour\n    confirm_after: 0\n", {},
        "watch_sets[0].confirm_after", ["greater than or equal to 1"], id="confirm-after-zero",
    ),
    pytest.param(
        API + y("""
            venues: [{id: v1, time_zone: Europe/Berlin}]
            watch_sets:
              - name: tour
                events: [{id: E1, venue: v9}]
        """),
        {}, "watch_sets[0].events[0].venue", ["unknown venue 'v9'"], id="unknown-venue",
    ),
    pytest.param(
        API + "venues: [{id: v1}, {id: v2}, {id: v1}]\n", {}, "venues[2].id",
        ["duplicate venue 'v1'"], id="duplicate-venue",
    ),
    pytest.param(
        API + y("""
            watch_sets:
              - name: a
                events: [{id: E1, time_zone: Europe/Berlin}]
              - name: b
                events: [{id: E1, time_zone: America/New_York}]
        """),
        {}, "watch_sets[1].events[0].time_zone",
        ["E1", "'Europe/Berlin'", "watch_sets[0].events[0]", "'America/New_York'"],
        id="same-event-conflicting-time-zones",
    ),
    pytest.param(
        API + y("""
            watch_sets:
              - name: a
                events: [{id: E1, region: UK}]
              - name: b
                events: [E2, {id: E1, region: us}]
        """),
        {}, "watch_sets[1].events[1].region", ["E1", "'UK'", "watch_sets[0].events[0]", "'US'"],
        id="same-event-conflicting-regions",
    ),
    # --- numeric limits, maintenance windows ---------------------------------------------------
    pytest.param(
        API + "  batch_size: 1001\n", {}, "upstream.batch_size",
        ["less than or equal to 1000", "1001"], id="batch-size-1001",
    ),
    pytest.param(
        API + "  rate_limit: {requests: 0}\n", {}, "upstream.rate_limit.requests",
        ["greater than or equal to 1", "0"], id="rate-limit-requests-0",
    ),
    pytest.param(
        API + "maintenance: {start: '02:00', end: '02:00'}\n", {}, "maintenance",
        ["start and end are equal"], id="maintenance-start-equals-end",
    ),
    pytest.param(
        API + "maintenance: {start: 2:00, end: 2:00}\n", {}, "maintenance",
        ["start and end are equal"], id="maintenance-start-equals-end-unquoted",
    ),
    pytest.param(
        API + "venues:\n  - {id: v1, maintenance: {start: '01:00', end: '01:00'}}\n", {},
        "venues[0].maintenance", ["start and end are equal"], id="venue-maintenance-empty",
    ),
    pytest.param(
        API + "maintenance: {start: '25:00'}\n", {}, "maintenance.start",
        ["expected a time HH:MM", "25:00"], id="maintenance-bad-hour",
    ),
    pytest.param(
        API + "maintenance: {end: 'two'}\n", {}, "maintenance.end",
        ["expected a time HH:MM"], id="maintenance-not-a-time",
    ),
    pytest.param(
        API + "server: {listen: 'nowhere'}\n", {}, "server.listen", ["expected host:port"],
        id="bad-listen",
    ),
    # --- the YAML itself -----------------------------------------------------------------------
    pytest.param(
        "upstream:\n  api_key: k\n  batch_size: [1, 2\nlog: {}\n", {}, "",
        ["invalid YAML", "line 4"], id="invalid-yaml-with-line",
    ),
    pytest.param(
        "upstream:\n  api_key: a\n  api_key: b\n", {}, "",
        ["invalid YAML", "line 3", "duplicate key 'api_key'"], id="duplicate-key",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: a\n    name: b\n", {}, "",
        ["line 5", "duplicate key 'name'"], id="duplicate-key-nested",
    ),
    pytest.param(
        API + "upstream: {api_key: z}\n", {}, "", ["line 3", "duplicate key 'upstream'"],
        id="duplicate-key-top-level",
    ),
    pytest.param("- a\n- b\n", {}, "", ["must be a mapping"], id="top-level-list"),
    pytest.param("just a string\n", {}, "", ["must be a mapping"], id="top-level-scalar"),
    pytest.param(
        API + "? [a, b]\n: 1\n", {}, "", ["invalid YAML"], id="unhashable-key",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "env", "path", "fragments"), BAD)
def test_bad_config(text, env, path, fragments):
    assert_issue(issues_of(text, env), path, *fragments)


# (config text, env, what to read from the config, expected value)
GOOD = [
    pytest.param(
        "upstream:\n  api_key: ${TM_API_KEY}\n", {"TM_API_KEY": "from-env-123"},
        lambda c: c.upstream.api_key.reveal(), "from-env-123", id="env-interpolated",
    ),
    pytest.param(
        API + "  base_url: 'https://${HOST}:${PORT}/x/'\n", {"HOST": "h.example", "PORT": "8443"},
        lambda c: c.upstream.base_url, "https://h.example:8443/x", id="env-inside-string",
    ),
    pytest.param(
        "upstream:\n  api_key: 'pa$$word'\n", {},
        lambda c: c.upstream.api_key.reveal(), "pa$word", id="dollar-dollar-escape",
    ),
    pytest.param(
        "upstream:\n  api_key: '$${NOT_A_VAR}'\n", {},
        lambda c: c.upstream.api_key.reveal(), "${NOT_A_VAR}", id="escaped-reference-not-expanded",
    ),
    pytest.param(
        "upstream:\n  api_key: 'a$b'\n", {},
        lambda c: c.upstream.api_key.reveal(), "a$b", id="lone-dollar-kept",
    ),
    pytest.param(
        API + "maintenance:\n  start: 2:00\n  end: 4:00\n", {},
        lambda c: (c.maintenance.start, c.maintenance.end), (time(2, 0), time(4, 0)),
        id="unquoted-base-60-times",
    ),
    pytest.param(
        API + "maintenance:\n  start: 23:30\n  end: '01:00'\n", {},
        lambda c: (c.maintenance.start, c.maintenance.end), (time(23, 30), time(1, 0)),
        id="unquoted-23-30",
    ),
    pytest.param(
        API + "maintenance:\n  start: '02:00'\n", {},
        lambda c: (c.maintenance.start, c.maintenance.end), (time(2, 0), time(3, 0)),
        id="quoted-time-and-default-end",
    ),
    pytest.param(
        API, {}, lambda c: (c.maintenance.start, c.maintenance.end), (time(2, 0), time(3, 0)),
        id="default-window-2-to-3",
    ),
    pytest.param(
        API + "watch_sets:\n  - name: tour\n    events: [E-1_a, 12345, {id: E2, region: uk}]\n",
        {}, lambda c: [(e.id, e.region) for e in c.watch_sets[0].events],
        [("E-1_a", None), ("12345", None), ("E2", "UK")], id="event-entries",
    ),
    pytest.param(
        API + f"watch_sets:\n  - name: tour\n    events: [{'x' * 64}]\n",
        {}, lambda c: len(c.watch_sets[0].events[0].id), 64, id="event-id-64-chars-ok",
    ),
    pytest.param(
        API + "  batch_size: 1000\n  rate_limit: {requests: 1}\n", {},
        lambda c: (c.upstream.batch_size, c.upstream.rate_limit.requests), (1000, 1),
        id="limits-at-the-edge",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "env", "read", "expected"), GOOD)
def test_good_config(text, env, read, expected):
    assert read(parse_config(text, env=env)) == expected


def test_env_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("AM_TEST_KEY", "os-env-key")
    config = parse_config("upstream:\n  api_key: ${AM_TEST_KEY}\n")
    assert config.upstream.api_key.reveal() == "os-env-key"


def test_several_errors_reported_at_once():
    text = y("""
        upstream:
          api_key: ${MISSING_KEY}
          batch_size: 1001
          rate_limit: {requests: 0}
          timeout: 3
        maintenance: {start: '02:00', end: '02:00'}
        watch_sets:
          - name: Bad Name
            events: [E1, 'bad id']
    """)
    issues = issues_of(text)
    paths = {p for p, _ in issues}
    assert paths >= {
        "upstream.api_key",
        "upstream.batch_size",
        "upstream.rate_limit.requests",
        "upstream.timeout",
        "maintenance",
        "watch_sets[0].name",
        "watch_sets[0].events[1]",
    }
    with pytest.raises(ConfigError, match="7 errors in config"):
        parse_config(text, env={})


def test_several_cross_reference_errors_reported_at_once():
    text = API + y("""
        venues: [{id: v1}, {id: v1}]
        watch_sets:
          - name: a
            events: [{id: E1, venue: v9}]
          - name: a
    """)
    issues = issues_of(text)
    assert_issue(issues, "venues[1].id", "duplicate venue")
    assert_issue(issues, "watch_sets[0].events[0].venue", "unknown venue 'v9'")
    assert_issue(issues, "watch_sets[1].name", "duplicate name 'a'")


def test_cross_reference_errors_follow_once_values_are_valid():
    """Two phases: every value error at once; then every cross-reference error at once."""
    text = y("""
        upstream: {api_key: k, batch_size: 0}
        watch_sets:
          - name: a
            events: [{id: E1, venue: v9}, {id: 'bad id'}]
    """)
    issues = issues_of(text)
    assert_issue(issues, "upstream.batch_size", "greater than or equal to 1")
    assert_issue(issues, "watch_sets[0].events[1].id", "invalid event ID")
    fixed = text.replace("batch_size: 0", "batch_size: 10").replace("'bad id'", "E2")
    assert_issue(issues_of(fixed), "watch_sets[0].events[0].venue", "unknown venue 'v9'")


def test_error_message_renders_every_issue_with_source():
    with pytest.raises(ConfigError) as info:
        parse_config("upstream: {batch_size: 0}\n", env={}, source="conf.yaml")
    text = str(info.value)
    assert text.startswith("conf.yaml: 2 errors in config")
    assert "  upstream.api_key: required key is missing" in text
    assert "  upstream.batch_size: " in text
    assert info.value.source == "conf.yaml"


@pytest.mark.parametrize(
    ("raw", "expected_id"),
    [
        pytest.param("01234567", "01234567", id="octal"),
        pytest.param("12:30", "12:30", id="base-60"),
    ],
)
def test_unquoted_numeric_event_id_not_silently_changed(raw, expected_id):
    """Either keep the ID as written or refuse it; never poll a different ID."""
    text = API + f"watch_sets:\n  - name: tour\n    events: [{raw}]\n"
    config, issues = None, []
    try:
        config = parse_config(text, env={})
    except ConfigError as exc:
        issues = exc.issues
    if config is None:
        assert any(i.path == "watch_sets[0].events[0]" for i in issues)
    else:
        assert [e.id for e in config.watch_sets[0].events] == [expected_id]


# ------------------------------------------------------------------------------------------
# Secrets: *_file and never leaking
# ------------------------------------------------------------------------------------------


def test_api_key_file_is_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "key.txt").write_text("file-secret-123\n", encoding="utf-8")
    config = parse_config("upstream:\n  api_key_file: key.txt\n", env={})
    assert config.upstream.api_key.reveal() == "file-secret-123"
    absolute = parse_config(f"upstream:\n  api_key_file: {tmp_path / 'key.txt'}\n", env={})
    assert absolute.upstream.api_key.reveal() == "file-secret-123"


def test_api_key_file_path_from_env(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "key.txt").write_text("file-secret-456", encoding="utf-8")
    config = parse_config("upstream:\n  api_key_file: ${KEY_FILE}\n", env={"KEY_FILE": "key.txt"})
    assert config.upstream.api_key.reveal() == "file-secret-456"


@pytest.mark.parametrize(
    ("text", "files", "path", "fragments"),
    [
        pytest.param(
            "upstream:\n  api_key: k\n  api_key_file: key.txt\n",
            {"key.txt": "x"},
            "upstream.api_key_file",
            ["either api_key or api_key_file"],
            id="both-key-and-file",
        ),
        pytest.param(
            "upstream:\n  api_key_file: nokey.txt\n",
            {},
            "upstream.api_key_file",
            ["cannot read nokey.txt", "No such file"],
            id="missing-file",
        ),
        pytest.param(
            "upstream:\n  api_key_file: keydir\n",
            {"keydir/x": ""},
            "upstream.api_key_file",
            ["keydir is a directory"],
            id="directory-not-file",
        ),
        pytest.param(
            "upstream:\n  api_key_file: empty.txt\n",
            {"empty.txt": "\n"},
            "upstream.api_key_file",
            ["empty.txt is empty"],
            id="empty-file",
        ),
        pytest.param(
            "upstream:\n  api_key_file: ''\n",
            {},
            "upstream.api_key_file",
            ["expected a file path"],
            id="empty-path",
        ),
        pytest.param(
            "upstream:\n  api_key: k\nserver:\n  admin_token_file: tok.txt\n",
            {},
            "server.admin_token_file",
            ["cannot read tok.txt"],
            id="admin-token-file-missing",
        ),
    ],
)
def test_secret_file_errors(tmp_path, monkeypatch, text, files, path, fragments):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content, encoding="utf-8")
    assert_issue(issues_of(text), path, *fragments)


SECRET = "sk-live-9f8e7d6c5b4a"


def test_secret_not_in_repr_of_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tok.txt").write_text("tok-from-file-77", encoding="utf-8")
    config = parse_config(
        "upstream:\n  api_key: ${TM_API_KEY}\nserver:\n  admin_token_file: tok.txt\n",
        env={"TM_API_KEY": SECRET},
    )
    assert config.upstream.api_key.reveal() == SECRET
    for rendered in (repr(config), str(config), repr(config.upstream), config.model_dump_json()):
        assert SECRET not in rendered
        assert "tok-from-file-77" not in rendered


@pytest.mark.parametrize(
    ("text", "env"),
    [
        pytest.param(
            "upstream:\n  api_key: ${TM_API_KEY}\n  batch_size: 0\n",
            {"TM_API_KEY": SECRET},
            id="valid-secret-other-field-invalid",
        ),
        pytest.param(
            "upstream:\n  api_key: ${TM_API_KEY}\n  api_key_file: x.txt\n",
            {"TM_API_KEY": SECRET},
            id="secret-and-secret-file",
        ),
        pytest.param(
            "upstream:\n  api_key: [${TM_API_KEY}]\n",
            {"TM_API_KEY": SECRET},
            id="secret-wrong-type",
        ),
        pytest.param(
            "upstream:\n  api_key: k\nserver:\n  admin_token: ${TOKEN}\n  listen: nope\n",
            {"TOKEN": SECRET},
            id="admin-token-other-field-invalid",
        ),
        pytest.param(
            "upstream:\n  api_key: ${TM_API_KEY}\n  batch_size: ${TM_API_KEY}\n",
            {"TM_API_KEY": SECRET},
            id="secret-reused-in-int-field",
        ),
        pytest.param(
            "upstream:\n  api_key: ${TM_API_KEY}\nserver:\n  listen: ${TM_API_KEY}\n",
            {"TM_API_KEY": SECRET},
            id="secret-reused-in-validated-str-field",
        ),
    ],
)
def test_secret_not_in_config_error(tmp_path, monkeypatch, text, env):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        parse_config(text, env=env)
    assert SECRET not in str(info.value)
    assert SECRET not in repr(info.value.issues)


# ------------------------------------------------------------------------------------------
# The catalog
# ------------------------------------------------------------------------------------------


def test_event_in_two_sets_appears_once_with_both_names():
    config = parse_config(
        API
        + y("""
            venues: [{id: v1, time_zone: Europe/Berlin}]
            watch_sets:
              - name: tour
                confirm_after: 2
                events: [{id: E1, venue: v1}, E2, E2]
              - name: hot
                track_unknown: true
                events: [{id: E1, venue: v1}, E3]
        """),
        env={},
    )
    catalog = build_catalog(config)
    assert list(catalog.events) == ["E1", "E2", "E3"]
    e1 = catalog.events["E1"]
    assert e1.watch_sets == ("tour", "hot")
    assert e1.venue == "v1"
    assert e1.rules == Rules(confirm_after=2, track_unknown=True)
    assert catalog.events["E2"].watch_sets == ("tour",)
    assert catalog.events["E2"].rules == Rules(confirm_after=2, track_unknown=False)
    assert catalog.events["E3"].rules == Rules(confirm_after=1, track_unknown=True)
    assert catalog.sets["tour"].event_ids == ("E1", "E2")
    assert catalog.sets["hot"].event_ids == ("E1", "E3")
    assert catalog.rules["E1"] == e1.rules
    zone = catalog.zone_of("E1")
    assert zone is not None
    assert zone.name == "Europe/Berlin"
    assert catalog.zone_of("E2") is None


@pytest.mark.parametrize(
    ("body", "event", "zone", "window"),
    [
        pytest.param(
            """
            venues: [{id: v1, time_zone: America/New_York, maintenance: {start: '01:00', end: '04:00'}}]
            watch_sets: [{name: a, events: [{id: E1, venue: v1}]}]
            """,
            "E1", "America/New_York", "01:00-04:00", id="venue-window",
        ),
        pytest.param(
            """
            venues: [{id: v1, time_zone: America/New_York}]
            watch_sets: [{name: a, events: [{id: E1, venue: v1}]}]
            """,
            "E1", "America/New_York", "02:00-03:00", id="venue-tz-default-window",
        ),
        pytest.param(
            """
            maintenance: {start: '02:00', end: '04:00'}
            watch_sets: [{name: a, events: [{id: E1, time_zone: Asia/Kolkata}]}]
            """,
            "E1", "Asia/Kolkata", "02:00-04:00", id="global-window-event-tz",
        ),
        pytest.param(
            """
            venues: [{id: v1, time_zone: America/New_York}]
            watch_sets: [{name: a, events: [{id: E1, venue: v1, time_zone: Europe/Berlin}]}]
            """,
            "E1", "Europe/Berlin", "02:00-03:00", id="event-tz-overrides-venue-tz",
        ),
    ],
)  # fmt: skip
def test_catalog_zone(body, event, zone, window):
    catalog = build_catalog(parse_config(API + y(body), env={}))
    got = catalog.zone_of(event)
    assert got is not None
    assert (got.name, str(got.window)) == (zone, window)


def test_event_listed_with_and_without_attributes_takes_the_given_ones():
    config = parse_config(
        API
        + y("""
            watch_sets:
              - name: a
                events: [E1]
              - name: b
                events: [{id: E1, time_zone: Europe/Berlin, region: de}]
        """),
        env={},
    )
    catalog = build_catalog(config)
    assert catalog.events["E1"].watch_sets == ("a", "b")
    assert catalog.events["E1"].region == "DE"
    zone = catalog.zone_of("E1")
    assert zone is not None
    assert zone.name == "Europe/Berlin"


def test_catalog_shares_zones():
    config = parse_config(
        API + "watch_sets: [{name: a, events: [{id: E1, time_zone: UTC}, {id: E2, time_zone: UTC}]}]\n",
        env={},
    )  # fmt: skip
    catalog = build_catalog(config)
    assert len(catalog.zones) == 1
    assert catalog.events["E1"].zone == catalog.events["E2"].zone == 0


def test_build_catalog_appends_to_given_issues():
    config = parse_config(API + "watch_sets: [{name: a, events: [E1]}]\n", env={})
    issues = []
    build_catalog(config, issues)
    assert issues == []


# ------------------------------------------------------------------------------------------
# events_file (CSV)
# ------------------------------------------------------------------------------------------

CSV_SET = API + "watch_sets:\n  - name: tour\n    events: [E0]\n    events_file: events.csv\n"


def test_events_file_merged(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text(
        "id,venue,time_zone,region\nE1,,Europe/Berlin,de\nE2,,,\n\nE0,,,\n", encoding="utf-8"
    )
    config = parse_config(CSV_SET, env={})
    events = [(e.id, e.time_zone, e.region) for e in config.watch_sets[0].events]
    assert events == [
        ("E0", None, None),
        ("E1", "Europe/Berlin", "DE"),
        ("E2", None, None),
        ("E0", None, None),
    ]
    catalog = build_catalog(config)
    assert catalog.sets["tour"].event_ids == ("E0", "E1", "E2")
    assert catalog.events["E1"].region == "DE"


def test_events_file_columns_in_any_order_with_venue(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text("region, id ,venue\nUK,E1,v1\n", encoding="utf-8")
    text = API + "venues: [{id: v1, time_zone: Europe/London}]\n" + CSV_SET[len(API) :]
    catalog = build_catalog(parse_config(text, env={}))
    assert catalog.events["E1"].venue == "v1"
    zone = catalog.zone_of("E1")
    assert zone is not None
    assert zone.name == "Europe/London"


# (CSV content or None for a missing file, fragments the message must contain)
BAD_CSV = [
    pytest.param(
        "ident,venue\nE1,v1\n", ["events.csv line 1", "header must have id", "ident"],
        id="bad-header",
    ),
    pytest.param(
        "id,colour\nE1,red\n", ["events.csv line 1", "colour"], id="unknown-column",
    ),
    pytest.param(
        "venue\nv1\n", ["events.csv line 1", "header must have id"], id="header-without-id",
    ),
    pytest.param(
        "id,region\nE1,UK\nbad id,UK\n",
        ["events.csv line 3, column id", "invalid event ID 'bad id'"], id="bad-id-at-line-3",
    ),
    pytest.param(
        "id\nE1\nE2\nE3\n" + "x" * 65 + "\n",
        ["events.csv line 5, column id", "invalid event ID"], id="id-too-long-at-line-5",
    ),
    pytest.param(
        "id,region\nE1,UK\nE2,UK,extra\n", ["events.csv line 3", "3 fields, header has 2"],
        id="too-many-fields",
    ),
    pytest.param(
        "id,region,venue\nE1,UK\n", ["events.csv line 2", "2 fields, header has 3"],
        id="too-few-fields",
    ),
    pytest.param(
        "id,region\nE1,toolongregion\n",
        ["events.csv line 2, column region", "invalid region"], id="bad-region",
    ),
    pytest.param(
        "id,time_zone\nE1,Mars/Olympus\n",
        ["events.csv line 2, column time_zone", "unknown time zone 'Mars/Olympus'"],
        id="bad-time-zone",
    ),
    pytest.param(
        "id,region\n,UK\n", ["events.csv line 2, column id", "missing"], id="empty-id",
    ),
    pytest.param("", ["events.csv is empty"], id="empty-file"),
    pytest.param(None, ["cannot read events.csv", "No such file"], id="missing-file"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "fragments"), BAD_CSV)
def test_events_file_errors(tmp_path, monkeypatch, content, fragments):
    monkeypatch.chdir(tmp_path)
    if content is not None:
        (tmp_path / "events.csv").write_text(content, encoding="utf-8")
    assert_issue(issues_of(CSV_SET), "watch_sets[0].events_file", *fragments)


def test_events_file_errors_all_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text("id,region\nbad id,UK\nE2\nE3,U-K\n", encoding="utf-8")
    messages = [m for p, m in issues_of(CSV_SET) if p == "watch_sets[0].events_file"]
    assert len(messages) == 3
    assert "line 2, column id" in messages[0]
    assert "line 3: 1 fields" in messages[1]
    assert "line 4, column region" in messages[2]


@pytest.mark.parametrize(
    ("venues", "content", "fragments"),
    [
        pytest.param(
            "", "id,venue\nE1,v9\n", ["events.csv line 2", "unknown venue 'v9'"],
            id="unknown-venue-in-csv",
        ),
        pytest.param(
            "", "id,time_zone\nE0,America/New_York\n", ["events.csv line 2", "E0"],
            id="conflicting-tz-in-csv",
        ),
    ],
)  # fmt: skip
def test_events_file_cross_reference_errors_point_at_file(
    tmp_path, monkeypatch, venues, content, fragments
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text(content, encoding="utf-8")
    text = CSV_SET.replace("events: [E0]", "events: [{id: E0, time_zone: Europe/Berlin}]")
    assert_issue(issues_of(venues + text), "watch_sets[0].events_file", *fragments)


# ------------------------------------------------------------------------------------------
# load_config
# ------------------------------------------------------------------------------------------


def test_load_config_reads_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "events.csv").write_text("id\nE1\n", encoding="utf-8")
    path = tmp_path / "monitor.yaml"
    path.write_text(CSV_SET.replace("k-123", "${KEY}"), encoding="utf-8")
    config = load_config(path, env={"KEY": "the-key"})
    assert config.upstream.api_key.reveal() == "the-key"
    assert [e.id for e in config.watch_sets[0].events] == ["E0", "E1"]


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "monitor.yaml"
    path.write_text("upstream:\n  api_key: k\n  batch_size: 1001\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: 1 error in config")


def test_load_config_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.source == str(path)
    assert [(i.path, i.message) for i in info.value.issues] == [
        ("", "cannot read config file: No such file or directory")
    ]

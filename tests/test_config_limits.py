"""Every bound of the config, from the edge inside to the edge outside, with its key path.

The numbers are written out here as the issue states them (not read from limits.py), so a
change of a bound in the code shows up as a failing row; limits.py is checked against them too.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import yaml

from monitor.config import ConfigError, limits, parse_config
from monitor.config.models import EventItem, WatchSet

WHSEC = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"  # base64 of 24 bytes
SECRET = "sk-live-limits-9f8e7d6c"

BASE: dict[str, Any] = {
    "upstream": {"api_key": SECRET},
    "watch_sets": [{"name": "main", "events": ["E1"]}],
    "notifications": {
        "webhooks": [{"name": "hook", "url": "https://hooks.example.com/x", "secrets": [WHSEC]}],
        "alertmanager": {"url": "https://am.example.com"},
    },
    "partner": {"api_key": "pk-123456", "client_secret": "cs-123456"},
    "marketplace": {"base_url": "https://market.example.com", "api_token": "mt-123456"},
    "actions": [{"name": "lock", "listings": {"E1": [1]}, "update": {"locked": True}}],
    "cluster": {},
    "server": {},
}


def text_with(path: str, value: Any) -> str:
    """BASE with one key (a dotted path, `[n]` for list items) set to `value`, as YAML."""
    data = copy.deepcopy(BASE)
    parts = path.replace("[", ".[").split(".")
    node: Any = data
    for part in parts[:-1]:
        key: Any = int(part[1:-1]) if part.startswith("[") else part
        node = node[key] if isinstance(node, list) else node.setdefault(key, {})
    last = parts[-1]
    node[int(last[1:-1]) if last.startswith("[") else last] = value
    return yaml.safe_dump(data)


def problems(text: str) -> list[tuple[str, str]]:
    try:
        parse_config(text, env={})
    except ConfigError as exc:
        return [(i.path, i.message) for i in exc.issues]
    return []


NAN, INF = math.nan, math.inf

# (key path, values that must be accepted, values that must be refused)
BOUNDS = [
    ("watch_sets[0].interval_seconds", [1, 2_592_000], [0.999, 2_592_001, 5e16, INF, NAN, True]),
    ("watch_sets[0].intervals.FEW_TICKETS_LEFT", [1, 2_592_000], [0.5, 2_592_001, INF, NAN]),
    ("watch_sets[0].priority", [-1000, 0, 1000], [-1001, 1001, False, True, 1.0, "1"]),
    ("watch_sets[0].confirm_after", [1, 100], [0, 101, True]),
    ("upstream.timeout_seconds", [0.001, 300], [0, 300.5, INF, NAN, -1]),
    ("notifications.timeout_seconds", [0.001, 300], [0, 301, INF, NAN]),
    ("notifications.alertmanager.timeout_seconds", [0.001, 300], [0, 301, INF]),
    ("partner.timeout_seconds", [0.001, 300], [0, 301, INF]),
    ("marketplace.timeout_seconds", [0.001, 300], [0, 301, INF]),
    ("upstream.rate_limit.requests", [1, 100_000], [0, 100_001, True, 5e16]),
    ("upstream.rate_limit.per_seconds", [0.001, 86_400], [0.0009, 86_401, INF, NAN]),
    ("upstream.rate_limit.margin", [0, 0.5], [-0.01, 0.51, NAN]),
    ("partner.rate_limit.per_seconds", [0.001, 86_400], [86_401, INF]),
    ("marketplace.rate_limit.requests", [1, 100_000], [0, 100_001]),
    ("upstream.backoff_base_seconds", [0.001, 3_600], [0, 3_601, INF]),
    ("upstream.backoff_max_seconds", [0.001, 86_400], [0, 86_401, INF]),
    ("upstream.auth_backoff_seconds", [0.001, 86_400], [0, 86_401, INF]),
    ("upstream.quarantine_seconds", [0, 2_592_000], [-1, 2_592_001, INF]),
    ("upstream.daily_quota", [1, 1_000_000_000], [0, 1_000_000_001, 10**30, True]),
    ("notifications.retry_schedule", [[0], [604_800] * 50], [[], [0] * 51, [-1], [604_801]]),
    ("notifications.retry_schedule", [[0, 5]], [[0, NAN], [NAN], [INF], [0, True]]),
    ("notifications.alertmanager.resend_seconds", [1, 86_400], [0.5, 86_401, INF, NAN]),
    ("partner.refresh_hours", [0.01, 720], [0, 721, INF]),
    ("partner.not_found_retry_hours", [0.01, 720], [0, 721, INF]),
    ("cluster.lease_seconds", [2, 600], [1.9, 601, INF]),
    ("cluster.claim_seconds", [0.01, 86_400], [0, 86_401, INF]),
    ("server.stall_seconds", [0.01, 86_400], [0, 86_401, INF]),
    ("actions[0].listings.E1", [[1, 2**63 - 1]], [[0], [2**63], [10**30], [True], [-5]]),
    ("watch_sets[0].name", ["a", "a" * 64, "x-_9"], ["", "a" * 65, "Abc", "a b"]),
    ("notifications.webhooks[0].name", ["a" * 64], ["a" * 65, "UP"]),
    ("actions[0].name", ["a" * 64], ["a" * 65, "a.b"]),
    ("notifications.webhooks[0].filter.watch_sets", [["main"]], [["NOT A NAME"]]),
    ("notifications.webhooks[0].filter.event_ids", [["E1", 7]], [["x*"], ["a" * 65], [True]]),
    ("notifications.webhooks[0].filter.event_ids", [["E"] * 1000], [["E"] * 1001]),
    ("notifications.webhooks[0].filter.to", [["UNKNOWN"] * 1000], [["UNKNOWN"] * 1001]),
    ("actions[0].when.event_ids", [["E1"]], [["x*"]]),
    ("venues", [[{"id": "v1", "name": "n" * 256}]], [[{"id": "v1", "name": "n" * 257}]]),
    ("notifications.alertmanager.alertname", ["a" * 256], ["a" * 257, ""]),
    (
        "notifications.alertmanager.labels",
        [{"team": "x" * 1024, "_a": "b", "k" * 128: "v"}, {f"l{i}": "v" for i in range(64)}],
        [
            {"team": "x" * 1025},
            {"9team": "x"},
            {"te-am": "x"},
            {"k" * 129: "v"},
            {f"l{i}": "v" for i in range(65)},
        ],
    ),
    (
        "actions[0].update",
        [{"internal_notes": "n" * 1000}],
        [{"internal_notes": "n" * 17_000}, {f"k{i}": 1 for i in range(65)}],
    ),
    ("notifications.webhooks[0].secrets", [[WHSEC] * 10], [[WHSEC] * 11]),
    (
        "notifications.webhooks[0].url",
        ["https://" + "a" * 63 + ".example.com/", "https://h.example.com/" + "p" * 2000],
        [
            "https://" + "a" * 64 + ".example.com/",
            "https://" + ".".join(["a" * 60] * 5) + "/",
            "https://h.example.com/" + "p" * 2030,
            "https://h.example.com:99999/",
            "https://h.example.com:0/",
            "https://h .example.com/",
            "ftp://h.example.com/",
        ],
    ),
    (
        "upstream.base_url",
        ["https://api.example.com", "http://127.0.0.1:8080", "http://[::1]:9", "http://localhost"],
        [
            "https://api.example.com:99999",
            "https://api.example.com:x",
            "https://" + "a" * 64 + ".com",
            "https://u:p@api.example.com",
        ],
    ),
    ("partner.base_url", ["https://p.example.com/partners/v1"], ["https://p.example.com:70000"]),
    ("marketplace.base_url", ["https://m.example.com"], ["https://m.example.com:-1"]),
    ("notifications.alertmanager.url", ["http://am.internal:9093"], ["http://am:123456"]),
    ("server.listen", ["127.0.0.1:0", "[::1]:9108", ":9108"], ["127.0.0.1:65536", "h:x"]),
    ("state.schema", ["a" * 63], ["a" * 64]),
]


def _rows() -> list[Any]:
    rows = []
    for path, good, bad in BOUNDS:
        rows += [pytest.param(path, v, True, id=f"{path}={v!r:.40}-ok") for v in good]
        rows += [pytest.param(path, v, False, id=f"{path}={v!r:.40}-refused") for v in bad]
    return rows


@pytest.mark.parametrize(("path", "value", "accepted"), _rows())
def test_bound(path, value, accepted):
    found = problems(text_with(path, value))
    if accepted:
        assert found == []
    else:
        assert found, f"{path}={value!r} was accepted"
        # The issue is at the key itself, or inside it (a list item, a label).
        assert any(p == path or p.startswith((path + ".", path + "[")) for p, _ in found), found
        assert all(SECRET not in m for _, m in found)


def test_limits_module_states_the_issue_numbers():
    assert (limits.INTERVAL_MIN, limits.INTERVAL_MAX) == (1, 2_592_000)
    assert (limits.PRIORITY_MIN, limits.PRIORITY_MAX) == (-1000, 1000)
    assert limits.TIMEOUT_MAX == 300
    assert (limits.REQUESTS_MIN, limits.REQUESTS_MAX) == (1, 100_000)
    assert (limits.PER_SECONDS_MIN, limits.PER_SECONDS_MAX) == (0.001, 86_400)
    assert (limits.RETRY_ENTRIES_MAX, limits.RETRY_DELAY_MAX) == (50, 604_800)
    assert limits.LISTING_ID_MAX == 2**63 - 1
    assert (limits.URL_MAX, limits.DNS_LABEL_MAX, limits.HOST_MAX) == (2048, 63, 253)
    assert (limits.WATCH_SETS_MAX, limits.WEBHOOKS_MAX, limits.VENUES_MAX) == (1000, 100, 100_000)
    assert (limits.ACTIONS_MAX, limits.INLINE_EVENTS_MAX, limits.SECRETS_MAX) == (
        1000,
        1_000_000,
        10,
    )
    assert (limits.LABELS_MAX, limits.LABEL_KEY_MAX, limits.LABEL_VALUE_MAX) == (64, 128, 1024)
    assert (limits.UPDATE_KEYS_MAX, limits.UPDATE_BYTES_MAX) == (64, 16_384)


@pytest.mark.parametrize(
    ("key", "count"),
    [
        ("watch_sets", 1001),
        ("notifications.webhooks", 101),
        ("actions", 1001),
    ],
)
def test_list_lengths(key, count):
    items = {
        "watch_sets": [{"name": f"s{i}"} for i in range(count)],
        "notifications.webhooks": [
            {"name": f"h{i}", "url": "https://h.example.com", "secret": WHSEC} for i in range(count)
        ],
        "actions": [
            {"name": f"a{i}", "listings": {"E1": [1]}, "update": {"locked": True}}
            for i in range(count)
        ],
    }[key]
    assert any(p == key for p, _ in problems(text_with(key, items)))
    assert problems(text_with(key, items[:-1])) == []


# Long lists are written as YAML text directly: yaml.safe_dump takes seconds for them.
HEAD = "upstream: {api_key: k-123456}\n"


def test_venues_at_most_100000():
    def text(n: int) -> str:
        return HEAD + "venues: [" + ", ".join(f"{{id: v{i}}}" for i in range(n)) + "]\n"

    assert problems(text(100_001)) == [
        ("venues", "List should have at most 100000 items after validation, not 100001")
    ]
    assert problems(text(100_000)) == []


def test_inline_events_at_most_a_million():
    def text(n: int) -> str:
        return HEAD + "watch_sets:\n- name: s\n  events: [" + ", ".join(["E1"] * n) + "]\n"

    found = problems(text(1_000_001))
    assert [p for p, _ in found] == ["watch_sets[0].events"]
    assert "events_file" in found[0][1]
    assert problems(text(1_000_000)) == []


# -- event IDs: the same rule everywhere ------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(0, "0", id="zero"),
        pytest.param(12345, "12345", id="number-is-its-digits"),
        pytest.param("12345", "12345", id="digits-string"),
        pytest.param(10**63, "1" + "0" * 63, id="64-digits"),
        pytest.param("a" * 64, "a" * 64, id="64-chars"),
        pytest.param("A-b_9", "A-b_9", id="every-kind-of-character"),
    ],
)
def test_event_id_accepted_alike_in_config_and_api_bodies(given, expected):
    config = parse_config(text_with("watch_sets[0].events", [given]), env={})
    assert [e.id for e in config.watch_sets[0].events] == [expected]
    assert WatchSet.model_validate({"name": "s", "events": [given]}).events[0].id == expected
    from pydantic import TypeAdapter

    assert TypeAdapter(EventItem).validate_python(given).id == expected


@pytest.mark.parametrize(
    "given",
    [-1, 10**64, True, 1.5, "", "a" * 65, "x*", "a b", "é", None, [], "E1\n"],
    ids=repr,
)
def test_event_id_refused_alike_in_config_and_api_bodies(given):
    found = problems(text_with("watch_sets[0].events", ["ok", given]))
    assert [p for p, _ in found] == ["watch_sets[0].events[1]"]
    from pydantic import TypeAdapter, ValidationError

    with pytest.raises(ValidationError):
        WatchSet.model_validate({"name": "s", "events": ["ok", given]})
    with pytest.raises(ValidationError):
        TypeAdapter(EventItem).validate_python(given)


def test_events_file_agrees_with_inline_numbers(tmp_path):
    (tmp_path / "ev.csv").write_text("id\n0\n12345\n")
    config = parse_config(
        text_with("watch_sets[0]", {"name": "s", "events_file": str(tmp_path / "ev.csv")}),
        env={},
    )
    assert [e.id for e in config.watch_sets[0].events] == ["0", "12345"]


def test_event_entry_errors_keep_their_key_paths():
    found = problems(
        text_with(
            "watch_sets[0].events",
            ["E1", {"id": "E2", "venue": "bad venue"}, "bad id", {"id": "E3", "zzz": 1}, 2.5],
        )
    )
    paths = sorted(p for p, _ in found)
    assert paths == [
        "watch_sets[0].events[1].venue",
        "watch_sets[0].events[2]",
        "watch_sets[0].events[3].zzz",
        "watch_sets[0].events[4]",
    ]


# -- secrets never echoed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("notifications.webhooks[0].secrets", SECRET),
        ("notifications.webhooks[0].secrets", {"a": SECRET}),
        ("notifications.webhooks[0].secrets", [SECRET, WHSEC]),
        ("notifications.webhooks[0].secrets", [SECRET]),
        ("upstream.api_key", {"k": SECRET}),
        ("partner.client_secret", [SECRET]),
        ("marketplace.api_token", SECRET * 1000),
    ],
)
def test_no_error_shows_a_secret(path, value):
    from monitor.server.api import SubscriptionIn

    found = problems(text_with(path, value))
    assert found
    assert SECRET not in repr(found)
    if path.startswith("notifications.webhooks[0].secret") and not isinstance(value, list):
        from pydantic import ValidationError

        from monitor.config.loader import validation_issues

        body = {"name": "h", "url": "https://h.example.com", path.rsplit(".", 1)[1]: value}
        with pytest.raises(ValidationError) as info:
            SubscriptionIn.model_validate(body)
        assert SECRET not in str(info.value)
        assert SECRET not in repr(validation_issues(info.value, body, SubscriptionIn))


def test_inline_plain_ids_are_kept_as_strings():
    """A million inline IDs cost their strings, not a model object each."""
    ids = [f"E{i}" for i in range(1000)]
    ws = WatchSet.model_validate({"name": "s", "events": [*ids, {"id": "X", "region": "UK"}]})
    events = ws.events
    assert events.file_ids[:1000] == tuple(ids)  # type: ignore[attr-defined]
    assert all(a is b for a, b in zip(events.file_ids, ids, strict=False))  # type: ignore[attr-defined]
    assert dict(events.attributed) == {1000: events[1000]}  # type: ignore[attr-defined]
    assert events[1000].region == "UK"
    assert ws.model_dump()["events"][:2] == ["E0", "E1"]
    assert WatchSet.model_validate(ws.model_dump()) == ws


def test_a_million_bad_ids_give_a_bounded_report():
    text = HEAD + "watch_sets:\n- name: s\n  events: [" + ", ".join(["'x*'"] * 100_000) + "]\n"
    found = problems(text)
    assert len(found) == 1001
    assert found[-1] == ("watch_sets[0].events", "and 99,000 more problems in this list")
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    rendered = info.value.render()
    assert rendered.splitlines()[0] == "<config>: 1,001 errors in config"
    assert rendered.endswith("  ... and 801 more")


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:" + SECRET + "@h:99999/db",
        "mysql://u:" + SECRET + "@h/db",
        "postgresql://u:" + SECRET + "@h/db?sslmode=" + SECRET,
        SECRET,
    ],
)
def test_no_dsn_problem_shows_the_dsn(dsn):
    from monitor.config.preflight import preflight

    config = parse_config(text_with("state", {"backend": "postgres", "dsn": dsn}), env={})
    found = preflight(config, resolve=lambda host, port: None)
    assert [i.path for i in found] == ["state.dsn"]
    assert SECRET not in repr(found)

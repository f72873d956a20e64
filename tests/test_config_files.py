"""Whatever a named file holds (or is), the config is refused at the key that names it, quickly.

Each case once crashed the loader, blocked it forever or made it read gigabytes: bytes that are
not UTF-8, UTF-16, an oversized CSV field, a 5,000-digit integer, YAML nested 3,000 deep, alias
bombs, /dev/zero, a FIFO nobody writes to, a directory, a file over the size cap.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import ConfigError, limits, load_config, parse_config

KEY = "upstream:\n  api_key: k-123456\n"
BOMB = (
    "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
    "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
    "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
    "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
    "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n"
)


def issues(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    return [(i.path, i.message) for i in info.value.issues]


def check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["check-config", "--config", str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err


# -- the YAML itself --------------------------------------------------------------------------


def test_billion_laughs_refused_at_once():
    started = time.monotonic()
    found = issues(KEY + "bomb:\n  " + BOMB.replace("\n", "\n  "))
    assert time.monotonic() - started < 2
    assert found[0][0] == ""
    assert "aliases expand to more than 100,000" in found[0][1]


def test_billion_laughs_as_events_refused():
    bomb = "x: &a [E1, E1, E1, E1, E1, E1, E1, E1, E1, E1]\n" + BOMB.split("\n", 1)[1]
    found = issues(KEY + bomb + "watch_sets:\n  - name: s\n    events: *i\n")
    assert [p for p, _ in found] == [""]
    assert "aliases expand" in found[0][1]


def test_a_few_aliases_are_fine():
    text = (
        KEY + "watch_sets:\n  - {name: one, events: &ev [A1, A2]}\n  - {name: two, events: *ev}\n"
    )
    config = parse_config(text, env={})
    assert [len(ws.events) for ws in config.watch_sets] == [2, 2]


def test_recursive_alias_refused():
    found = issues(KEY + "watch_sets: &w\n  - *w\n")
    assert "refers to a node that contains it" in found[0][1]


@pytest.mark.parametrize(
    "deep",
    [
        pytest.param("x: " + "[" * 3000 + "]" * 3000 + "\n", id="flow-3000"),
        pytest.param("x: " + "{a: " * 200 + "1" + "}" * 200 + "\n", id="mappings-200"),
        pytest.param("x:\n" + "".join("  " * (i + 1) + "-\n" for i in range(300)), id="block-300"),
    ],
)
def test_deep_nesting_refused_with_a_line(deep):
    found = issues(KEY + deep)
    assert found[0][0] == ""
    assert "invalid YAML" in found[0][1]
    assert "deep" in found[0][1] or "nesting" in found[0][1]


def test_nesting_up_to_the_limit_is_read():
    depth = limits.YAML_DEPTH_MAX - 3
    found = issues(KEY + "x: " + "[" * depth + "]" * depth + "\n")
    assert found == [
        (
            "x",
            "unknown key (expected one of: actions, cluster, log, maintenance, marketplace, notifications, partner, server, state, upstream, venues, watch_sets)",
        )
    ]


def test_huge_integer_is_refused_at_its_key():
    found = issues(KEY + "  batch_size: " + "9" * 5000 + "\n")
    assert [p for p, _ in found] == ["upstream.batch_size"]
    assert len(found[0][1]) < 300
    found = issues(KEY + "watch_sets:\n  - name: s\n    events: [" + "7" * 4400 + "]\n")
    assert [p for p, _ in found] == ["watch_sets[0].events[0]"]


@pytest.mark.parametrize(
    "value",
    ["2024-02-30", "!!float abc", "!!int zz", "!!binary '#'", "!!timestamp 2024-13-01"],
)
def test_bad_tagged_scalars_are_yaml_errors(value):
    found = issues(KEY + f"x: {value}\n")
    assert found[0][0] in ("", "x")


# -- the config file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param(KEY.encode("utf-16"), "UTF-16", id="utf-16"),
        pytest.param(KEY.encode("utf-32"), "UTF-32", id="utf-32"),
        pytest.param(
            KEY.encode() + b"x: \xff\xfe\n", "not UTF-8 text: byte 0xff on line 3", id="latin-1"
        ),
    ],
)
def test_config_file_in_another_encoding(tmp_path, capsys, content, fragment):
    path = tmp_path / "c.yaml"
    path.write_bytes(content)
    code, err = check_config(path, capsys)
    assert code == 2
    assert fragment in err


def test_config_file_with_utf8_bom_is_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + KEY.encode())
    assert load_config(path, env={}).upstream.api_key.reveal() == "k-123456"


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null", "fifo", "dir", "huge"])
def test_config_file_that_is_not_a_regular_file(tmp_path, capsys, special):
    path = _special(tmp_path, special, limits.CONFIG_FILE_BYTES_MAX)
    started = time.monotonic()
    code, err = check_config(path, capsys)
    assert time.monotonic() - started < 2
    assert code == 2
    assert "cannot read config file" in err


def _special(tmp_path: Path, kind: str, limit: int) -> Path:
    """A path that is a device, a FIFO nobody writes to, a directory or a sparse file over
    `limit` bytes."""
    if kind.startswith("/dev/"):
        return Path(kind)
    path = tmp_path / kind
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    else:
        with open(path, "wb") as f:
            f.truncate(limit + 1)
    return path


# -- files the config names -------------------------------------------------------------------


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "dir", "huge"])
@pytest.mark.parametrize(
    ("key", "template", "limit"),
    [
        (
            "watch_sets[0].events_file",
            "watch_sets:\n  - name: s\n    events_file: {path}\n",
            limits.EVENTS_FILE_BYTES_MAX,
        ),
        (
            "upstream.api_key_file",
            "upstream:\n  api_key_file: {path}\n",
            limits.SECRET_FILE_BYTES_MAX,
        ),
        (
            "server.admin_token_file",
            KEY + "server:\n  admin_token_file: {path}\n",
            limits.SECRET_FILE_BYTES_MAX,
        ),
        (
            "actions[0].listings_file",
            KEY
            + "marketplace: {{base_url: 'https://m.example.com', api_token: t-123456}}\n"
            + "actions:\n  - {{name: a, listings_file: {path}, update: {{locked: true}}}}\n",
            limits.EVENTS_FILE_BYTES_MAX,
        ),
    ],
)
def test_named_file_that_is_not_a_regular_file(tmp_path, key, template, limit, special):
    path = _special(tmp_path, special, limit)
    text = template.format(path=path)
    if "api_key" not in text:
        text = KEY + text
    started = time.monotonic()
    found = issues(text)
    assert time.monotonic() - started < 2
    assert any(p == key and str(path) in m for p, m in found), found


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        pytest.param("id\nE1\n".encode("utf-16"), "UTF-16", id="utf-16"),
        pytest.param(b"id,venue\nE1,\xe9\n", "not UTF-8 text: byte 0xe9 on line 2", id="latin-1"),
        pytest.param(
            b'id,venue\nE1,"' + b"v" * (200 * 1024) + b'"\n',
            "line 2: field larger than field limit",
            id="field-over-128k",
        ),
        pytest.param(b"id,venue\nE1,a\x00b\n", "line 2", id="nul-byte"),
    ],
)
def test_events_file_contents(tmp_path, content, fragment):
    path = tmp_path / "ev.csv"
    path.write_bytes(content)
    found = issues(KEY + f"watch_sets:\n  - name: s\n    events_file: {path}\n")
    assert any(p == "watch_sets[0].events_file" and fragment in m for p, m in found), found


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ("E1," + "9" * 5000, "column listing_id"),
        ("E1,9223372036854775808", "column listing_id"),
        ("E1,0", "column listing_id"),
        ("E1,١٢", "column listing_id"),
        ('E1,"' + "v" * (200 * 1024) + '"', "field larger than field limit"),
    ],
)
def test_listings_file_contents(tmp_path, rows, fragment):
    path = tmp_path / "l.csv"
    path.write_text("event_id,listing_id\n" + rows + "\n")
    text = (
        KEY
        + "marketplace: {base_url: 'https://m.example.com', api_token: t-123456}\n"
        + f"actions:\n  - {{name: a, listings_file: {path}, update: {{locked: true}}}}\n"
    )
    found = issues(text)
    assert any(p == "actions[0].listings_file" and fragment in m for p, m in found), found


def test_many_bad_rows_are_summed_up(tmp_path):
    path = tmp_path / "ev.csv"
    path.write_text("id,venue\n" + "bad id,\n" * 5000)
    found = issues(KEY + f"watch_sets:\n  - name: s\n    events_file: {path}\n")
    assert len(found) == 101
    assert "4,900 more problems" in found[-1][1]


def test_secret_file_in_utf16_names_the_key(tmp_path):
    path = tmp_path / "key"
    path.write_bytes("k-123456".encode("utf-16"))
    found = issues(f"upstream:\n  api_key_file: {path}\n")
    assert found == [("upstream.api_key_file", f"{path} is UTF-16 text: save it as UTF-8")]

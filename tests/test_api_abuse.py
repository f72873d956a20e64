"""What nobody should send, sent to a live daemon on loopback: it answers 4xx, never 500."""

from __future__ import annotations

import orjson
import pytest

from monitor.secrets import Secret
from tests.conftest import make_config
from tests.rawhttp import json_of, raw_request, request_bytes

TOKEN = "adm1n-t0ken-abuse-value"
AUTH = {"Authorization": f"Bearer {TOKEN}".encode()}


@pytest.fixture
async def daemon(sim, tmp_path, start_daemon):
    body = (
        "watch_sets:\n  - {name: main, events: [ABUSE1]}\n"
        "notifications:\n  webhooks: [{name: x, url: 'http://127.0.0.1:9/x',"
        " secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}]\n"
    )
    cfg = make_config(sim.url, tmp_path / "s.db", body)
    server = cfg.server.model_copy(update={"admin_token": Secret(TOKEN)})
    return await start_daemon(cfg.model_copy(update={"server": server}))


@pytest.mark.parametrize(
    "value",
    [
        b"Bearer \xff",
        b"Bearer \xc3\xa9t\xc3\xa9",
        b"\xff\xfe",
        b"Bearer " + TOKEN.encode() + b"\x80",
    ],
    ids=["latin1-byte", "utf8", "no-scheme", "token-plus-byte"],
)
async def test_a_bearer_that_is_not_ascii_is_401(daemon, log_stream, value):
    status, body = await raw_request(
        daemon.url, request_bytes("GET", "/v1/watch-sets", headers={"Authorization": value})
    )
    assert status == 401
    assert json_of(body) == {"error": "missing or wrong bearer token"}
    assert "Traceback" not in log_stream.getvalue()


async def test_the_right_token_still_opens_v1(daemon):
    status, body = await raw_request(
        daemon.url, request_bytes("GET", "/v1/watch-sets", headers=AUTH)
    )
    assert status == 200
    assert [w["name"] for w in orjson.loads(body)["watch_sets"]] == ["main"]


# -- bodies --------------------------------------------------------------------------------------


async def test_json_nested_100000_deep_is_400(daemon, log_stream):
    deep = b"[" * 100_000 + b"]" * 100_000
    for body in (deep, b'{"name": ' + deep + b"}", b'{"events": ' + deep + b"}"):
        status, answer = await raw_request(
            daemon.url, request_bytes("POST", "/v1/watch-sets", headers=AUTH, body=body)
        )
        assert status == 400, answer
        assert json_of(answer)["field"] == ""
    assert "Traceback" not in log_stream.getvalue()


@pytest.mark.parametrize(
    "body",
    [b"NaN", b'{"name": "x", "interval_seconds": NaN}', b'{"name": "x", "interval_seconds": 1e999}',
     b'{"name": "\\ud800"}', b"", b"   ", b"\xff\xfe{}", b'{"name": "x"} trailing'],
    ids=["nan", "nan-field", "infinity", "lone-surrogate", "empty", "blank", "not-utf8", "trailing"],
)  # fmt: skip
async def test_bodies_that_are_not_json_are_400(daemon, body):
    status, answer = await raw_request(
        daemon.url, request_bytes("POST", "/v1/watch-sets", headers=AUTH, body=body)
    )
    assert status == 400 and json_of(answer)["field"] == ""
    assert set(daemon.registry.sets()) == set()


async def test_a_body_over_1_mb_is_413_and_nothing_changes(daemon):
    events = [f"E{i:07d}" for i in range(120_000)]  # about 1.3 MB as JSON
    body = orjson.dumps({"name": "big", "events": events})
    assert len(body) > 1024 * 1024
    status, answer = await raw_request(
        daemon.url, request_bytes("POST", "/v1/watch-sets", headers=AUTH, body=body)
    )
    assert status == 413 and "error" in json_of(answer)
    assert "big" not in daemon.registry.sets()
    small = orjson.dumps({"name": "big", "events": events[:50_000]})  # under the cap: fine
    status, _ = await raw_request(
        daemon.url, request_bytes("POST", "/v1/watch-sets", headers=AUTH, body=small)
    )
    assert status == 201 and len(daemon.catalog.sets["big"].event_ids) == 50_000


async def test_errors_name_the_key_and_never_echo_the_value(daemon):
    secret = "whsec_" + "A" * 7 + "!"  # not the documented form
    body = orjson.dumps({"name": "s", "url": "http://8.8.8.8/x", "secret": secret, "x" * 5000: 1})
    status, answer = await raw_request(
        daemon.url, request_bytes("POST", "/v1/subscriptions", headers=AUTH, body=body)
    )
    data = json_of(answer)
    assert status == 400
    fields = {e["field"] for e in data["errors"]}
    assert "secret" in fields and len(fields) == 2
    (long_key,) = fields - {"secret"}  # named, but shortened: an error stays small
    assert long_key.startswith("x" * 50) and len(long_key) < 200
    assert secret not in answer.decode()
    many = orjson.dumps({"name": "s", "events": [f"bad id {i}" for i in range(5000)]})
    status, answer = await raw_request(
        daemon.url, request_bytes("POST", "/v1/watch-sets", headers=AUTH, body=many)
    )
    assert status == 400 and len(json_of(answer)["errors"]) == 20
    assert json_of(answer)["field"] == "events[0]"


# -- paths ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/v1/../metrics", "/v1/%2e%2e/metrics", "/v1/watch-sets/..%2f..%2fetc%2fpasswd",
     "/v1//watch-sets", "/v1/watch-sets/%00", "/v1/events/..%5c..%5cwin.ini",
     "/v1/watch-sets/main/../../../openapi.yaml"],
)  # fmt: skip
async def test_path_traversal_gets_nothing(daemon, path):
    status, answer = await raw_request(daemon.url, request_bytes("GET", path))
    assert status in (400, 401, 404), (path, status)
    assert b"availability_monitor_" not in answer and b"openapi:" not in answer
    status, answer = await raw_request(daemon.url, request_bytes("GET", path, headers=AUTH))
    assert status in (400, 404), (path, status)
    assert b"availability_monitor_" not in answer and b"openapi:" not in answer


def test_bearer_compare_hashes_both_sides():
    from monitor.server.app import bearer_matches

    token = Secret(TOKEN)
    assert bearer_matches(f"Bearer {TOKEN}", token)
    for given in ("", "Bearer", f"Bearer {TOKEN} ", f"bearer {TOKEN}", f"Bearer {TOKEN[:-1]}",
                  "Bearer \udcff", "Bearer \ud800", "x" * 100_000):  # fmt: skip
        assert not bearer_matches(given, token)


@pytest.mark.parametrize(
    ("path", "body", "field", "words"),
    [
        ("/v1/subscriptions", [], "", "must be an object"),
        ("/v1/subscriptions", {"name": "a", "url": "http://8.8.8.8/", "secret": "s3cret-x",
                               "secrets": ["s3cret-y"]}, "secret", "whsec_"),
        ("/v1/subscriptions", {"name": "a", "url": "ftp://x/"}, "url", "http(s) URL"),
        ("/v1/subscriptions", {"name": "a", "url": "http://8.8.8.8/", "max_in_flight": 65},
         "max_in_flight", "<= 64"),
        ("/v1/watch-sets", {"name": "w", "events": [{"id": "E1", "tz": "UTC"}]},
         "events[0].tz", "unknown key"),
        ("/v1/watch-sets", {"name": "w", "events": [5]}, "events[0]", "event ID"),
        ("/v1/watch-sets", {"name": "w", "events": [{"id": "E1", "time_zone": "Mars/Base"}]},
         "events[0].time_zone", "IANA time zone"),
        ("/v1/watch-sets", {"name": "w", "priority": False}, "priority", "an integer"),
        ("/v1/watch-sets", {"name": "W"}, "name", "must match"),
        ("/v1/subscriptions/x/dead-letters/replay", {}, "", "say which"),
        ("/v1/subscriptions/x/dead-letters/replay", {"idz": ["a"]}, "idz", "unknown key"),
        ("/v1/subscriptions/x/dead-letters/replay", {"all": True, "ids": ["a"]}, "", "alone"),
        ("/v1/subscriptions/x/dead-letters/replay", {"ids": []}, "ids", "at least 1"),
    ],
)  # fmt: skip
async def test_each_problem_names_its_key_and_says_what_is_wanted(daemon, path, body, field, words):
    status, answer = await raw_request(
        daemon.url, request_bytes("POST", path, headers=AUTH, body=orjson.dumps(body))
    )
    data = json_of(answer)
    assert status == 400, data
    assert data["field"] == field and words in data["error"], data

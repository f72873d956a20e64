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
    cfg = make_config(
        sim.url, tmp_path / "s.db", "watch_sets:\n  - {name: main, events: [ABUSE1]}\n"
    )
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

"""The runtime API over real HTTP: auth, ownership, validation, SSRF, dead letters, watch sets."""

from __future__ import annotations

import socket

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver

from monitor.notify.signing import new_secret
from tests.conftest import make_config

TOKEN = "adm1n-t0ken-value"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SECRET = new_secret()
A = "APIAAAAAAAAAAAA1"


class FakeDns(AbstractResolver):
    """A resolver with fixed answers: a real resolver interface, test-controlled records."""

    def __init__(self, records: dict[str, str]) -> None:
        self.records = records

    async def resolve(self, host, port=0, family=socket.AF_INET):
        ip = self.records.get(host)
        if ip is None:
            raise OSError(f"no such host {host}")
        fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
        return [{"hostname": host, "host": ip, "port": port, "family": fam, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


def body(
    token: bool = True, deny_private: bool = False, hook_url: str = "http://127.0.0.1:9/x"
) -> str:
    server = f"server: {{listen: '127.0.0.1:0'{', admin_token: ' + TOKEN if token else ''}}}\n"
    return (
        server
        + f"watch_sets:\n  - {{name: config-set, events: [{A}]}}\n"
        + "notifications:\n"
        + f"  deny_private_networks: {str(deny_private).lower()}\n"
        + "  webhooks:\n"
        + f"    - {{name: from-config, url: '{hook_url}', secret: '{SECRET.reveal()}'}}\n"
    )


async def call(method: str, url: str, json=None, headers=None):
    async with (
        aiohttp.ClientSession() as s,
        s.request(method, url, json=json, headers=headers) as r,
    ):
        data = await r.json(content_type=None) if r.status != 204 else None
        return r.status, data


@pytest.fixture
async def api(sim, tmp_path, start_daemon):
    from monitor.config import parse_config

    cfg = make_config(sim.url, tmp_path / "s.db", "")
    text = body()
    full = parse_config(
        __import__("yaml").safe_dump(
            {
                **cfg.model_dump(
                    mode="json",
                    exclude_none=True,
                    exclude={"server", "watch_sets", "notifications"},
                ),
                "upstream": {
                    **cfg.upstream.model_dump(mode="json", exclude_none=True),
                    "api_key": "k-123456",
                },
            }
        )
        + text,
        env={},
    )
    dns = FakeDns({"metadata.evil.test": "169.254.169.254", "hooks.example.test": "93.184.216.34"})
    d = await start_daemon(full, webhook_resolver=dns)
    return d


async def test_every_v1_request_needs_the_token(api):
    for method, path in [
        ("GET", "/v1/subscriptions"),
        ("GET", f"/v1/events/{A}"),
        ("POST", "/v1/subscriptions"),
        ("GET", "/v1/watch-sets"),
    ]:
        status, _ = await call(method, api.url + path, json={})
        assert status == 401, path
        status, _ = await call(
            method, api.url + path, json={}, headers={"Authorization": "Bearer wrong"}
        )
        assert status == 401
    assert (await call("GET", api.url + "/v1/subscriptions", headers=AUTH))[0] == 200


async def test_without_a_token_changes_are_forbidden(sim, tmp_path, start_daemon):
    cfg = make_config(sim.url, tmp_path / "s.db", f"watch_sets:\n  - {{name: a, events: [{A}]}}\n")
    d = await start_daemon(cfg)
    assert (await call("GET", d.url + "/v1/subscriptions"))[0] == 200
    status, data = await call(
        "POST", d.url + "/v1/subscriptions", json={"name": "x", "url": "http://h/x"}
    )
    assert status == 403 and "admin_token" in data["error"]


async def test_create_returns_a_generated_secret_once(api):
    status, data = await call(
        "POST",
        api.url + "/v1/subscriptions",
        json={
            "name": "desk",
            "url": "http://hooks.example.test/in",
            "filter": {"to": ["FEW_TICKETS_LEFT"]},
        },
        headers=AUTH,
    )
    assert status == 201
    assert data["secret"].startswith("whsec_") and data["origin"] == "api"
    status, shown = await call("GET", api.url + "/v1/subscriptions/desk", headers=AUTH)
    assert status == 200 and "secret" not in shown and shown["secrets"] == 1
    assert data["secret"] not in str(shown)
    _, listed = await call("GET", api.url + "/v1/subscriptions", headers=AUTH)
    assert [s["name"] for s in listed["subscriptions"]] == ["from-config", "desk"]
    assert data["secret"] not in str(listed)
    status, _ = await call(
        "POST",
        api.url + "/v1/subscriptions",
        json={"name": "desk", "url": "http://hooks.example.test/in"},
        headers=AUTH,
    )
    assert status == 409


async def test_config_owned_objects_answer_409(api):
    for method, path, payload in [
        ("PATCH", "/v1/subscriptions/from-config", {"url": "http://hooks.example.test/x"}),
        ("DELETE", "/v1/subscriptions/from-config", None),
        ("DELETE", "/v1/watch-sets/config-set", None),
        ("POST", "/v1/watch-sets/config-set/events", {"events": ["X1"]}),
    ]:
        status, data = await call(method, api.url + path, json=payload, headers=AUTH)
        assert status == 409, path
        assert "config file" in data["error"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"url": "http://hooks.example.test/x"}, "name"),
        ({"name": "Bad Name", "url": "http://hooks.example.test/x"}, "name"),
        ({"name": "ok", "url": "ftp://hooks.example.test/x"}, "url"),
        (
            {"name": "ok", "url": "http://hooks.example.test/x", "filter": {"to": ["SOLD_OUT"]}},
            "filter.to[0]",
        ),
        ({"name": "ok", "url": "http://hooks.example.test/x", "filtr": {}}, "filtr"),
        ({"name": "ok", "url": "http://hooks.example.test/x", "secret": "not-a-whsec"}, "secret"),
        ({"name": "ok", "url": "http://hooks.example.test/x", "max_in_flight": 0}, "max_in_flight"),
        ({"name": "ok", "url": "http://hooks.example.test/x", "format": "xml"}, "format"),
    ],
    ids=[
        "missing-name",
        "bad-name",
        "scheme",
        "filter-status",
        "unknown-key",
        "secret",
        "inflight",
        "format",
    ],
)
async def test_bad_bodies_are_400_naming_the_field(api, payload, field):
    status, data = await call("POST", api.url + "/v1/subscriptions", json=payload, headers=AUTH)
    assert status == 400, data
    assert data["field"] == field


async def test_a_body_that_is_not_json_is_400(api):
    async with (
        aiohttp.ClientSession() as s,
        s.post(api.url + "/v1/subscriptions", data=b"{nope", headers=AUTH) as r,
    ):
        assert r.status == 400


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("http://169.254.169.254/latest/meta-data/", 422),
        ("http://metadata.evil.test/x", 422),
        ("http://[::ffff:169.254.169.254]/x", 400),  # IPv6 literals: not in the API's URL form
        ("http://[fd00:ec2::254]/x", 400),
    ],
)
async def test_metadata_addresses_are_always_refused(api, url, status):
    got, data = await call(
        "POST", api.url + "/v1/subscriptions", json={"name": "evil", "url": url}, headers=AUTH
    )
    assert got == status and data["field"] == "url"
    if status == 422:
        assert "refused" in data["error"]
    assert api.subscriptions.get("evil") is None


async def test_private_ranges_refused_when_denied(sim, tmp_path, start_daemon):
    from monitor.config import parse_config

    cfg = make_config(sim.url, tmp_path / "s.db", "")
    head = __import__("yaml").safe_dump(
        {
            "upstream": {**cfg.upstream.model_dump(mode="json"), "api_key": "k-123456"},
            "state": {"path": str(tmp_path / "s.db")},
        }
    )
    full = parse_config(
        head + body(deny_private=True, hook_url="https://hooks.example.test/x"), env={}
    )
    d = await start_daemon(full, webhook_resolver=FakeDns({"hooks.example.test": "93.184.216.34"}))
    for url in (
        "http://10.0.0.5/x",
        "http://127.0.0.1:8080/x",
        "http://192.168.1.1/x",
        "http://100.64.1.1/x",
    ):
        status, data = await call(
            "POST", d.url + "/v1/subscriptions", json={"name": "p", "url": url}, headers=AUTH
        )
        assert status == 422 and data["field"] == "url", url
    status, _ = await call(
        "POST",
        d.url + "/v1/subscriptions",
        json={"name": "p", "url": "https://hooks.example.test/ok"},
        headers=AUTH,
    )
    assert status == 201


def test_config_refuses_metadata_and_denied_private_urls(tmp_path):
    from monitor.config import ConfigError, parse_config

    text = (
        "upstream: {api_key: k-123456}\n"
        "notifications:\n  deny_private_networks: true\n  webhooks:\n"
        f"    - {{name: a, url: 'http://169.254.169.254/x', secret: '{SECRET.reveal()}'}}\n"
        f"    - {{name: b, url: 'http://10.1.1.1/x', secret: '{SECRET.reveal()}'}}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, env={})
    paths = {i.path for i in info.value.issues}
    assert {"notifications.webhooks[0].url", "notifications.webhooks[1].url"} <= paths
    assert SECRET.reveal() not in str(info.value)


async def test_update_rotate_enable_and_delete(api):
    await call(
        "POST",
        api.url + "/v1/subscriptions",
        json={"name": "desk", "url": "http://hooks.example.test/in"},
        headers=AUTH,
    )
    new = new_secret()
    old = new_secret()
    status, data = await call(
        "PATCH",
        api.url + "/v1/subscriptions/desk",
        json={"secrets": [old.reveal(), new.reveal()], "format": "cloudevents"},
        headers=AUTH,
    )
    assert status == 200 and data["secrets"] == 2 and data["format"] == "cloudevents"
    assert api.subscriptions.get("desk").secrets == (old, new)
    status, data = await call(
        "POST", api.url + "/v1/subscriptions/from-config/enable", headers=AUTH
    )
    assert status == 200 and data["enabled"] is True
    assert (await call("DELETE", api.url + "/v1/subscriptions/desk", headers=AUTH))[0] == 204
    assert (await call("GET", api.url + "/v1/subscriptions/desk", headers=AUTH))[0] == 404


async def test_dead_letters_listed_and_replayed(api):
    from monitor.core.transitions import EventState
    from monitor.store.base import NewTransition

    store = api.store
    t = NewTransition(A, "status", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", ("config-set",), 1000.0)
    [stored] = await store.record({A: EventState()}, [t], 1000.0, [["from-config"]], 1000.0)
    await store.delivery_dead(
        store.delivery_id(stored.sequence, "from-config"), 8, "HTTP 500", 2000.0
    )
    status, data = await call(
        "GET", api.url + "/v1/subscriptions/from-config/dead-letters", headers=AUTH
    )
    assert status == 200
    [dead] = data["dead_letters"]
    assert dead["id"] == store.delivery_id(stored.sequence, "from-config") and dead["attempts"] == 8
    assert dead["transition"]["current"] == "FEW_TICKETS_LEFT"
    status, data = await call(
        "POST",
        api.url + "/v1/subscriptions/from-config/dead-letters/replay",
        json={"ids": [dead["id"]]},
        headers=AUTH,
    )
    assert status == 200 and data == {"replayed": 1}
    assert (await store.outbox_counts())["from-config"] == (1, 0)
    status, data = await call(
        "POST",
        api.url + "/v1/subscriptions/from-config/dead-letters/replay",
        json={"since": "not a time"},
        headers=AUTH,
    )
    assert status == 400 and data["field"] == "since"


async def test_watch_sets_at_run_time(api, sim):
    status, data = await call(
        "POST",
        api.url + "/v1/watch-sets",
        json={
            "name": "late",
            "interval_seconds": 30,
            "events": ["LATE1", {"id": "LATE2", "time_zone": "Europe/Paris"}],
        },
        headers=AUTH,
    )
    assert status == 201 and data["origin"] == "api" and data["event_count"] == 2
    assert "late" in api.catalog.sets and "LATE2" in api.catalog.events
    status, data = await call(
        "POST",
        api.url + "/v1/watch-sets/late/events",
        json={"events": ["LATE3", "LATE1"]},
        headers=AUTH,
    )
    assert status == 200 and data == {"added": 1}
    async with (
        aiohttp.ClientSession() as s,
        s.delete(
            api.url + "/v1/watch-sets/late/events", json={"events": ["LATE1"]}, headers=AUTH
        ) as r,
    ):
        assert r.status == 200 and (await r.json()) == {"removed": 1}
    assert set(api.catalog.sets["late"].event_ids) == {"LATE2", "LATE3"}
    status, data = await call(
        "POST", api.url + "/v1/watch-sets", json={"name": "bad", "events": ["not ok"]}, headers=AUTH
    )
    assert status == 400 and data["field"] == "events[0]"
    status, data = await call(
        "POST",
        api.url + "/v1/watch-sets",
        json={"name": "tz", "events": [{"id": "LATE2", "time_zone": "Asia/Tokyo"}]},
        headers=AUTH,
    )
    assert status == 409  # conflicts with LATE2's time zone in set "late"
    assert data["field"] == "events[0].time_zone" or data["field"].startswith("events[0]")
    await api.scheduler.run_once(["late"])
    assert {"LATE2", "LATE3"} <= {eid for r in sim.log for eid in r.ids}
    status, listed = await call("GET", api.url + "/v1/watch-sets", headers=AUTH)
    assert [(w["name"], w["origin"]) for w in listed["watch_sets"]] == [
        ("config-set", "config"),
        ("late", "api"),
    ]
    assert (await call("DELETE", api.url + "/v1/watch-sets/late", headers=AUTH))[0] == 204
    assert "late" not in api.catalog.sets


async def test_api_objects_survive_a_restart(api, start_daemon):
    await call(
        "POST",
        api.url + "/v1/subscriptions",
        json={"name": "desk", "url": "http://hooks.example.test/in"},
        headers=AUTH,
    )
    await call(
        "POST", api.url + "/v1/watch-sets", json={"name": "late", "events": ["LATE1"]}, headers=AUTH
    )
    config = api.config
    await api.stop()
    again = await start_daemon(config)
    assert again.subscriptions.get("desk") is not None
    assert "late" in again.catalog.sets


async def test_openapi_document_is_served(api):
    async with aiohttp.ClientSession() as s, s.get(api.url + "/openapi.yaml") as r:
        assert r.status == 200
        assert "openapi" in await r.text()

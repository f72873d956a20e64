"""The OpenAPI document: valid YAML, OpenAPI 3.1 shaped, and in step with the real routes."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

import monitor.server
from monitor.app import Daemon
from monitor.config import parse_config

DOC_PATH = Path(monitor.server.__file__).parent / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
CHANGING = ("post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load(DOC_PATH.read_text("utf-8"))


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method.upper(), op


def normalise(path: str) -> str:
    """`{name}` and aiohttp's `{name:regex}` both become `{name}`."""
    return re.sub(r"\{([^}:]+)(?::[^}]*)?\}", r"{\1}", path)


def documented_routes(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method, normalise(path)) for path, method, _ in operations(doc)}


# -- the real application ----------------------------------------------------------------------


async def _daemon_and_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, admin: bool) -> Any:
    """A started daemon and the aiohttp application it serves (captured at AppRunner)."""
    apps: list[web.Application] = []
    real_runner = web.AppRunner

    class RecordingRunner(real_runner):  # type: ignore[misc, valid-type]
        def __init__(self, app: web.Application, **kwargs: Any) -> None:
            apps.append(app)
            super().__init__(app, **kwargs)

    monkeypatch.setattr(web, "AppRunner", RecordingRunner)
    token = "\n  admin_token: openapi-test-token" if admin else ""
    text = (
        "upstream:\n  base_url: http://127.0.0.1:9\n  api_key: KEY-openapi-test\n"
        f"state:\n  path: {tmp_path / 'state.db'}\n"
        f"server:\n  listen: 127.0.0.1:0{token}\n"
    )
    daemon = Daemon(parse_config(text, env={}), registry=CollectorRegistry())
    await daemon.start(schedule=False)
    assert len(apps) == 1, "expected the daemon to build exactly one aiohttp application"
    return daemon, apps[0]


@pytest.fixture
async def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Daemon, web.Application]]:
    daemon, app = await _daemon_and_app(tmp_path, monkeypatch, admin=False)
    try:
        yield daemon, app
    finally:
        await daemon.stop()


def app_routes(app: web.Application) -> set[tuple[str, str]]:
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":  # aiohttp adds one per GET
            continue
        canonical = route.resource.canonical if route.resource is not None else ""
        out.add((route.method, normalise(canonical)))
    return out


# -- the document itself -----------------------------------------------------------------------


def test_document_parses_and_is_openapi_31(doc):
    assert isinstance(doc, dict)
    assert str(doc["openapi"]).startswith("3.1.")
    assert doc["info"]["title"] and doc["info"]["version"]
    assert isinstance(doc["paths"], dict) and doc["paths"]
    for path in doc["paths"]:
        assert path.startswith("/")
    for path, method, op in operations(doc):
        assert op.get("responses"), f"{method} {path} has no responses"
        assert op.get("operationId"), f"{method} {path} has no operationId"
    ids = [op["operationId"] for _, _, op in operations(doc)]
    assert len(ids) == len(set(ids))


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_ref_resolves(doc):
    refs = set(_refs(doc))
    assert refs
    for ref in refs:
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            assert isinstance(node, dict) and part in node, f"unresolved $ref {ref}"
            node = node[part]


def test_path_parameters_are_declared(doc):
    for path, item in doc["paths"].items():
        names = set(re.findall(r"\{([^}]+)\}", path))
        for method, op in item.items():
            if method not in METHODS:
                continue
            params = [*item.get("parameters", []), *op.get("parameters", [])]
            declared = set()
            for p in params:
                if "$ref" in p:
                    p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
                if p["in"] == "path":
                    assert p["required"] is True
                    declared.add(p["name"])
            assert declared == names, f"{method} {path}: {declared} != {names}"


def test_security_scheme_and_error_responses(doc):
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    error = doc["components"]["schemas"]["Error"]
    assert set(error["properties"]) >= {"error", "field", "errors"}
    assert error["required"] == ["error"]
    for path, method, op in operations(doc):
        codes = set(op["responses"])
        if path.startswith("/v1/"):
            assert "401" in codes, f"{method} {path} does not document 401"
            assert op.get("security", doc["security"]) != [], f"{method} {path} open"
            if method.lower() in CHANGING:
                assert "403" in codes, f"{method} {path} does not document 403"
        else:
            assert op.get("security") == [], f"{method} {path} should need no token"
        if "{" in path:
            assert "404" in codes, f"{method} {path} does not document 404"
        if "requestBody" in op:
            assert "400" in codes, f"{method} {path} has a body but no 400"


def test_transition_and_webhook_payloads(doc):
    schemas = doc["components"]["schemas"]
    transition = schemas["Transition"]
    assert set(transition["required"]) == {
        "sequence",
        "event_id",
        "watch_sets",
        "field",
        "previous",
        "current",
        "observed_at",
    }
    standard = schemas["StandardWebhookPayload"]
    assert standard["properties"]["type"]["const"] == "availability.changed"
    assert standard["properties"]["data"]["$ref"] == "#/components/schemas/Transition"
    cloud = schemas["CloudEventPayload"]
    assert set(cloud["required"]) >= {"specversion", "id", "source", "type"}

    hooks = doc["webhooks"]
    assert hooks
    headers = set()
    content_types = set()
    for hook in hooks.values():
        post = hook["post"]
        for p in post["parameters"]:
            p = doc["components"]["parameters"][p["$ref"].rsplit("/", 1)[1]]
            assert p["in"] == "header"
            headers.add(p["name"])
        content_types |= set(post["requestBody"]["content"])
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert content_types == {"application/json", "application/cloudevents+json"}


def test_request_bodies_document_the_pydantic_models(doc):
    """Every field of the API's body models is documented (and nothing the models reject)."""
    from monitor.config.models import EventEntry, Filter, WatchSet
    from monitor.server.actions_api import ActionReplayIn
    from monitor.server.api import ReplayIn, SubscriptionIn, SubscriptionPatch
    from monitor.server.watch_sets_api import EventIdsIn, EventsIn

    schemas = doc["components"]["schemas"]
    pairs = {
        "SubscriptionIn": SubscriptionIn,
        "SubscriptionPatch": SubscriptionPatch,
        "ReplayIn": ReplayIn,
        "ActionReplayIn": ActionReplayIn,
        "EventsIn": EventsIn,
        "EventIdsIn": EventIdsIn,
        "EventEntryObject": EventEntry,
        "Filter": Filter,
        "WatchSetIn": WatchSet,
    }
    for name, model in pairs.items():
        fields = {f.alias or key for key, f in model.model_fields.items()}
        if model is WatchSet:
            fields.discard("events_file")  # config-file only: the API answers 400
        documented = set(schemas[name]["properties"])
        assert documented == fields, f"{name}: {documented} != {fields}"
        required = {f.alias or key for key, f in model.model_fields.items() if f.is_required()}
        assert set(schemas[name].get("required", [])) == required, name
        assert schemas[name].get("additionalProperties") is False, name


# -- the document against the real application -------------------------------------------------


async def test_routes_match_the_application(doc, served):
    _, app = served
    in_app = app_routes(app)
    in_doc = documented_routes(doc)
    assert ("GET", "/v1/subscriptions") in in_app  # the admin API is part of the captured app
    undocumented = in_app - in_doc
    assert not undocumented, f"routes missing from openapi.yaml: {sorted(undocumented)}"
    stale = in_doc - in_app
    assert not stale, f"documented routes the server does not have: {sorted(stale)}"


async def test_route_check_catches_an_undocumented_route(doc, served):
    """The same check on a copy of the real routes plus one more: the new route is reported."""
    _, app = served

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    copy = web.Application()
    for method, path in app_routes(app):
        copy.router.add_route(method, path, handler)
    copy.router.add_get("/v1/not-documented/{thing}", handler)
    copy.router.add_post("/v1/subscriptions/{name}/pause", handler)
    assert app_routes(copy) - documented_routes(doc) == {
        ("GET", "/v1/not-documented/{thing}"),
        ("POST", "/v1/subscriptions/{name}/pause"),
    }


async def test_document_is_served(served):
    daemon, _ = served
    async with aiohttp.ClientSession() as s, s.get(daemon.url + "/openapi.yaml") as r:
        assert r.status == 200
        assert r.content_type == "application/yaml"
        text = await r.text()
    assert text == DOC_PATH.read_text("utf-8")
    assert yaml.safe_load(text)["openapi"].startswith("3.1")


async def test_auth_behaviour_matches_the_document(tmp_path, monkeypatch):
    """401 without the token when one is set; 403 for changes when none is set."""
    daemon, _ = await _daemon_and_app(tmp_path, monkeypatch, admin=True)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(daemon.url + "/v1/subscriptions") as r:
                assert r.status == 401
                assert "error" in await r.json()
            headers = {"Authorization": "Bearer openapi-test-token"}
            async with s.get(daemon.url + "/v1/subscriptions", headers=headers) as r:
                assert r.status == 200
            async with s.get(daemon.url + "/openapi.yaml") as r:
                assert r.status == 200
    finally:
        await daemon.stop()


async def test_changes_without_a_token_are_forbidden(served):
    daemon, _ = served
    async with aiohttp.ClientSession() as s:
        async with s.get(daemon.url + "/v1/watch-sets") as r:
            assert r.status == 200
        async with s.post(daemon.url + "/v1/watch-sets", json={"name": "x"}) as r:
            assert r.status == 403
            assert "error" in await r.json()


async def test_patch_with_empty_secrets_does_not_lose_the_secret(tmp_path, monkeypatch):
    """An empty `secrets` list must not leave the subscription signing with an unknown key."""
    daemon, _ = await _daemon_and_app(tmp_path, monkeypatch, admin=True)
    headers = {"Authorization": "Bearer openapi-test-token"}
    try:
        async with aiohttp.ClientSession(headers=headers) as s:
            body = {"name": "rot", "url": "http://8.8.8.8/hook"}
            async with s.post(daemon.url + "/v1/subscriptions", json=body) as r:
                assert r.status == 201
            before = daemon.subscriptions.get("rot")
            assert before is not None
            async with s.patch(daemon.url + "/v1/subscriptions/rot", json={"secrets": []}) as r:
                status, answer = r.status, await r.json()
        after = daemon.subscriptions.get("rot")
        assert after is not None
        if status == 400:
            assert answer["field"] == "secrets"
            assert after.secrets == before.secrets
        else:
            # Accepted: then the new secret must be shown once, like on creation.
            assert status == 200
            assert [s.reveal() for s in after.secrets] == [answer.get("secret")]
    finally:
        await daemon.stop()


# -- real bodies against the documented schemas ------------------------------------------------


def schema_validator(doc: dict[str, Any], name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "$ref": f"#/components/schemas/{name}",
    }
    return jsonschema.Draft202012Validator(schema)


def test_transition_and_payloads_match_their_schemas(doc):
    import orjson

    from monitor.domain import Transition
    from monitor.notify import payload

    t = Transition(42, "17AOv8G6G5rI0S0", ("seattle",), "status", "TICKETS_AVAILABLE",
                   "FEW_TICKETS_LEFT", 1_764_000_000.123)  # fmt: skip
    schema_validator(doc, "Transition").validate(t.to_json())
    body, _ = payload.build("standard", t, 1_764_000_000.2, "msg_1")
    schema_validator(doc, "StandardWebhookPayload").validate(orjson.loads(body))
    body, _ = payload.build("cloudevents", t, 1_764_000_000.2, "msg_1")
    schema_validator(doc, "CloudEventPayload").validate(orjson.loads(body))


LIVE_CALLS: list[tuple[str, str, Any, int, str | None]] = [
    ("GET", "/healthz", None, 200, "Health"),
    ("GET", "/readyz", None, 200, "Readiness"),  # nothing watched yet
    ("GET", "/v1/transitions", None, 200, "TransitionPage"),
    ("GET", "/v1/transitions?limit=0", None, 400, "Error"),
    ("GET", "/v1/events/NOPE", None, 404, "Error"),
    ("POST", "/v1/subscriptions", {"name": "a", "url": "http://8.8.8.8/x"}, 201,
     "SubscriptionCreated"),
    ("GET", "/v1/subscriptions", None, 200, None),
    ("GET", "/v1/subscriptions/a", None, 200, "SubscriptionWithCounts"),
    ("PATCH", "/v1/subscriptions/a", {"format": "cloudevents"}, 200, "Subscription"),
    ("POST", "/v1/subscriptions/a/enable", None, 200, "Subscription"),
    ("GET", "/v1/subscriptions/a/dead-letters", None, 200, None),
    ("POST", "/v1/subscriptions/a/dead-letters/replay", {"ids": ["x"]}, 200, None),
    ("POST", "/v1/subscriptions", {"name": "b"}, 400, "Error"),
    ("POST", "/v1/subscriptions", {"name": "a", "url": "http://8.8.8.8/y"}, 409, "Error"),
    ("POST", "/v1/watch-sets", {"name": "w", "events": ["E1", {"id": "E2"}]}, 201,
     "WatchSetSummary"),
    ("GET", "/v1/watch-sets/w", None, 200, "WatchSetDetail"),
    ("POST", "/v1/watch-sets/w/events", {"events": ["E3"]}, 200, None),
    ("DELETE", "/v1/watch-sets/w/events", {"events": ["E1"]}, 200, None),
    ("POST", "/v1/watch-sets", {"name": "w"}, 409, "Error"),
    ("POST", "/v1/watch-sets", {"name": "v", "events": [{"id": "E9", "venue": "nope"}]}, 409,
     "Error"),
    ("POST", "/v1/watch-sets", {"name": "v", "priority": False}, 400, "Error"),
    ("POST", "/v1/watch-sets", {"name": "v", "interval_seconds": 5e16}, 400, "Error"),
    ("POST", "/v1/watch-sets/w/events", {"events": [0]}, 400, "Error"),
    ("POST", "/v1/subscriptions/a/dead-letters/replay", {"ids": [], "since": None}, 400,
     "Error"),
    ("POST", "/v1/subscriptions/a/dead-letters/replay", {"idz": ["x"]}, 400, "Error"),
    ("POST", "/v1/subscriptions/a/dead-letters/replay", {}, 400, "Error"),
    ("POST", "/v1/subscriptions/a/dead-letters/replay", {"all": True}, 200, None),
    ("POST", "/v1/subscriptions", {"name": "f", "url": "http://8.8.8.8/x",
                                    "filter": {"event_ids": ["x*"]}}, 400, "Error"),
    ("DELETE", "/v1/watch-sets/w", None, 204, None),
    ("DELETE", "/v1/subscriptions/a", None, 204, None),
    ("GET", "/v1/subscriptions/a", None, 404, "Error"),
]  # fmt: skip


async def test_live_answers_match_their_schemas(doc, tmp_path, monkeypatch):
    """Real answers validate against the schemas the document gives for them."""
    daemon, _ = await _daemon_and_app(tmp_path, monkeypatch, admin=True)
    headers = {"Authorization": "Bearer openapi-test-token"}
    answers = []
    try:
        async with aiohttp.ClientSession() as s:
            for method, path, body, status, schema in LIVE_CALLS:
                async with s.request(method, daemon.url + path, json=body, headers=headers) as r:
                    data = await r.json() if r.status != 204 else None
                    answers.append((method, path, r.status, status, schema, data))
            async with s.get(daemon.url + "/v1/watch-sets") as r:
                answers.append(("GET", "/v1/watch-sets", r.status, 401, "Error", await r.json()))
    finally:
        await daemon.stop()
    for method, path, got, status, schema, data in answers:
        assert got == status, (method, path, data)
        if schema is not None:
            schema_validator(doc, schema).validate(data)
        # The documented responses of the operation include this status.
        route = normalise_request(doc, path.split("?", 1)[0])
        assert str(got) in doc["paths"][route][method.lower()]["responses"], (method, path)


def normalise_request(doc: dict[str, Any], path: str) -> str:
    """The documented path template a concrete path falls under."""
    for template in doc["paths"]:
        pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, path):
            return template
    raise AssertionError(f"no documented path for {path}")


def test_time_zones_of_the_document_all_load(doc):
    from zoneinfo import ZoneInfo

    zones = doc["components"]["schemas"]["TimeZone"]["enum"]
    assert len(zones) > 500 and "Europe/Berlin" in zones and "Asia/Kolkata" in zones
    for name in zones:
        assert isinstance(name, str)
        ZoneInfo(name)  # every name the document allows, the daemon knows


def test_the_documents_limits_are_the_servers(doc):
    from monitor.server import limits

    s = doc["components"]["schemas"]
    assert s["WebhookUrl"]["maxLength"] == limits.MAX_URL_LENGTH
    assert s["SubscriptionIn"]["properties"]["secrets"]["maxItems"] == limits.MAX_SECRETS
    assert s["DeliveryIds"]["maxItems"] == limits.MAX_REPLAY_IDS
    assert s["EventsIn"]["properties"]["events"]["maxItems"] == limits.MAX_SET_EVENTS
    assert s["EventIdsIn"]["properties"]["events"]["maxItems"] == limits.MAX_SET_EVENTS
    assert s["Interval"]["maximum"] == 2_592_000 and s["Interval"]["minimum"] == 1
    priority = s["WatchSetIn"]["properties"]["priority"]
    assert (priority["minimum"], priority["maximum"]) == (-1000, 1000)
    for key in ("watch_sets", "event_ids", "fields", "from", "to"):
        assert s["Filter"]["properties"][key]["maxItems"] == 1000
    page = doc["paths"]["/v1/watch-sets/{name}"]["get"]["parameters"]
    assert {p["name"]: p["schema"]["maximum"] for p in page}["limit"] == limits.MAX_PAGE


@pytest.mark.parametrize(
    ("name", "value", "valid"),
    [
        ("WebhookUrl", "https://hooks.example.com:8443/in?x=1", True),
        ("WebhookUrl", "http://10.1.2.3/x", True),
        ("WebhookUrl", "http://0/", False),
        ("WebhookUrl", "http://user:pw@example.com/", False),
        ("WebhookUrl", "ftp://example.com/", False),
        ("WebhookUrl", "http://[::1]/", False),
        ("WebhookUrl", "http://example.com:70000/", False),
        ("WebhookUrl", "http://example.com/" + "a" * 2100, False),
        ("WebhookSecret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", True),
        ("WebhookSecret", "whsec_MfKQ9r8GKYqrTwjU", False),
        ("WebhookSecret", "level", False),
        ("Name", "a" * 64, True),
        ("Name", "a" * 65, False),
        ("EventIdString", "x*", False),
    ],
)
def test_value_forms_of_the_document(doc, name, value, valid):
    assert (schema_validator(doc, name).is_valid(value)) is valid

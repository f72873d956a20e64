"""Log redaction: values at secret keys, secrets by their form, and the running config's secrets.

The set of values searched for is bounded, holds only the secrets of objects that exist, and
never grows from a request the API rejected.
"""

from __future__ import annotations

import io
import secrets as pysecrets

import aiohttp
import orjson
import pytest

from monitor.logs import MASK, get_logger, redact
from monitor.secrets import PROCESS_SECRETS, Secret, SecretValues, scannable
from tests.conftest import make_config

TOKEN = "adm1n-t0ken-redaction"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("GET /x?apikey=abc123&size=1", f"GET /x?apikey={MASK}&size=1"),
        ('{"secret": "level", "level": "info"}', f'{{"secret": "{MASK}", "level": "info"}}'),
        ("admin_token: info", f"admin_token: {MASK}"),
        ('{"api_token":"t0k"}', f'{{"api_token":"{MASK}"}}'),
        ("Authorization: Bearer abc.def-ghi", f"Authorization: Bearer {MASK}"),
        ("signing with whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw=", f"signing with {MASK}"),
        ("postgresql://mon:pa55word@db:5432/x", f"postgresql://mon:{MASK}@db:5432/x"),
        ("http://host:8080/path@x", "http://host:8080/path@x"),
        ("missing or wrong bearer token", "missing or wrong bearer token"),
        ('{"token_expires_at": 5, "tokens": 3}', '{"token_expires_at": 5, "tokens": 3}'),
    ],
)
def test_masked_by_key_and_by_form(text, expected):
    assert redact(text, values=SecretValues()) == expected


def test_short_values_and_words_are_not_searched_for():
    values = SecretValues()
    values.set("cfg", [Secret("info"), Secret("timestamp"), Secret("level"), Secret("k-123456")])
    assert values.values() == {"k-123456"}
    line = '{"level":"info","timestamp":"2026-01-01","key":"k-123456"}'
    assert (
        redact(line, values=values) == f'{{"level":"info","timestamp":"2026-01-01","key":"{MASK}"}}'
    )
    assert not scannable("x" * 2000) and not scannable("password") and scannable("passw0rd")


def test_values_are_bounded_and_go_with_their_owner():
    values = SecretValues(limit=50)
    for i in range(500):
        values.set(f"owner-{i}", [Secret(f"s3cret-value-{i:04d}")])
    assert len(values.values()) == 50
    values.set("owner-0", [])
    values.drop("owner-1")
    assert "s3cret-value-0000" not in values.values()
    assert "s3cret-value-0001" not in values.values()
    for i in range(500):
        values.drop(f"owner-{i}")
    assert values.values() == frozenset() and values.pattern() is None


def test_creating_a_secret_registers_nothing():
    before = PROCESS_SECRETS.values()
    Secret("zz-n0t-registered-anywhere")
    assert PROCESS_SECRETS.values() == before


async def _daemon(sim, tmp_path, start_daemon, admin_token: str):
    cfg = make_config(sim.url, tmp_path / "s.db", "watch_sets:\n  - {name: main, events: [RED1]}\n")
    server = cfg.server.model_copy(update={"admin_token": Secret(admin_token)})
    return await start_daemon(cfg.model_copy(update={"server": server}))


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [orjson.loads(x) for x in stream.getvalue().splitlines() if x.startswith("{")]


async def test_a_rejected_secret_never_masks_later_lines(sim, tmp_path, start_daemon, log_stream):
    d = await _daemon(sim, tmp_path, start_daemon, TOKEN)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        for word in ("level", "timestamp", "info", "event"):
            body = {"name": "x", "url": "http://8.8.8.8/x", "secret": word}
            async with s.post(d.url + "/v1/subscriptions", json=body) as r:
                assert r.status == 400
    get_logger("test").info("after the rejected bodies", detail="plain words")
    last = _lines(log_stream)[-1]
    assert last["event"] == "after the rejected bodies"
    assert last["level"] == "info" and last["detail"] == "plain words"
    assert MASK not in log_stream.getvalue().splitlines()[-1]


async def test_a_word_as_admin_token_is_masked_by_key_only(sim, tmp_path, start_daemon, log_stream):
    d = await _daemon(sim, tmp_path, start_daemon, "info")
    await d.scheduler.run_once()
    get_logger("test").info("a line", admin_token="info")
    last = log_stream.getvalue().splitlines()[-1]
    assert '"level":"info"' in last and f'"admin_token":"{MASK}"' in last


async def test_the_running_config_secrets_are_searched_for_until_it_stops(
    sim, tmp_path, start_daemon
):
    d = await _daemon(sim, tmp_path, start_daemon, TOKEN)
    assert TOKEN in PROCESS_SECRETS.values()
    assert redact(f"echo {TOKEN} back") == f"echo {MASK} back"
    await d.stop()
    assert TOKEN not in PROCESS_SECRETS.values()


async def test_many_rejected_big_secrets_leave_nothing_behind(sim, tmp_path, start_daemon):
    d = await _daemon(sim, tmp_path, start_daemon, TOKEN)
    before = PROCESS_SECRETS.values()
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        for _ in range(300):
            secret = pysecrets.token_urlsafe(3000)  # 4 KB, not a webhook secret: rejected
            body = {"name": "x", "url": "http://8.8.8.8/x", "secret": secret}
            async with s.post(d.url + "/v1/subscriptions", json=body) as r:
                assert r.status == 400
                assert secret not in await r.text()
    assert PROCESS_SECRETS.values() == before


async def test_no_secret_in_any_log_metric_or_v1_answer(sim, tmp_path, start_daemon, log_stream):
    from monitor.notify.signing import new_secret
    from tests.conftest import API_KEY

    hook, rotated_a, rotated_b = (new_secret().reveal() for _ in range(3))
    market = "mkt-t0ken-n0where-to-be-seen"
    body = (
        "watch_sets:\n  - {name: main, events: [SEC1, SEC2]}\n"
        f"notifications:\n  webhooks: [{{name: ops, url: 'http://127.0.0.1:9/x', secret: '{hook}'}}]\n"
        f"marketplace: {{base_url: 'http://127.0.0.1:9', api_token: {market}}}\n"
        "actions:\n  - {name: hold, listings: {SEC1: [1]}, update: {price: '1.00'}}\n"
    )
    cfg = make_config(sim.url, tmp_path / "s.db", body)
    server = cfg.server.model_copy(update={"admin_token": Secret(TOKEN)})
    d = await start_daemon(cfg.model_copy(update={"server": server}))
    secrets = [API_KEY, TOKEN, hook, rotated_a, rotated_b, market]
    answers: list[str] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=headers) as s:
        made = {"name": "desk", "url": "http://8.8.8.8/x", "secrets": [rotated_a, rotated_b]}
        async with s.post(d.url + "/v1/subscriptions", json=made) as r:
            assert r.status == 201
            answers.append(await r.text())
        async with s.post(
            d.url + "/v1/subscriptions", json={"name": "gen", "url": "http://8.8.8.8/y"}
        ) as r:
            generated = (await r.json())["secret"]  # shown once, here, by design
        refused = {"name": "bad", "url": "http://8.8.8.8/x", "secrets": [rotated_a, "nope"]}
        async with s.post(d.url + "/v1/subscriptions", json=refused) as r:
            assert r.status == 400
            answers.append(await r.text())
        await d.scheduler.run_once()
        sim.world.set_status("SEC1", status="FEW_TICKETS_LEFT")
        await d.scheduler.run_once()
        for path in (
            "/metrics", "/healthz", "/readyz", "/v1/subscriptions", "/v1/subscriptions/desk",
            "/v1/subscriptions/gen", "/v1/subscriptions/ops/dead-letters", "/v1/watch-sets",
            "/v1/watch-sets/main", "/v1/actions", "/v1/events/SEC1", "/v1/transitions",
        ):  # fmt: skip
            async with s.get(d.url + path) as r:
                assert r.status == 200, path
                answers.append(await r.text())
    await d.stop()
    logs = log_stream.getvalue()
    for value in [*secrets, generated]:
        for text in [*answers, logs]:
            assert value not in text

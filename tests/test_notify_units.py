"""Pure units of the notification path: filters, signatures, payloads, retry delays, SSRF rules."""

from __future__ import annotations

import base64
import time

import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from monitor.config.models import Filter
from monitor.core.filters import TransitionFilter
from monitor.domain import Transition
from monitor.notify import payload
from monitor.notify.outbox import next_delay
from monitor.notify.signing import new_secret, secret_key, sign
from monitor.notify.ssrf import BlockedAddress, address_refusal, check_url, check_url_syntax
from monitor.notify.subscriptions import Subscription
from monitor.secrets import Secret

AV, FEW, NA, UNK = "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE", "UNKNOWN"

T = Transition(
    sequence=42,
    event_id="17AOv8G6G5rI0S0",
    watch_sets=("seattle", "west"),
    field="status",
    previous=AV,
    current=FEW,
    observed_at=1_764_000_000.123,
)


# -- filters -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        ({}, True),  # empty = any
        ({"watch_sets": []}, True),
        # watch_sets: the transition's sets must intersect the filter's
        ({"watch_sets": ["seattle"]}, True),
        ({"watch_sets": ["west"]}, True),
        ({"watch_sets": ["east", "west"]}, True),
        ({"watch_sets": ["east"]}, False),
        ({"watch_sets": ["seattle", "west", "east"]}, True),
        ({"event_ids": ["17AOv8G6G5rI0S0"]}, True),
        ({"event_ids": ["other", "17AOv8G6G5rI0S0"]}, True),
        ({"event_ids": ["other"]}, False),
        ({"fields": ["status"]}, True),
        ({"fields": ["resale_status"]}, False),
        ({"fields": ["status", "resale_status"]}, True),
        ({"from_": [AV]}, True),
        ({"from_": [FEW, NA]}, False),
        ({"to": [FEW]}, True),
        ({"to": [NA, UNK]}, False),
        ({"to": [AV]}, False),  # `to` looks at current, not previous
        ({"from_": [FEW]}, False),  # `from` looks at previous, not current
        # combined: every given criterion must hold
        ({"watch_sets": ["west"], "fields": ["status"], "from_": [AV], "to": [FEW]}, True),
        ({"watch_sets": ["west"], "fields": ["status"], "from_": [AV], "to": [NA]}, False),
        ({"watch_sets": ["east"], "fields": ["status"], "to": [FEW]}, False),
        ({"event_ids": ["17AOv8G6G5rI0S0"], "fields": ["resale_status"]}, False),
        ({"event_ids": ["17AOv8G6G5rI0S0"], "from_": [AV, UNK], "to": [FEW, NA]}, True),
    ],
)
def test_filter_table(criteria, expected):
    assert TransitionFilter.of(**criteria).matches(T) is expected


def test_filter_accepts_any_collection():
    f = TransitionFilter.of(watch_sets=("seattle",), to={FEW}, fields=iter(["status"]))
    assert f.matches(T)
    assert f == TransitionFilter(frozenset({"seattle"}), frozenset(), frozenset({"status"}),
                                 frozenset(), frozenset({FEW}))  # fmt: skip


def test_filter_with_no_watch_sets_on_the_transition():
    lonely = Transition(1, "X", (), "status", AV, FEW, 0.0)
    assert TransitionFilter.of().matches(lonely)
    assert not TransitionFilter.of(watch_sets=["seattle"]).matches(lonely)


def test_config_filter_becomes_the_matcher():
    """The `from` key of the config/API filter reaches the matcher as `from_`."""
    flt = Filter.model_validate({"watch_sets": ["west"], "from": [AV], "to": [FEW]})
    sub = Subscription(name="s", url="https://example.com/", secrets=(), filter=flt)
    assert sub.matcher.matches(T)
    other = Filter.model_validate({"from": [FEW]})
    assert not Subscription(
        name="s", url="https://x.example/", secrets=(), filter=other
    ).matcher.matches(T)


# -- signing -----------------------------------------------------------------------------------


def headers_for(msg_id: str, timestamp: int, signature: str) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def test_signature_verifies_with_the_reference_package():
    secret = new_secret()
    body = payload.standard_body(T, 1_764_000_000.2)
    now = int(time.time())
    signature = sign("msg_1", now, body, [secret])
    assert signature.startswith("v1,") and " " not in signature
    parsed = Webhook(secret.reveal()).verify(body, headers_for("msg_1", now, signature))
    assert parsed == orjson.loads(body)


def test_signature_matches_the_reference_signer_exactly():
    from datetime import UTC, datetime

    secret = new_secret()
    body = b'{"a":"\xc3\xa9"}'  # non-ASCII: the bytes are signed as sent
    ts = 1_764_000_123
    expected = Webhook(secret.reveal()).sign(
        "msg_x", datetime.fromtimestamp(ts, UTC), body.decode()
    )
    assert sign("msg_x", ts, body, [secret]) == expected


def test_each_secret_alone_verifies_during_rotation():
    old, new = new_secret(), new_secret()
    body = payload.standard_body(T, 1_764_000_000.2)
    now = int(time.time())
    signature = sign("msg_2", now, body, [old, new])
    assert len(signature.split(" ")) == 2
    assert all(part.startswith("v1,") for part in signature.split(" "))
    for secret in (old, new):
        Webhook(secret.reveal()).verify(body, headers_for("msg_2", now, signature))
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret().reveal()).verify(body, headers_for("msg_2", now, signature))


@pytest.mark.parametrize(
    ("msg_id", "ts_delta", "body"),
    [
        ("msg_other", 0, None),  # a different id
        ("msg_3", 1, None),  # a different timestamp
        ("msg_3", 0, b'{"type":"tampered"}'),  # a different body
    ],
)
def test_signature_binds_id_timestamp_and_body(msg_id, ts_delta, body):
    secret = new_secret()
    original = payload.standard_body(T, 1_764_000_000.2)
    now = int(time.time())
    signature = sign("msg_3", now, original, [secret])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret.reveal()).verify(
            body or original, headers_for(msg_id, now + ts_delta, signature)
        )


def test_new_secret_shape():
    seen = set()
    for _ in range(20):
        secret = new_secret()
        text = secret.reveal()
        assert text.startswith("whsec_")
        raw = base64.b64decode(text[len("whsec_") :], validate=True)
        assert len(raw) == 32
        assert secret_key(secret) == raw
        seen.add(text)
    assert len(seen) == 20
    assert "whsec_" not in repr(new_secret()) and "whsec_" not in str(new_secret())


def test_secret_key_without_prefix():
    raw = bytes(range(32))
    assert secret_key(Secret(base64.b64encode(raw).decode())) == raw


# -- payloads ----------------------------------------------------------------------------------

CREATED = 1_764_000_000.2


def test_standard_payload():
    body, content_type = payload.build("standard", T, CREATED, "msg_9")
    assert content_type == "application/json"
    data = orjson.loads(body)
    assert data == {
        "type": "availability.changed",
        "timestamp": "2025-11-24T16:00:00.200Z",
        "data": T.to_json(),
    }
    assert data["data"]["observed_at"] == "2025-11-24T16:00:00.123Z"


def test_cloudevents_payload():
    body, content_type = payload.build("cloudevents", T, CREATED, "msg_9")
    assert content_type == "application/cloudevents+json"
    data = orjson.loads(body)
    for attribute in ("specversion", "id", "source", "type"):
        assert isinstance(data[attribute], str) and data[attribute], attribute
    assert data["specversion"] == "1.0"
    assert data["id"] == "msg_9"
    assert data["data"] == T.to_json()
    assert data["subject"] == T.event_id
    assert data["time"] == "2025-11-24T16:00:00.200Z"
    assert data["datacontenttype"] == "application/json"


@pytest.mark.parametrize("fmt", ["standard", "cloudevents"])
def test_payload_bytes_are_stable(fmt):
    first = payload.build(fmt, T, CREATED, "msg_1")
    again = payload.build(fmt, T, CREATED, "msg_1")
    copy = Transition(**{f: getattr(T, f) for f in T.__slots__})
    assert first == again == payload.build(fmt, copy, CREATED, "msg_1")


def test_payload_carries_extra_transition_fields():
    t = Transition(1, "E1", ("s",), "status", AV, NA, 0.0, extra={"name": "Show", "gone": None})
    data = orjson.loads(payload.build("standard", t, 0.0, "m")[0])["data"]
    assert data["name"] == "Show" and "gone" not in data


# -- retry delays ------------------------------------------------------------------------------

SCHEDULE = [0.0, 5.0, 300.0, 1800.0]


@pytest.mark.parametrize(
    ("attempts", "rand", "expected"),
    [
        (0, 0.0, 0.0),
        (0, 1.0, 0.0),
        (1, 0.0, 4.5),
        (1, 0.5, 5.0),
        (1, 1.0, 5.5),
        (2, 0.0, 270.0),
        (2, 1.0, 330.0),
        (3, 0.25, 1800.0 * 0.95),
        (4, 0.5, None),  # spent: four entries, four attempts
        (5, 0.5, None),
        (100, 0.0, None),
    ],
)
def test_next_delay(attempts, rand, expected):
    got = next_delay(SCHEDULE, attempts, rand)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize("attempts", range(len(SCHEDULE)))
def test_next_delay_jitter_bounds(attempts):
    base = SCHEDULE[attempts]
    for i in range(101):
        got = next_delay(SCHEDULE, attempts, i / 100)
        assert got is not None
        assert base * 0.9 - 1e-9 <= got <= base * 1.1 + 1e-9


def test_next_delay_single_entry_schedule():
    assert next_delay([2.0], 0, 0.5) == pytest.approx(2.0)
    assert next_delay([2.0], 1, 0.5) is None


# -- SSRF guard --------------------------------------------------------------------------------

ALWAYS = [
    "169.254.169.254",
    "169.254.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "fd00:ec2::254",
    "fe80::1",
    "fe80::1%eth0",
    "0.0.0.0",
    "::",
]
PRIVATE = [
    "127.0.0.1",
    "127.1.2.3",
    "10.1.2.3",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.1.1",
    "100.64.0.1",
    "::1",
    "fc00::1",
    "fd12:3456::1",
    "::ffff:10.1.2.3",
    "::ffff:127.0.0.1",
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "172.32.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", ALWAYS)
@pytest.mark.parametrize("deny_private", [False, True])
def test_always_refused(address, deny_private):
    assert address_refusal(address, deny_private) is not None


@pytest.mark.parametrize("address", PRIVATE)
def test_private_refused_only_when_denied(address):
    assert address_refusal(address, False) is None
    why = address_refusal(address, True)
    assert why is not None and "deny_private_networks" in why


@pytest.mark.parametrize("address", PUBLIC)
@pytest.mark.parametrize("deny_private", [False, True])
def test_public_allowed(address, deny_private):
    assert address_refusal(address, deny_private) is None


def test_not_an_address():
    assert "not an IP address" in (address_refusal("example.com", False) or "")


def url_for(address: str) -> str:
    return f"http://[{address}]:8080/hook" if ":" in address else f"http://{address}:8080/hook"


@pytest.mark.parametrize("address", [a for a in ALWAYS if "%" not in a])
def test_check_url_refuses_always_denied_literals(address):
    for deny in (False, True):
        with pytest.raises(BlockedAddress):
            check_url(url_for(address), deny)


@pytest.mark.parametrize("address", PRIVATE)
def test_check_url_private_literals(address):
    check_url(url_for(address), False)
    with pytest.raises(BlockedAddress):
        check_url(url_for(address), True)


@pytest.mark.parametrize("address", PUBLIC)
def test_check_url_public_literals(address):
    check_url(url_for(address), True)


def test_check_url_leaves_hostnames_to_connect_time():
    check_url("https://hooks.example.com/x", True)
    check_url("http://localhost:9000/", True)  # resolved and checked when connecting


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://example.com/",
        "javascript:alert(1)",
        "example.com/hook",
        "",
        "http:///hook",
        "https://",
        "http://user:pass@example.com/hook",
        "https://user@example.com/hook",
        "https://:secret@example.com/hook",
        "http://example.com:99999/hook",
        "http://[::1/hook",
    ],
)
def test_url_syntax_refused(url):
    with pytest.raises(ValueError):  # noqa: PT011 - every refusal is a plain ValueError
        check_url_syntax(url)
    with pytest.raises(ValueError):  # noqa: PT011
        check_url(url, False)


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "https://example.com/hook?x=1#frag",
        "HTTPS://Example.COM:8443/hook",
        "http://[2001:db8::1]:8080/",
        "http://8.8.8.8/",
    ],
)
def test_url_syntax_accepted(url):
    check_url_syntax(url)


def test_blocked_address_is_a_value_error():
    assert issubclass(BlockedAddress, ValueError)

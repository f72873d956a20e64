"""Webhook deliveries over real HTTP to real receivers on loopback: signed, retried, ordered."""

from __future__ import annotations

import asyncio
import time

import pytest
from standardwebhooks.webhooks import Webhook

from monitor.clock import ManualClock
from monitor.demo.receiver import Receiver
from monitor.notify.signing import new_secret
from tests.conftest import make_config

A, B, C = "WHKAAAAAAAAAAAA1", "WHKBBBBBBBBBBBB2", "WHKCCCCCCCCCCCC3"
SECRET = new_secret()
SECRET2 = new_secret()


def hooks(url: str, *subs: str, schedule: str = "[0, 1, 1, 1, 1, 1, 1, 1]") -> str:
    """Watch sets, and one webhook per `name[:format]` at url/name."""
    lines = [
        "watch_sets:",
        f"  - {{name: main, events: [{A}, {B}]}}",
        f"  - {{name: side, events: [{C}]}}",
        "notifications:",
        f"  retry_schedule: {schedule}",
        "  timeout_seconds: 2",
        "  webhooks:",
    ]
    for spec in subs:
        name, _, extra = spec.partition(" ")
        lines.append(
            f"    - {{name: {name}, url: '{url}/{name}', secret: '{SECRET.reveal()}'{extra}}}"
        )
    return "\n".join(lines) + "\n"


@pytest.fixture
async def receiver():
    r = Receiver()
    await r.start()
    yield r
    await r.stop()


def verify_with_reference(rec, secret=SECRET) -> None:
    Webhook(secret.reveal()).verify(rec.body, rec.headers)


async def advance(d, clock: ManualClock, seconds: float, rounds: int = 1) -> None:
    for _ in range(rounds):
        clock.advance(seconds)
        await d.outbox.drain()


async def test_a_transition_is_delivered_signed_per_the_standard(
    sim, tmp_path, start_daemon, receiver
):
    receiver.secrets["/ops"] = SECRET
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", hooks(receiver.url, "ops")))
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    await d.outbox.drain()
    [rec] = receiver.received
    assert rec.verified and rec.status == 200
    verify_with_reference(rec)
    assert rec.content_type == "application/json"
    body = rec.json
    assert body["type"] == "availability.changed" and body["timestamp"].endswith("Z")
    assert body["data"] == {
        "sequence": 1, "event_id": A, "watch_sets": ["main"], "field": "status",
        "previous": "TICKETS_AVAILABLE", "current": "FEW_TICKETS_LEFT",
        "observed_at": body["data"]["observed_at"],
    }  # fmt: skip
    assert rec.msg_id == d.store.delivery_id(1, "ops")
    assert await d.store.outbox_counts() == {}


async def test_500_three_times_then_200_is_retried_with_the_same_id_and_fresh_timestamps(
    sim, tmp_path, start_daemon, receiver
):
    receiver.secrets["/ops"] = SECRET
    receiver.respond = lambda r: 500 if r.attempt <= 3 else 200
    clock = ManualClock(wall=time.time())
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", hooks(receiver.url, "ops")), clock=clock
    )
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    await d.outbox.drain()
    await advance(d, clock, 2, rounds=4)
    got = receiver.received
    assert [r.status for r in got] == [500, 500, 500, 200]
    assert len({r.msg_id for r in got}) == 1
    stamps = [r.timestamp for r in got]
    assert stamps == sorted(stamps) and len(set(stamps)) == 4
    for rec in got:
        verify_with_reference(rec)
    assert (
        d.metrics.registry.get_sample_value(
            "availability_monitor_webhook_deliveries_total",
            {"subscription": "ops", "outcome": "failure"},
        )
        == 3
    )


async def test_a_receiver_down_for_a_while_gets_everything_in_order(sim, tmp_path, start_daemon):
    probe = Receiver()
    await probe.start()
    port = int(probe.url.rsplit(":", 1)[1])
    await probe.stop()  # down: connections refused
    clock = ManualClock(wall=time.time())
    url = f"http://127.0.0.1:{port}"
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", hooks(url, "ops")), clock=clock)
    await d.scheduler.run_once()
    for status in ("FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE", "TICKETS_AVAILABLE"):
        sim.world.set_status(A, status=status)
        sim.world.set_status(B, resale_status=status if status != "FEW_TICKETS_LEFT" else None)
        await d.scheduler.run_once()
        await d.outbox.drain()
        clock.advance(1)
    assert (await d.store.outbox_counts())["ops"][0] == 5
    back = Receiver(secrets={"/ops": SECRET})
    await back.start(port)
    try:
        await advance(d, clock, 2, rounds=6)
        seqs_a = [r.transition["sequence"] for r in back.ok() if r.transition["event_id"] == A]
        seqs_b = [r.transition["sequence"] for r in back.ok() if r.transition["event_id"] == B]
        assert len(seqs_a) == 3 and seqs_a == sorted(seqs_a)
        assert len(seqs_b) == 2 and seqs_b == sorted(seqs_b)
        assert all(r.verified for r in back.received)
    finally:
        await back.stop()


async def test_410_gone_disables_the_subscription(sim, tmp_path, start_daemon, receiver):
    receiver.respond = lambda r: 410
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", hooks(receiver.url, "ops")))
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    await d.outbox.drain()
    assert d.subscriptions.get("ops").enabled is False
    assert (
        d.metrics.registry.get_sample_value(
            "availability_monitor_webhook_subscription_enabled", {"subscription": "ops"}
        )
        == 0
    )
    sim.world.set_status(A, status="TICKETS_NOT_AVAILABLE")
    await d.scheduler.run_once()
    await d.outbox.drain()
    assert len(receiver.received) == 1  # nothing more is sent, nothing more is queued for it


async def test_429_with_retry_after_is_waited_out(sim, tmp_path, start_daemon, receiver):
    receiver.respond = lambda r: (429, {"Retry-After": "30"}) if r.attempt == 1 else 200
    clock = ManualClock(wall=time.time())
    d = await start_daemon(
        make_config(
            sim.url, tmp_path / "s.db", hooks(receiver.url, "ops", schedule="[0, 0.01, 0.01]")
        ),
        clock=clock,
    )
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    await d.outbox.drain()
    await advance(d, clock, 20)
    assert [r.status for r in receiver.received] == [429]
    await advance(d, clock, 15)
    assert [r.status for r in receiver.received] == [429, 200]


async def test_a_redirect_is_not_followed(sim, tmp_path, start_daemon, receiver):
    receiver.respond = lambda r: (302, {"Location": "/elsewhere"}) if r.path == "/ops" else 200
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", hooks(receiver.url, "ops", schedule="[0, 100]"))
    )
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    await d.outbox.drain()
    assert [(r.path, r.status) for r in receiver.received] == [("/ops", 302)]
    assert (await d.store.outbox_counts())["ops"] == (1, 0)


async def test_the_schedule_spent_makes_a_dead_letter_that_can_be_replayed(
    sim, tmp_path, start_daemon, receiver
):
    receiver.respond = lambda r: 500
    clock = ManualClock(wall=time.time())
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", hooks(receiver.url, "ops", schedule="[0, 1, 1]")),
        clock=clock,
    )
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    await d.outbox.drain()
    await advance(d, clock, 2, rounds=3)
    assert len(receiver.received) == 3
    [dead] = await d.store.dead_letters("ops", 10)
    assert (
        dead.id == d.store.delivery_id(1, "ops")
        and dead.attempts == 3
        and "HTTP 500" in dead.last_error
    )
    assert (await d.store.outbox_counts())["ops"] == (0, 1)
    receiver.respond = lambda r: 200
    assert await d.store.replay("ops", clock.wall(), None, None) == 1
    await d.outbox.drain()
    assert receiver.received[-1].status == 200 and receiver.received[-1].msg_id == dead.id


async def test_filters_select_exactly_what_they_say(sim, tmp_path, start_daemon, receiver):
    filters = {
        "all": "{}",
        "side": "{watch_sets: [side]}",
        "ev": f"{{event_ids: [{B}]}}",
        "resale": "{fields: [resale_status]}",
        "sellout": "{to: [TICKETS_NOT_AVAILABLE], from: [FEW_TICKETS_LEFT]}",
    }
    body = hooks(receiver.url) + "".join(
        f"    - {{name: {n}, url: '{receiver.url}/{n}', secret: '{SECRET.reveal()}', filter: {f}}}\n"
        for n, f in filters.items()
    )
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body))
    await d.scheduler.run_once()
    steps = [
        {A: ("FEW_TICKETS_LEFT", None), B: (None, "TICKETS_NOT_AVAILABLE")},
        {A: ("TICKETS_NOT_AVAILABLE", None), C: ("FEW_TICKETS_LEFT", None)},
        {B: ("FEW_TICKETS_LEFT", None), C: ("TICKETS_NOT_AVAILABLE", None)},
    ]
    for step in steps:
        for eid, (status, resale) in step.items():
            sim.world.set_status(eid, status=status, resale_status=resale)
        await d.scheduler.run_once()
    await d.outbox.drain()

    def got(path: str) -> set[tuple[str, str, str, str]]:
        return {
            (
                r.transition["event_id"],
                r.transition["field"],
                r.transition["previous"],
                r.transition["current"],
            )
            for r in receiver.ok(path)
        }

    everything = got("/all")
    assert len(everything) == 6
    assert got("/side") == {t for t in everything if t[0] == C}
    assert got("/ev") == {t for t in everything if t[0] == B}
    assert got("/resale") == {t for t in everything if t[1] == "resale_status"}
    assert got("/sellout") == {
        t for t in everything if t[2] == "FEW_TICKETS_LEFT" and t[3] == "TICKETS_NOT_AVAILABLE"
    }
    assert len(got("/sellout")) == 2


async def test_cloudevents_format_and_rotated_secrets(sim, tmp_path, start_daemon, receiver):
    body = hooks(receiver.url, "ce").replace(
        f"secret: '{SECRET.reveal()}'",
        f"secrets: ['{SECRET.reveal()}', '{SECRET2.reveal()}'], format: cloudevents",
    )
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body))
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    await d.outbox.drain()
    [rec] = receiver.received
    assert rec.content_type == "application/cloudevents+json"
    event = rec.json
    assert event["specversion"] == "1.0" and event["id"] == rec.msg_id
    assert event["data"]["current"] == "FEW_TICKETS_LEFT"
    assert len(rec.signature.split()) == 2
    verify_with_reference(rec, SECRET)
    verify_with_reference(rec, SECRET2)


async def test_a_slow_endpoint_delays_nobody_else(sim, tmp_path, start_daemon, receiver):
    async def respond(r):
        if r.path == "/slow":
            await asyncio.sleep(1.0)
        return 200

    receiver.respond = respond
    ids = [f"SLW{i:013d}" for i in range(6)]
    body = (
        "watch_sets:\n"
        f"  - {{name: main, events: [{', '.join(ids)}]}}\n"
        "notifications:\n  webhooks:\n"
        f"    - {{name: slow, url: '{receiver.url}/slow', secret: '{SECRET.reveal()}', max_in_flight: 1}}\n"
        f"    - {{name: fast, url: '{receiver.url}/fast', secret: '{SECRET.reveal()}'}}\n"
    )
    d = await start_daemon(make_config(sim.url, tmp_path / "s.db", body))
    await d.scheduler.run_once()
    for eid in ids:
        sim.world.set_status(eid, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await d.outbox.pump()
    while len(receiver.ok("/fast")) < 6 and loop.time() - started < 5:
        await asyncio.sleep(0.02)
    assert len(receiver.ok("/fast")) == 6
    assert loop.time() - started < 0.9  # before the slow endpoint answered even once
    await d.outbox.drain()
    assert len(receiver.ok("/slow")) == 6


async def test_deliveries_are_stored_with_their_transition(sim, tmp_path, start_daemon, receiver):
    receiver.respond = lambda r: 500
    d = await start_daemon(
        make_config(sim.url, tmp_path / "s.db", hooks(receiver.url, "ops", "two", schedule="[100]"))
    )
    await d.scheduler.run_once()
    sim.world.set_status(A, status="FEW_TICKETS_LEFT")
    await d.scheduler.run_once()
    # Before any attempt: the rows exist, written in the transition's transaction.
    assert await d.store.outbox_counts() == {"ops": (1, 0), "two": (1, 0)}

"""The outbox worker on a real SQLite store and a real receiver on loopback: the in-memory hand-off
keeps per-event order, and batched acknowledgements never lose a webhook."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.clock import Clock, ManualClock
from monitor.config.models import Webhook
from monitor.demo.receiver import Received, Receiver
from monitor.domain import Transition
from monitor.metrics import Metrics
from monitor.notify.outbox import OutboxWorker
from monitor.notify.signing import new_secret
from monitor.notify.subscriptions import Subscriptions
from monitor.notify.webhook import WebhookSender, make_session
from monitor.store.base import NewTransition
from monitor.store.sqlite import SQLiteStore

SECRET = new_secret()
STATUSES = ("TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE")


@dataclass
class Rig:
    """A store, one subscription `ops` at the receiver, and workers on them."""

    store: SQLiteStore
    receiver: Receiver
    clock: Clock
    workers: list[OutboxWorker]

    async def worker(
        self, *, schedule: Sequence[float] = (0, 1, 1), checked: bool = False, **kw: object
    ) -> OutboxWorker:
        """A worker; `checked`: its lanes compared with the store once (a pump has run), so
        fresh deliveries are handed over without a store read."""
        subs = Subscriptions(self.store)
        await subs.load([Webhook(name="ops", url=f"{self.receiver.url}/ops", secret=SECRET)])
        session = make_session(deny_private=False)
        w = OutboxWorker(
            store=self.store,
            subscriptions=subs,
            sender=WebhookSender(session=session, clock=self.clock),
            metrics=Metrics(),
            schedule=schedule,
            clock=self.clock,
            **kw,  # type: ignore[arg-type]
        )
        w.session = session  # type: ignore[attr-defined]
        self.workers.append(w)
        if checked:
            await w.pump()
        return w

    async def record(
        self, w: OutboxWorker, *changes: tuple[str, int], hand_over: bool = True
    ) -> list[Transition]:
        """Store one batch the way the processor does: transitions with their outbox rows,
        then (unless a crash comes in between) hand them over."""
        new = [
            NewTransition(eid, "status", STATUSES[n % 3], STATUSES[(n + 1) % 3], ("main",), 1.0)
            for eid, n in changes
        ]
        at = self.clock.wall() + w.first_delay
        routes = w.route_all(new)
        stored = await self.store.record({}, new, 1.0, routes, at)
        if hand_over:
            w.stored(stored, routes, at)
        return stored


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    receiver = Receiver(secrets={"/ops": SECRET})
    await receiver.start()
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    r = Rig(store, receiver, ManualClock(wall=time.time()), [])
    yield r
    for w in r.workers:
        await w.stop(1.0)
        await w.session.close()  # type: ignore[attr-defined]
    await receiver.stop()
    await store.close()


def sequences(got: list[Received], event: str) -> list[int]:
    return [r.transition["sequence"] for r in got if r.transition["event_id"] == event]


async def until(check: object, seconds: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not check() and loop.time() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("checked", [False, True], ids=["asks-the-store", "checked"])
async def test_fresh_deliveries_go_from_memory_in_order_per_event(rig: Rig, checked: bool) -> None:
    arrived: list[Received] = []
    rng = random.Random(7)

    async def respond(r: Received) -> int:
        arrived.append(r)
        await asyncio.sleep(rng.random() * 0.02)  # answers come back in any order
        return 200

    rig.receiver.respond = respond
    w = await rig.worker(checked=checked)  # never started: no pump loop, only the hand-off
    events = [f"EV{i:014d}" for i in range(20)]
    for n in range(5):
        await rig.record(w, *((e, n) for e in events))
    await until(lambda: len(arrived) >= 100)
    assert len({r.msg_id for r in arrived}) == 100 == len(arrived)
    for e in events:
        seqs = sequences(arrived, e)
        assert len(seqs) == 5 and seqs == sorted(seqs)
    assert all(r.verified for r in arrived)
    await w.drain()
    assert await rig.store.outbox_counts() == {}


async def test_an_earlier_row_left_in_the_store_goes_first(rig: Rig) -> None:
    w = await rig.worker()
    left = await rig.record(w, ("EV1", 0), hand_over=False)  # a crash came in between
    await rig.record(w, ("EV1", 1), ("EV2", 1))
    await until(lambda: len(rig.receiver.received) >= 1)
    await asyncio.sleep(0.05)
    # EV2 went at once; EV1's fresh row waits behind the older one, which only the store knows.
    assert [r.transition["event_id"] for r in rig.receiver.received] == ["EV2"]
    await w.drain()
    assert sequences(rig.receiver.ok(), "EV1") == [left[0].sequence, left[0].sequence + 1]
    assert await rig.store.outbox_counts() == {}


@pytest.mark.parametrize("checked", [False, True], ids=["asks-the-store", "checked"])
async def test_a_failure_holds_back_later_transitions_of_its_event(rig: Rig, checked: bool) -> None:
    assert isinstance(rig.clock, ManualClock)
    rig.receiver.respond = lambda r: (
        500 if r.attempt == 1 and r.transition["sequence"] == 1 else 200
    )
    w = await rig.worker()
    await rig.record(w, ("EV1", 0), ("EV2", 0))
    await w.drain()
    await rig.record(w, ("EV1", 1), ("EV2", 1))
    await w.drain()
    # EV1's first failed and waits for its retry; its second must not overtake it.
    assert sequences(rig.receiver.ok(), "EV1") == []
    assert sequences(rig.receiver.ok(), "EV2") == [2, 4]
    rig.clock.advance(2)
    await w.drain()
    assert sequences(rig.receiver.received, "EV1") == [1, 1, 3]
    assert [r.status for r in rig.receiver.received if r.transition["event_id"] == "EV1"] == [
        500,
        200,
        200,
    ]
    assert await rig.store.outbox_counts() == {}


@pytest.mark.parametrize("checked", [False, True], ids=["asks-the-store", "checked"])
async def test_a_crash_before_the_acknowledgement_sends_again_with_the_same_id(
    rig: Rig, checked: bool
) -> None:
    first = await rig.worker(
        ack_linger=3600.0, checked=checked
    )  # acknowledgements would wait an hour
    await rig.record(first, ("EV1", 0), ("EV2", 0))
    await until(lambda: len(rig.receiver.ok()) >= 2)
    assert await rig.store.outbox_counts() == {"ops": (2, 0)}  # sent, not yet acknowledged
    # The process dies here: its memory is gone, the store is what is left. The next one sends
    # both again, with the same webhook-ids: duplicates, never a loss.
    second = await rig.worker()
    await second.drain()
    ids = [r.msg_id for r in rig.receiver.ok()]
    assert sorted(ids[:2]) == sorted(ids[2:]) and len(ids) == 4
    assert await rig.store.outbox_counts() == {}


@pytest.mark.parametrize("checked", [False, True], ids=["asks-the-store", "checked"])
async def test_stop_writes_the_acknowledgements_still_waiting(rig: Rig, checked: bool) -> None:
    w = await rig.worker(ack_linger=3600.0, checked=checked)
    await rig.record(w, *((f"EV{i}", 0) for i in range(10)))
    await until(lambda: len(rig.receiver.ok()) >= 10)
    assert await rig.store.outbox_counts() == {"ops": (10, 0)}
    await w.stop(1.0)
    assert await rig.store.outbox_counts() == {}
    await rig.record(w, ("EV1", 1))  # stopped: left in the store
    await asyncio.sleep(0.05)
    assert len(rig.receiver.received) == 10


@pytest.mark.parametrize("checked", [False, True], ids=["asks-the-store", "checked"])
async def test_a_replayed_dead_letter_goes_before_later_ones_of_its_event(
    rig: Rig, checked: bool
) -> None:
    assert isinstance(rig.clock, ManualClock)
    rig.receiver.respond = lambda r: 500 if r.transition["sequence"] == 1 else 200
    w = await rig.worker(schedule=(0,), checked=checked)  # one attempt: a failure is a dead letter
    await rig.record(w, ("EV1", 0))
    await w.drain()
    assert len(await rig.store.dead_letters("ops", 10)) == 1
    rig.receiver.respond = lambda r: 200
    assert await rig.store.replay("ops", rig.clock.wall(), None, None) == 1
    w.wake()
    await rig.record(w, ("EV1", 1))
    await w.drain()
    assert sequences(rig.receiver.ok(), "EV1") == [1, 2]


@pytest.mark.parametrize("checked", [False, True], ids=["asks-the-store", "checked"])
async def test_many_in_flight_for_one_subscription_yet_one_per_event(
    rig: Rig, checked: bool
) -> None:
    in_flight: dict[str, int] = {}
    most = 0

    async def respond(r: Received) -> int:
        nonlocal most
        event = r.transition["event_id"]
        in_flight[event] = in_flight.get(event, 0) + 1
        assert in_flight[event] == 1, "two deliveries of one event at once"
        most = max(most, sum(in_flight.values()))
        await asyncio.sleep(0.01)
        in_flight[event] -= 1
        return 200

    rig.receiver.respond = respond
    w = await rig.worker(checked=checked)
    for n in range(3):
        await rig.record(w, *((f"EV{i:03d}", n) for i in range(40)))
    await until(lambda: len(rig.receiver.ok()) >= 120)
    assert len(rig.receiver.ok()) == 120
    assert most > 1


async def test_rows_left_by_a_restart_go_before_fresh_ones_of_their_event(rig: Rig) -> None:
    before = await rig.worker()
    left = await rig.record(before, ("EV1", 0), ("EV2", 0), hand_over=False)
    await before.stop(1.0)
    w = await rig.worker(checked=True)  # its first pump sees (and sends) what was left
    await rig.record(w, ("EV1", 1), ("EV3", 1))
    await w.drain()
    assert sequences(rig.receiver.ok(), "EV1") == [left[0].sequence, left[0].sequence + 2]
    assert len(rig.receiver.ok()) == 4
    assert await rig.store.outbox_counts() == {}

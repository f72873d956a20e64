"""The outbox's in-memory parts on their own: lanes (per-event order) and batched acknowledgements."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from monitor.domain import Transition
from monitor.notify.acks import AckWriter
from monitor.notify.lanes import Lane
from monitor.store.base import Delivery, PendingDelivery, delivery_id

FEW, NONE = "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE"


def d(seq: int, event: str, sub: str = "a", attempts: int = 0) -> Delivery:
    t = Transition(seq, event, ("main",), "status", FEW, NONE, 100.0, {})
    return Delivery(delivery_id("w", seq, sub), sub, t, attempts, 100.0, 100.0, "pending")


def row(x: Delivery) -> PendingDelivery:
    t = x.transition
    return PendingDelivery(x.id, x.subscription, t.event_id, t.sequence, x.attempts, 100.0, 100.0)


def fresh(
    lane: Lane, *ds: Delivery, earlier: Sequence[Delivery] = (), done: frozenset[str] = frozenset()
) -> bool:
    event = ds[0].transition.event_id
    return lane.take_fresh(event, [row(x) for x in (*earlier, *ds)], list(ds), done)


def drain_ready(lane: Lane) -> list[Delivery]:
    out = []
    while (x := lane.start_next()) is not None:
        out.append(x)
    return out


def test_only_the_earliest_delivery_of_an_event_is_started() -> None:
    lane = Lane("a", 100)
    e1, e2, e3, f1 = d(1, "E"), d(2, "E"), d(3, "E"), d(4, "F")
    assert fresh(lane, e1, e2)
    assert fresh(lane, f1)
    assert fresh(lane, e3, earlier=[e1, e2])  # the earlier ones are the lane's own
    assert drain_ready(lane) == [e1, f1]  # E's second waits for its first
    assert lane.in_flight == 2 and lane.held == 4
    assert not lane.finish(e1, delivered=True)
    assert drain_ready(lane) == [e2]
    assert not lane.finish(e2, delivered=True)
    assert not lane.finish(f1, delivered=True)
    assert drain_ready(lane) == [e3]
    lane.finish(e3, delivered=True)
    assert lane.idle() and lane.held == 0


def test_an_earlier_row_the_lane_does_not_know_leaves_the_event_to_the_store() -> None:
    lane = Lane("a", 100)
    old, new = d(1, "E", attempts=2), d(5, "E")
    assert not fresh(lane, new, earlier=[old])  # a retry waits in the store: it goes first
    assert lane.idle()
    # An earlier row already delivered (its acknowledgement not yet written) holds nothing back.
    assert fresh(lane, new, earlier=[old], done=frozenset({old.id}))
    assert drain_ready(lane) == [new]


def test_a_failed_attempt_hands_the_event_back_to_the_store() -> None:
    lane = Lane("a", 100)
    e1, e2 = d(1, "E"), d(2, "E")
    assert fresh(lane, e1, e2)
    assert drain_ready(lane) == [e1]
    assert lane.finish(e1, delivered=False)  # the pump must look: the store has both now
    assert lane.idle() and drain_ready(lane) == []
    # Later transitions of the event now find the failed one waiting: the store's.
    assert not fresh(lane, d(3, "E"), earlier=[e1, e2])


def test_rows_from_the_pump_one_per_event() -> None:
    lane = Lane("a", 100)
    r1, r2, g1 = d(1, "E", attempts=1), d(2, "E"), d(3, "G")
    assert lane.offer(r1, set(), limit=10)
    assert not lane.offer(r1, set(), limit=10)  # already held
    assert not lane.offer(r2, set(), limit=10)  # its event has one in the lane
    assert not lane.offer(g1, {g1.id}, limit=10)  # delivered, acknowledgement pending
    assert lane.offer(g1, set(), limit=10)
    assert lane.borrowed == 2
    assert not lane.offer(d(4, "H"), set(), limit=2)  # enough of the pump's rows held
    assert drain_ready(lane) == [r1, g1]
    assert not fresh(lane, d(5, "E"), earlier=[r1])  # the pump has E: it sends the rest
    assert lane.finish(r1, delivered=True)  # the store says what comes next
    assert "E" not in lane.events and lane.borrowed == 1


def test_a_row_the_lane_did_not_know_disowns_its_event() -> None:
    lane = Lane("a", 100)
    e2, e3 = d(2, "E"), d(3, "E")
    assert fresh(lane, e2, e3)
    assert drain_ready(lane) == [e2]
    replayed = d(1, "E", attempts=5)  # a dead letter made pending again
    assert not lane.offer(replayed, set(), limit=10)
    ev = lane.events["E"]
    assert not ev.owned and list(ev.items) == [e2]  # only the one in flight stays
    assert lane.finish(e2, delivered=True)
    assert lane.idle() and lane.borrowed == 0
    assert lane.offer(replayed, set(), limit=10)


def test_a_full_lane_leaves_new_work_in_the_store() -> None:
    lane = Lane("a", 3)
    assert fresh(lane, d(1, "E"), d(2, "E"))
    assert not fresh(lane, d(3, "F"), d(4, "F"))
    assert drain_ready(lane) == [d(1, "E")]
    # E cannot grow past the capacity either; from then on the store has E's whole picture.
    assert not fresh(lane, d(5, "E"), d(6, "E"), earlier=[d(1, "E"), d(2, "E")])
    assert list(lane.events["E"].items) == [d(1, "E")] and not lane.events["E"].owned


def test_a_disabled_target_keeps_only_what_is_in_flight() -> None:
    lane = Lane("a", 100)
    assert fresh(lane, d(1, "E"), d(2, "E"))
    assert fresh(lane, d(3, "F"))
    assert drain_ready(lane) == [d(1, "E"), d(3, "F")]
    lane.drop_waiting()
    assert lane.held == 2 and drain_ready(lane) == []  # E's second is the store's again
    assert lane.finish(d(1, "E"), delivered=True)
    assert lane.finish(d(3, "F"), delivered=False)
    assert lane.idle()


# -- acknowledgements --------------------------------------------------------------------------


class Book:
    """A fake writer target: records batches, can be told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.written: list[str] = []
        self.fail = 0
        self.gate: asyncio.Event | None = None

    async def write(self, ids: Sequence[str]) -> None:
        if self.gate is not None:
            await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        self.batches.append(list(ids))

    def done(self, ids: Sequence[str]) -> None:
        self.written += ids


async def test_acknowledgements_are_written_in_batches() -> None:
    book = Book()
    acks = AckWriter(book.write, book.done, linger=0.01)
    for n in range(50):
        acks.add(f"m{n}")
    assert len(acks) == 50
    await acks.flush()
    assert book.batches == [[f"m{n}" for n in range(50)]]
    assert book.written == [f"m{n}" for n in range(50)] and len(acks) == 0
    acks.add("later")
    for _ in range(200):
        if book.written[-1:] == ["later"]:
            break
        await asyncio.sleep(0.01)
    assert book.batches[-1] == ["later"]  # the background writer, unasked
    await acks.close(1.0)


async def test_a_failed_write_is_tried_again_and_nothing_counts_as_written_before() -> None:
    book = Book()
    book.fail = 1
    acks = AckWriter(book.write, book.done, linger=0.0, retry_seconds=0.01)
    acks.add("m1")
    assert not await acks.flush()
    assert book.written == [] and len(acks) == 1
    assert await acks.flush()
    assert book.written == ["m1"]
    await acks.close(1.0)


async def test_close_writes_what_is_left_within_its_bound() -> None:
    book = Book()
    acks = AckWriter(book.write, book.done, linger=60.0)
    acks.add("m1")
    await acks.close(1.0)
    assert book.written == ["m1"]
    acks.add("m2")  # after close: stays pending in the store, sent again after a restart
    assert len(acks) == 0

    stuck = Book()
    stuck.gate = asyncio.Event()  # a store that never answers
    acks = AckWriter(stuck.write, stuck.done, linger=60.0)
    acks.add("m3")
    await acks.close(0.05)  # returns although the write never finishes
    assert stuck.written == [] and len(acks) == 1


@pytest.mark.parametrize("linger", [0.0, 0.01])
async def test_ids_added_during_a_write_go_in_the_next(linger: float) -> None:
    book = Book()
    book.gate = asyncio.Event()
    acks = AckWriter(book.write, book.done, linger=linger)
    acks.add("m1")
    flushing = asyncio.create_task(acks.flush())
    await asyncio.sleep(0.02)
    acks.add("m2")
    book.gate.set()
    await flushing
    await acks.flush()
    assert [i for b in book.batches for i in b] == ["m1", "m2"]
    await acks.close(1.0)


def test_a_checked_lane_knows_which_events_need_a_look_at_the_store() -> None:
    lane = Lane("a", 100)
    assert not lane.knows_all("F")  # nothing checked yet: the store may hold anything
    epoch = lane.epoch
    assert fresh(lane, d(7, "G"))
    lane.checked(epoch, [row(d(1, "E", attempts=2)), row(d(7, "G"))], frozenset())
    assert lane.knows_all("F") and lane.knows_all("G")
    assert not lane.knows_all("E")  # a row the lane does not know waits in the store
    # Taken after a look at the store (nothing earlier left): the lane knows E again.
    assert fresh(lane, d(9, "E"), earlier=[])
    assert lane.knows_all("E")
    [g7, _e9] = drain_ready(lane)
    lane.finish(g7, delivered=False)  # its retry is in the store
    assert not lane.knows_all("G") and lane.knows_all("E")


def test_a_check_read_before_the_lane_was_made_unclean_counts_for_nothing() -> None:
    lane = Lane("a", 100)
    epoch = lane.epoch
    lane.unclean()  # say a replay happened while the check was reading
    lane.checked(epoch, [], frozenset())
    assert not lane.clean
    lane.checked(lane.epoch, [], frozenset())
    assert lane.clean
    assert fresh(lane, d(1, "E"))
    lane.drop_waiting()  # disabled, changed: unclean again
    assert not lane.knows_all("F")

"""One target's deliveries held in memory: per-event queues and a first-come ready line.

The outbox rows are the truth; a lane only holds copies of some of them so that they can be
sent without reading them back from the store. Per event it keeps the pending deliveries it
knows in sequence order, and only ever lets the earliest one be attempted. An event is `owned`
when the lane knows every pending row of it (checked against the store when the event is taken
on); then its later deliveries follow from memory as soon as the earlier one has had its 2xx.
An event that is not owned holds exactly one row, handed over by the store pump, and leaves the
lane after that attempt: the store, which knows the whole picture, says what comes next.

A lane is `clean` when every pending row of its target in the store is either known to it or
belongs to one of its `store_events` (events left to the store: a retry waits, the pump has
it, ...). Then a fresh delivery of any other event needs no look at the store at all: nothing
earlier of its event can be waiting. Anything that may put unknown rows in the store (a replay,
an enable, a config change, a failed hand-over) makes the lane unclean again until the outbox
has checked the store once more.

Pure bookkeeping, no I/O and no awaits: every method runs to completion inside one step of the
event loop, so the outbox's decisions made with it cannot interleave.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Container, Sequence
from dataclasses import dataclass, field

from monitor.store.base import Delivery, PendingDelivery


@dataclass(slots=True)
class EventQueue:
    """The deliveries of one event to one target that the lane knows, earliest first."""

    items: deque[Delivery] = field(default_factory=deque)
    owned: bool = True  # the lane knows every pending row of this event for its target
    busy: bool = False  # the head is being attempted

    def knows(self, did: str) -> bool:
        """Whether a delivery is among those held."""
        return any(d.id == did for d in self.items)


class Lane:
    """The in-memory queue of one outbox target. See the module's docstring."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity  # deliveries held at most; beyond, the store keeps them
        self.events: dict[str, EventQueue] = {}
        self.ready: deque[str] = deque()  # events whose head may start now, first come first
        self.in_flight = 0
        self.held = 0  # deliveries in all queues, heads in flight included
        self.borrowed = 0  # events the lane does not own (each holds one row of the pump's)
        self.clean = False
        self.store_events: set[str] = set()  # with `clean`: events that may have unknown rows
        self.epoch = 0  # counts the times the lane was made unclean (for checks under way)

    def __len__(self) -> int:
        return self.held

    def take_fresh(
        self,
        event_id: str,
        rows: Sequence[PendingDelivery],
        fresh: Sequence[Delivery],
        done: Container[str],
    ) -> bool:
        """Take on freshly stored deliveries of one event (`fresh`, in sequence order).

        `rows` are the event's pending rows in the store up to the newest fresh one; `done`
        holds IDs already delivered whose acknowledgement is not written yet. Returns False
        when the store must send them instead: an earlier row waits that the lane does not
        know (a retry, a replay, a leftover of a restart), the event is the store pump's, or
        the lane is full. Either way nothing is lost; the rows are in the store.
        """
        ev = self.events.get(event_id)
        if ev is not None and not ev.owned:
            return self._refuse(event_id)  # the store pump has this event: it sends the rest
        fresh_ids = {d.id for d in fresh}
        for row in rows:
            if row.id in fresh_ids or row.id in done:
                continue
            if ev is None or not ev.knows(row.id):
                return self._refuse(event_id)
        new = [d for d in fresh if d.id not in done and (ev is None or not ev.knows(d.id))]
        if not new:
            return True
        if self.held + len(new) > self.capacity:
            return self._refuse(event_id)  # from now on the store has the whole picture
        if ev is None:
            ev = self.events[event_id] = EventQueue()
            self.ready.append(event_id)
        elif ev.items and new[0].transition.sequence < ev.items[-1].transition.sequence:
            # Out of order (should not happen: hand-overs come in sequence order). Let the
            # store, which orders by sequence, send what is left of this event.
            return self._refuse(event_id)
        ev.items.extend(new)
        self.held += len(new)
        self.store_events.discard(event_id)
        return True

    def knows_all(self, event_id: str) -> bool:
        """Whether fresh deliveries of the event may be taken without asking the store."""
        return self.clean and event_id not in self.store_events

    def unclean(self) -> None:
        """The store may now hold rows the lane knows nothing about."""
        self.clean = False
        self.store_events.clear()
        self.epoch += 1

    def checked(self, epoch: int, rows: Sequence[PendingDelivery], done: Container[str]) -> None:
        """The store's pending rows of the target, read since `epoch`: clean again unless
        something made the lane unclean meanwhile. Rows the lane does not know mark their
        events as the store's."""
        if epoch != self.epoch:
            return
        for row in rows:
            ev = self.events.get(row.event_id)
            if row.id not in done and (ev is None or not ev.owned or not ev.knows(row.id)):
                self.store_events.add(row.event_id)
        self.clean = True

    def _refuse(self, event_id: str) -> bool:
        ev = self.events.get(event_id)
        if ev is not None and ev.owned:
            self.disown(event_id)
        self.store_events.add(event_id)
        return False

    def offer(self, delivery: Delivery, done: Container[str], limit: int) -> bool:
        """A due row from the store pump (the earliest pending of its event, as the store saw
        it). Queued unless the lane already holds it, holds something of its event, or holds
        `limit` rows of the pump already. Returns whether it was queued."""
        if delivery.id in done:
            return False
        event_id = delivery.transition.event_id
        ev = self.events.get(event_id)
        if ev is not None:
            if ev.owned and not ev.knows(delivery.id):
                # A row of the event the lane did not know (a replayed dead letter): the lane's
                # picture is incomplete, so the store takes the event over from here.
                self.disown(event_id)
            return False
        self.store_events.add(event_id)
        if self.held >= self.capacity or self.borrowed >= limit:
            return False
        self.events[event_id] = EventQueue(deque([delivery]), owned=False)
        self.ready.append(event_id)
        self.held += 1
        self.borrowed += 1
        return True

    def start_next(self) -> Delivery | None:
        """The head of the next ready event, now counted in flight; None when none is ready."""
        while self.ready:
            event_id = self.ready.popleft()
            ev = self.events.get(event_id)
            if ev is None or ev.busy or not ev.items:
                continue  # dropped or disowned meanwhile
            ev.busy = True
            self.in_flight += 1
            return ev.items[0]
        return None

    def finish(self, delivery: Delivery, delivered: bool) -> bool:
        """An attempt of `delivery` is over. Delivered: the event's next delivery becomes
        ready (if the lane owns the event). Not delivered: the event leaves the lane, as the
        store now holds when to try again. Returns whether the store pump should look again
        (something of an event the lane does not own may be due now)."""
        self.in_flight -= 1
        event_id = delivery.transition.event_id
        ev = self.events.get(event_id)
        if ev is None or not ev.items or ev.items[0].id != delivery.id:
            return True  # dropped meanwhile (disabled target): the store has it
        ev.busy = False
        if not delivered or not ev.owned:
            self._remove(event_id)
            self.store_events.add(event_id)  # a retry, or what comes next, is in the store
            return True
        ev.items.popleft()
        self.held -= 1
        if ev.items:
            self.ready.append(event_id)
        else:
            del self.events[event_id]
        return False

    def disown(self, event_id: str) -> None:
        """Leave the event to the store: keep only a head in flight, until its attempt ends."""
        ev = self.events.get(event_id)
        self.store_events.add(event_id)
        if ev is None:
            return
        if not ev.busy:
            self._remove(event_id)
            return
        if ev.owned:
            ev.owned = False
            self.borrowed += 1
        while len(ev.items) > 1:
            ev.items.pop()
            self.held -= 1

    def drop_waiting(self) -> None:
        """Forget everything not in flight (the target was disabled or removed)."""
        for event_id in list(self.events):
            self.disown(event_id)
        self.ready.clear()
        self.unclean()

    def idle(self) -> bool:
        """Nothing held and nothing in flight."""
        return not self.events and self.in_flight == 0

    def _remove(self, event_id: str) -> None:
        ev = self.events.pop(event_id)
        self.held -= len(ev.items)
        if not ev.owned:
            self.borrowed -= 1

"""The notifier interface: told about transitions after they are durable."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from monitor.domain import Transition
from monitor.store.base import Delivery


class Notifier(Protocol):
    """Receives transitions in sequence order, only after the store has made them durable.

    `notify` must return quickly: slow work (HTTP deliveries) belongs in the notifier's own
    tasks, fed from the store, so a slow receiver never holds up polling.
    """

    async def notify(self, transitions: Sequence[Transition]) -> None:
        """Hand over newly stored transitions."""
        ...


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one outbox attempt went.

    `outcome`: `success` (done), `failure` (retry on the schedule), `gone` (disable the
    target, keep the delivery), `dead` (no point retrying: a dead letter now), `refused` (the
    SSRF guard said no; retried like a failure). `result` is kept with a finished delivery
    when given (actions record what they did).
    """

    outcome: str
    status: int | None = None
    retry_after: float | None = None
    error: str = ""
    result: Mapping[str, Any] | None = None


class Target(Protocol):
    """Something the outbox delivers to: a webhook subscription or an action rule."""

    @property
    def name(self) -> str:
        """The outbox's subscription name for it."""
        ...

    @property
    def enabled(self) -> bool:
        """Disabled targets keep their deliveries but are not attempted."""
        ...

    @property
    def max_in_flight(self) -> int:
        """Concurrent attempts allowed."""
        ...

    async def attempt(self, delivery: Delivery) -> AttemptResult:
        """Try one delivery."""
        ...

"""The notifier interface: told about transitions after they are durable."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from monitor.domain import Transition


class Notifier(Protocol):
    """Receives transitions in sequence order, only after the store has made them durable.

    `notify` must return quickly: slow work (HTTP deliveries) belongs in the notifier's own
    tasks, fed from the store, so a slow receiver never holds up polling.
    """

    async def notify(self, transitions: Sequence[Transition]) -> None:
        """Hand over newly stored transitions."""
        ...

"""Does a transition match a subscription's (or an action's) filter? Pure and table-tested."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol


class TransitionLike(Protocol):
    """What a filter looks at (a stored Transition or one on its way into the store)."""

    @property
    def event_id(self) -> str: ...
    @property
    def watch_sets(self) -> Sequence[str]: ...
    @property
    def field(self) -> str: ...
    @property
    def previous(self) -> str: ...
    @property
    def current(self) -> str: ...


@dataclass(frozen=True, slots=True)
class TransitionFilter:
    """Empty collections mean "any". All given criteria must hold."""

    watch_sets: frozenset[str] = frozenset()
    event_ids: frozenset[str] = frozenset()
    fields: frozenset[str] = frozenset()
    from_: frozenset[str] = frozenset()
    to: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        watch_sets: Collection[str] = (),
        event_ids: Collection[str] = (),
        fields: Collection[str] = (),
        from_: Collection[str] = (),
        to: Collection[str] = (),
    ) -> TransitionFilter:
        """Build from any collections."""
        return cls(
            frozenset(watch_sets), frozenset(event_ids), frozenset(fields), frozenset(from_),
            frozenset(to),
        )  # fmt: skip

    def matches(self, t: TransitionLike) -> bool:
        """Whether `t` passes every criterion."""
        if self.watch_sets and self.watch_sets.isdisjoint(t.watch_sets):
            return False
        if self.event_ids and t.event_id not in self.event_ids:
            return False
        if self.fields and t.field not in self.fields:
            return False
        if self.from_ and t.previous not in self.from_:
            return False
        return not self.to or t.current in self.to

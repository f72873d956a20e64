"""Watched events as listed: ID strings, with an entry object only where an event gives more.

A watch set may list a million events, inline or in an `events_file`, nearly all of them a bare
ID. Keeping a model object per event would cost gigabytes, so a set's events are kept as a tuple
of ID strings (the strings the catalog then keys on) and a mapping from position to entry for the
few that give a venue, a time zone, a region or a Partner ID.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, overload

if TYPE_CHECKING:
    from monitor.config.models import EventEntry


class FileEntry(NamedTuple):
    """An event read from an `events_file` row, already checked by the same rules as
    EventEntry: a light record, because such files hold up to millions of rows."""

    id: str
    venue: str | None = None
    time_zone: str | None = None
    region: str | None = None
    partner_event_id: str | None = None

    def model_dump(self, exclude_none: bool = False, **_: Any) -> dict[str, Any]:
        """The same shape EventEntry.model_dump gives."""
        out = self._asdict()
        return {k: v for k, v in out.items() if v is not None} if exclude_none else out


class ListedEvents(Sequence["EventEntry | FileEntry"]):
    """A watch set's events: `listed` entries kept as objects, then one ID string per event in
    `file_ids` (inline bare IDs and an events file's rows, in order), with the entries that
    give more than an ID in `attributed` by their index in `file_ids`.

    A bare event is kept as its ID string alone (so a million IDs are a million strings, not
    two) and its FileEntry is made when it is looked at.
    """

    __slots__ = ("attributed", "file_ids", "listed")

    def __init__(
        self,
        listed: Sequence[EventEntry | FileEntry],
        file_ids: tuple[str, ...],
        attributed: Mapping[int, EventEntry | FileEntry],
    ) -> None:
        self.listed = tuple(listed)
        #: The ID of every file row, in file order.
        self.file_ids = file_ids
        #: The entries that give more than an ID, by their index in `file_ids`.
        self.attributed = attributed

    def extended(
        self, ids: tuple[str, ...], attributed: Mapping[int, EventEntry | FileEntry]
    ) -> ListedEvents:
        """These events followed by more (an events file's rows), `attributed` indexed in
        `ids`."""
        if not self.file_ids and not self.attributed:
            return ListedEvents(self.listed, ids, attributed)
        base = len(self.file_ids)
        merged = dict(self.attributed)
        merged.update((base + i, entry) for i, entry in attributed.items())
        return ListedEvents(self.listed, self.file_ids + ids, merged)

    def __len__(self) -> int:
        return len(self.listed) + len(self.file_ids)

    @overload
    def __getitem__(self, index: int) -> EventEntry | FileEntry: ...

    @overload
    def __getitem__(self, index: slice) -> list[EventEntry | FileEntry]: ...

    def __getitem__(self, index: int | slice) -> EventEntry | FileEntry | list[Any]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("event index out of range")
        if index < len(self.listed):
            return self.listed[index]
        row = index - len(self.listed)
        entry = self.attributed.get(row)
        return entry if entry is not None else FileEntry(self.file_ids[row])

    def __iter__(self) -> Iterator[EventEntry | FileEntry]:
        yield from self.listed
        attributed = self.attributed
        for row, eid in enumerate(self.file_ids):
            entry = attributed.get(row)
            yield entry if entry is not None else FileEntry(eid)

    def with_attributes(self) -> Iterator[tuple[int, EventEntry | FileEntry]]:
        """(index, entry) of the entries that may give more than an ID, in order: the listed
        ones and those with attributes (a bare ID never has any)."""
        yield from enumerate(self.listed)
        base = len(self.listed)
        for row in sorted(self.attributed):
            yield base + row, self.attributed[row]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ListedEvents):
            return (self.listed, self.file_ids, dict(self.attributed)) == (
                other.listed,
                other.file_ids,
                dict(other.attributed),
            )
        if isinstance(other, list | tuple):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal by content, like a list

    def __repr__(self) -> str:
        return (
            f"ListedEvents({len(self.listed)} listed, {len(self.file_ids)} from a file, "
            f"{len(self.attributed)} with attributes)"
        )

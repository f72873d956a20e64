"""From a validated config to what the daemon polls: a profile per kind of event, a spec per set.

A million watched events must cost little more than their ID strings. So the catalog keeps one
dict entry per event, ID -> Profile, and events in the same watch sets with the same attributes
share one Profile object (the plain events of one set all share one). `Catalog.events` and
`Catalog.rules` are read-only views over that dict which make an EventSpec (or give the Rules)
on access.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import InitVar, dataclass, field, replace
from datetime import time
from typing import NamedTuple, TypeVar, overload
from zoneinfo import ZoneInfo

from monitor.config.errors import ConfigIssue
from monitor.config.event_files import FileEntry, ListedEvents
from monitor.config.models import Config, EventEntry, Venue, WatchSet
from monitor.core.budget import QuotaPlan, SetDemand, plan_quota
from monitor.core.maintenance import Window
from monitor.core.request_size import planned_ids_per_request
from monitor.core.transitions import Rules

T = TypeVar("T")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class Zone:
    """A time zone with the maintenance window that applies in it."""

    name: str
    tz: ZoneInfo
    window: Window


class Profile(NamedTuple):
    """Everything the catalog knows of an event but its ID: shared by every event in the same
    watch sets with the same attributes. `zone` indexes `Catalog.zones`; -1 when no time zone
    is known."""

    region: str | None
    zone: int
    venue: str | None
    watch_sets: tuple[str, ...]
    rules: Rules
    partner_id: str | None = None
    zone_source: str | None = None  # "config", "partner" or None (unknown)


class EventSpec(NamedTuple):
    """One watched event: its ID and its profile's fields. `zone` indexes `Catalog.zones`; -1
    when no time zone is known."""

    event_id: str
    region: str | None
    zone: int
    venue: str | None
    watch_sets: tuple[str, ...]
    rules: Rules
    partner_id: str | None = None
    zone_source: str | None = None  # "config", "partner" or None (unknown)

    @property
    def partner_event_id(self) -> str:
        """The ID to ask the Partner API with (the inventory ID unless configured)."""
        return self.partner_id or self.event_id


class _ProfilesView(Mapping[str, V]):
    """A read-only mapping over the catalog's profiles dict: the keys are its keys."""

    __slots__ = ("_profiles",)

    def __init__(self, profiles: dict[str, Profile]) -> None:
        self._profiles = profiles

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._profiles

    def __iter__(self) -> Iterator[str]:
        return iter(self._profiles)

    def __len__(self) -> int:
        return len(self._profiles)


class EventsView(_ProfilesView[EventSpec]):
    """Every watched event by ID, as an EventSpec made on access from the event's profile.

    Nothing is kept per event beyond the profiles dict; loops over many events that need only
    a field or two are cheaper on `Catalog.profiles` directly.
    """

    __slots__ = ()

    def __getitem__(self, event_id: str) -> EventSpec:
        # tuple.__new__ skips the NamedTuple's Python-level __new__: this runs per access.
        return tuple.__new__(EventSpec, (event_id, *self._profiles[event_id]))

    @overload
    def get(self, event_id: str, /) -> EventSpec | None: ...

    @overload
    def get(self, event_id: str, /, default: EventSpec | T) -> EventSpec | T: ...

    def get(self, event_id: str, /, default: object = None) -> object:
        """The event's spec, or `default` when it is not watched."""
        profile = self._profiles.get(event_id)
        return default if profile is None else tuple.__new__(EventSpec, (event_id, *profile))


class RulesView(_ProfilesView[Rules]):
    """Every watched event's transition rules by ID (its profile's)."""

    __slots__ = ()

    def __getitem__(self, event_id: str) -> Rules:
        return self._profiles[event_id].rules

    @overload
    def get(self, event_id: str, /) -> Rules | None: ...

    @overload
    def get(self, event_id: str, /, default: Rules | T) -> Rules | T: ...

    def get(self, event_id: str, /, default: object = None) -> object:
        """The event's rules, or `default` when it is not watched."""
        profile = self._profiles.get(event_id)
        return default if profile is None else profile.rules


@dataclass(frozen=True, slots=True)
class SetSpec:
    """One watch set: its name, interval (after quota planning), rules and events."""

    name: str
    interval_seconds: float
    confirm_after: int
    track_unknown: bool
    event_ids: tuple[str, ...]
    configured_interval: float = 0.0
    priority: int = 0
    status_intervals: Mapping[str, float] = field(default_factory=dict)

    @property
    def tick_seconds(self) -> float:
        """How often the set's job runs: its fastest interval."""
        return min([self.interval_seconds, *self.status_intervals.values()])

    def interval_for(self, status: str | None) -> float:
        """The interval for an event with this confirmed status."""
        if status is None:
            return self.interval_seconds
        return self.status_intervals.get(status, self.interval_seconds)


@dataclass(slots=True)
class Catalog:
    """Everything watched: events (each once, with every set that holds it), sets and zones.

    `profiles` is the one per-event structure; `events` and `rules` are views over it. Every
    profile in it is one the catalog shares (`share`): write new ones through `share`.
    """

    profiles: dict[str, Profile] = field(default_factory=dict)
    sets: dict[str, SetSpec] = field(default_factory=dict)
    zones: list[Zone] = field(default_factory=list)
    plan: QuotaPlan | None = None
    venues: dict[str, Venue] = field(default_factory=dict)
    default_window: Window | None = None
    #: The distinct profiles in `profiles`, when the caller knows them (build_catalog does).
    shared: InitVar[Iterable[Profile] | None] = None
    events: EventsView = field(init=False, repr=False, compare=False)
    rules: RulesView = field(init=False, repr=False, compare=False)
    # One object per distinct profile: events that agree share it.
    _shared: dict[Profile, Profile] = field(init=False, repr=False, compare=False)

    def __post_init__(self, shared: Iterable[Profile] | None) -> None:
        self.events = EventsView(self.profiles)
        self.rules = RulesView(self.profiles)
        self._shared = {}
        if shared is None:
            # Distinct objects first, at C speed: hashing every event's profile costs more.
            values = self.profiles.values()
            shared = dict(zip(map(id, values), values, strict=True)).values()
        for profile in shared:
            self.share(profile)

    def has_regions(self) -> bool:
        """Whether any event has a region (most configs give none)."""
        return any(p.region is not None for p in self._shared) or (
            not self._shared and any(p.region is not None for p in self.profiles.values())
        )

    def share(self, profile: Profile) -> Profile:
        """The catalog's one copy of a profile equal to `profile`."""
        return self._shared.setdefault(profile, profile)

    def zone_index(self, name: str, window: Window) -> int:
        """The index of a (time zone, window) pair, added when new."""
        for i, z in enumerate(self.zones):
            if z.name == name and z.window == window:
                return i
        self.zones.append(Zone(name, ZoneInfo(name), window))
        return len(self.zones) - 1

    def resolve(self, event_id: str, time_zone: str, venue_id: str | None = None) -> bool:
        """Give an event without a configured time zone the one the Partner API reported.

        A configured venue with the same ID lends its maintenance window. Returns whether the
        event changed.
        """
        profile = self.profiles.get(event_id)
        if profile is None or profile.zone_source == "config":
            return False
        venue = self.venues.get(venue_id) if venue_id else None
        window = (
            venue.maintenance.window()
            if venue is not None and venue.maintenance is not None
            else self.default_window or Window(time(2, 0), time(3, 0))
        )
        zone = self.zone_index(time_zone, window)
        if zone == profile.zone:
            return False
        self.profiles[event_id] = self.share(profile._replace(zone=zone, zone_source="partner"))
        return True

    def zone_of(self, event_id: str) -> Zone | None:
        """The event's zone, or None when its time zone is unknown."""
        profile = self.profiles.get(event_id)
        if profile is None or profile.zone < 0:
            return None
        return self.zones[profile.zone]

    def profile_counts(self, event_ids: Sequence[str] | None = None) -> Counter[Profile]:
        """How many of the events (default: all) have each profile; a pass at C speed."""

        def values() -> Iterable[Profile]:
            if event_ids is None:
                return self.profiles.values()
            return map(self.profiles.__getitem__, event_ids)

        # Counted by identity: hashing each event's profile tuple would cost more.
        by_identity = Counter(map(id, values()))
        known = {id(p): p for p in self._shared}
        if not known.keys() >= by_identity.keys():  # a profile put in without share()
            every = list(values())
            known = dict(zip(map(id, every), every, strict=True))
        return Counter({known[i]: n for i, n in by_identity.items()})

    def without_time_zone(self, event_ids: Sequence[str] | None = None) -> int:
        """How many of the events (default: all) have no known time zone."""
        zoneless = sum(1 for p in self._shared if p.zone < 0)
        if not zoneless:
            return 0
        if zoneless == len(self._shared):  # the usual case: no event has one
            return len(self.profiles) if event_ids is None else len(event_ids)
        return sum(n for p, n in self.profile_counts(event_ids).items() if p.zone < 0)


_ATTR_NAMES = ("venue", "time_zone", "region", "partner_event_id")
_NO_ATTRS = (None, None, None, None)
Origins = Mapping[tuple[int, int], tuple[str, str]]
Attributes = dict[str, dict[str, tuple[str, str]]]  # event -> attribute -> (value, where)


def _entries_with_attributes(
    events: Sequence[EventEntry | FileEntry],
) -> Iterator[tuple[int, EventEntry | FileEntry]]:
    if isinstance(events, ListedEvents):
        return events.with_attributes()
    return enumerate(events)


def _check(
    config: Config, problems: list[ConfigIssue], origin: Origins
) -> tuple[dict[str, Venue], list[WatchSet], Attributes]:
    """The cross-reference checks: duplicate venues and set names, unknown venues, attributes
    given differently at two listings. Returns the venues, the sets with a unique name and the
    attributes given per event. Bare IDs cost nothing here."""

    def place(si: int, ei: int) -> str:
        return origin[(si, ei)][1] if (si, ei) in origin else f"watch_sets[{si}].events[{ei}]"

    def issue(si: int, ei: int, attr: str, message: str) -> ConfigIssue:
        if (si, ei) in origin:
            key, where = origin[(si, ei)]
            return ConfigIssue(key, f"{where}: {message}")
        return ConfigIssue(f"watch_sets[{si}].events[{ei}].{attr}", message)

    venues: dict[str, Venue] = {}
    for i, v in enumerate(config.venues):
        if v.id in venues:
            problems.append(ConfigIssue(f"venues[{i}].id", f"duplicate venue {v.id!r}"))
        venues[v.id] = v
    # Attributes may be given at any listing of an event; listings that leave one out agree
    # with any value, two different values are an error.
    attrs: Attributes = {}
    kept: list[WatchSet] = []
    names: set[str] = set()
    for si, ws in enumerate(config.watch_sets):
        if ws.name in names:
            problems.append(ConfigIssue(f"watch_sets[{si}].name", f"duplicate name {ws.name!r}"))
            continue
        names.add(ws.name)
        kept.append(ws)
        for ei, entry in _entries_with_attributes(ws.events):
            values = (entry.venue, entry.time_zone, entry.region, entry.partner_event_id)
            if values == _NO_ATTRS:
                continue
            eid = entry.id
            if entry.venue is not None and entry.venue not in venues:
                problems.append(issue(si, ei, "venue", f"unknown venue {entry.venue!r}"))
            known = attrs.get(eid)
            if known is None:
                known = attrs[eid] = {}
            for name, value in zip(_ATTR_NAMES, values, strict=True):
                if value is None:
                    continue
                before = known.get(name)
                if before is None:
                    known[name] = (value, place(si, ei))
                elif before[0] != value:
                    problems.append(
                        issue(
                            si,
                            ei,
                            name,
                            f"event {eid} has {name} {before[0]!r} at {before[1]}, here {value!r}",
                        )
                    )
    return venues, kept, attrs


def check_catalog(
    config: Config, issues: list[ConfigIssue], origins: Origins | None = None
) -> None:
    """Append the catalog's cross-reference problems to `issues` without building it (what
    config validation needs: no per-event work for events given by ID alone)."""
    _check(config, issues, origins or {})


def _ids_of(events: Sequence[EventEntry | FileEntry]) -> tuple[str, ...]:
    """The IDs as listed; an events file's own tuple when the set lists nothing in YAML."""
    if isinstance(events, ListedEvents) and not events.listed:
        return events.file_ids
    return tuple(e.id for e in events)


def build_catalog(
    config: Config,
    issues: list[ConfigIssue] | None = None,
    origins: Origins | None = None,
) -> Catalog:
    """Build the catalog; cross-reference problems are appended to `issues` with key paths.

    `origins` names where entries that came from an `events_file` were read (key path, and
    "file line N"), so their problems point at the file rather than at a YAML path.
    """
    problems: list[ConfigIssue] = [] if issues is None else issues
    venues, kept, attrs = _check(config, problems, origins or {})
    shared: dict[Profile, Profile] = {}
    rules_cache: dict[tuple[int, bool], Rules] = {}
    confirm = {ws.name: ws.confirm_after for ws in kept}
    track = {ws.name: ws.track_unknown for ws in kept}

    def plain(names: tuple[str, ...]) -> Profile:
        # An event in several sets follows the strictest confirmation and tracks UNKNOWN if
        # any of its sets does (transitions to or from UNKNOWN go only to those sets).
        key = (max(confirm[n] for n in names), any(track[n] for n in names))
        rules = rules_cache.setdefault(key, Rules(*key))
        profile = Profile(None, -1, None, names, rules)
        return shared.setdefault(profile, profile)

    profiles: dict[str, Profile] = {}
    set_specs: dict[str, SetSpec] = {}
    for ws in kept:
        name = ws.name
        ids = _ids_of(ws.events)
        alone = plain((name,))
        if not profiles:
            # The first set (often the only one): every event is new, one pass at C speed.
            profiles = dict.fromkeys(ids, alone)
            if len(profiles) != len(ids):  # listed twice in one set: harmless
                ids = tuple(profiles)
        else:
            seen = dict.fromkeys(ids)
            if len(seen) != len(ids):
                ids = tuple(seen)
            grown: dict[tuple[str, ...], Profile] = {}  # an event's sets -> with this one too
            for eid in ids:
                before = profiles.get(eid)
                if before is None:
                    profiles[eid] = alone
                    continue
                after = grown.get(before.watch_sets)
                if after is None:
                    after = grown[before.watch_sets] = plain((*before.watch_sets, name))
                profiles[eid] = after
        set_specs[name] = SetSpec(
            name,
            ws.interval_seconds,
            ws.confirm_after,
            ws.track_unknown,
            ids,
            ws.interval_seconds,
            ws.priority,
            dict(ws.intervals),
        )

    up = config.upstream
    plan = plan_quota(
        [
            SetDemand(s.name, s.interval_seconds, len(s.event_ids), s.priority)
            for s in set_specs.values()
        ],
        planned_ids_per_request(
            up.batch_size, up.method, up.max_url_bytes, up.base_url, len(up.api_key.reveal())
        ),
        up.daily_quota,
    )
    for name, spec in list(set_specs.items()):
        factor = plan.intervals.get(name, spec.interval_seconds) / spec.interval_seconds
        if factor != 1.0:
            set_specs[name] = replace(
                spec,
                interval_seconds=spec.interval_seconds * factor,
                status_intervals={k: v * factor for k, v in spec.status_intervals.items()},
            )
    catalog = Catalog(
        profiles=profiles,
        sets=set_specs,
        plan=plan,
        venues=venues,
        default_window=config.maintenance.window(),
        shared=shared,
    )
    _apply_attributes(catalog, attrs)
    return catalog


def _apply_attributes(catalog: Catalog, attrs: Attributes) -> None:
    """Give the events listed with attributes their own (shared) profiles."""
    venues = catalog.venues
    default_window = catalog.default_window
    assert default_window is not None
    profiles = catalog.profiles
    zones: dict[tuple[str, Window], int] = {}
    for eid, known in attrs.items():
        base = profiles.get(eid)
        if base is None:
            continue  # only in a set that was left out (a duplicate name)
        venue_id = known["venue"][0] if "venue" in known else None
        region = known["region"][0] if "region" in known else None
        venue = venues.get(venue_id) if venue_id is not None else None
        tz_name = known["time_zone"][0] if "time_zone" in known else None
        tz_name = tz_name or (venue.time_zone if venue else None)
        window = venue.maintenance.window() if venue and venue.maintenance else default_window
        zone = -1
        if tz_name:
            zone = zones.get((tz_name, window), -1)
            if zone < 0:
                zone = zones[(tz_name, window)] = catalog.zone_index(tz_name, window)
        partner_id = known["partner_event_id"][0] if "partner_event_id" in known else None
        profiles[eid] = catalog.share(
            Profile(
                region, zone, venue_id, base.watch_sets, base.rules, partner_id,
                "config" if zone >= 0 else None,
            )
        )  # fmt: skip

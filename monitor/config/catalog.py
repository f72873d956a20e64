"""From a validated config to what the daemon polls: one spec per event, one per watch set."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import time
from zoneinfo import ZoneInfo

from monitor.config.errors import ConfigIssue
from monitor.config.models import Config, Venue
from monitor.core.budget import QuotaPlan, SetDemand, plan_quota
from monitor.core.maintenance import Window
from monitor.core.transitions import Rules


@dataclass(frozen=True, slots=True)
class Zone:
    """A time zone with the maintenance window that applies in it."""

    name: str
    tz: ZoneInfo
    window: Window


@dataclass(frozen=True, slots=True)
class EventSpec:
    """One watched event. `zone` indexes `Catalog.zones`; -1 when no time zone is known."""

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
    """Everything watched: events (each once, with every set that holds it), sets and zones."""

    events: dict[str, EventSpec] = field(default_factory=dict)
    sets: dict[str, SetSpec] = field(default_factory=dict)
    zones: list[Zone] = field(default_factory=list)
    rules: dict[str, Rules] = field(default_factory=dict)
    plan: QuotaPlan | None = None
    venues: dict[str, Venue] = field(default_factory=dict)
    default_window: Window | None = None

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
        spec = self.events.get(event_id)
        if spec is None or spec.zone_source == "config":
            return False
        venue = self.venues.get(venue_id) if venue_id else None
        window = (
            venue.maintenance.window()
            if venue is not None and venue.maintenance is not None
            else self.default_window or Window(time(2, 0), time(3, 0))
        )
        zone = self.zone_index(time_zone, window)
        if zone == spec.zone:
            return False
        self.events[event_id] = replace(spec, zone=zone, zone_source="partner")
        return True

    def zone_of(self, event_id: str) -> Zone | None:
        """The event's zone, or None when its time zone is unknown."""
        spec = self.events.get(event_id)
        if spec is None or spec.zone < 0:
            return None
        return self.zones[spec.zone]


_ATTR_NAMES = ("venue", "time_zone", "region", "partner_event_id")
_NO_ATTRS = (None, None, None, None)


def build_catalog(
    config: Config,
    issues: list[ConfigIssue] | None = None,
    origins: Mapping[tuple[int, int], tuple[str, str]] | None = None,
) -> Catalog:
    """Build the catalog; cross-reference problems are appended to `issues` with key paths.

    `origins` names where entries that came from an `events_file` were read (key path, and
    "file line N"), so their problems point at the file rather than at a YAML path.
    """
    origin = origins or {}

    def place(si: int, ei: int) -> str:
        return origin[(si, ei)][1] if (si, ei) in origin else f"watch_sets[{si}].events[{ei}]"

    def issue(si: int, ei: int, attr: str, message: str) -> ConfigIssue:
        if (si, ei) in origin:
            key, where = origin[(si, ei)]
            return ConfigIssue(key, f"{where}: {message}")
        return ConfigIssue(f"watch_sets[{si}].events[{ei}].{attr}", message)

    problems: list[ConfigIssue] = [] if issues is None else issues
    default_window = config.maintenance.window()
    venues = {}
    for i, v in enumerate(config.venues):
        if v.id in venues:
            problems.append(ConfigIssue(f"venues[{i}].id", f"duplicate venue {v.id!r}"))
        venues[v.id] = v

    zones: list[Zone] = []
    zone_index: dict[tuple[str, Window], int] = {}

    def zone_for(name: str, window: Window) -> int:
        key = (name, window)
        idx = zone_index.get(key)
        if idx is None:
            idx = zone_index[key] = len(zones)
            zones.append(Zone(name, ZoneInfo(name), window))
        return idx

    # Attributes may be given at any listing of an event; listings that leave one out agree
    # with any value, two different values are an error.
    attrs: dict[str, dict[str, tuple[str, str]]] = {}  # event -> attribute -> (value, where)
    members: dict[str, list[str]] = {}
    set_specs: dict[str, SetSpec] = {}
    for si, ws in enumerate(config.watch_sets):
        if ws.name in set_specs:
            problems.append(ConfigIssue(f"watch_sets[{si}].name", f"duplicate name {ws.name!r}"))
            continue
        ids: list[str] = []
        seen_here: set[str] = set()
        name_of_set = ws.name
        # This loop runs once per listed event (a million, with events_file): no work here
        # that a plain ID does not need.
        for ei, entry in enumerate(ws.events):
            eid = entry.id
            values = (entry.venue, entry.time_zone, entry.region, entry.partner_event_id)
            if values != _NO_ATTRS:
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
                                f"event {eid} has {name} {before[0]!r} at {before[1]}, "
                                f"here {value!r}",
                            )
                        )
            if eid in seen_here:
                continue  # listed twice in one set: harmless
            seen_here.add(eid)
            ids.append(eid)
            listed = members.get(eid)
            if listed is None:
                members[eid] = [name_of_set]
            else:
                listed.append(name_of_set)
        set_specs[ws.name] = SetSpec(
            ws.name,
            ws.interval_seconds,
            ws.confirm_after,
            ws.track_unknown,
            tuple(ids),
            ws.interval_seconds,
            ws.priority,
            dict(ws.intervals),
        )

    plan = plan_quota(
        [
            SetDemand(s.name, s.interval_seconds, len(s.event_ids), s.priority)
            for s in set_specs.values()
        ],
        config.upstream.batch_size,
        config.upstream.daily_quota,
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
        sets=set_specs, zones=zones, plan=plan, venues=venues, default_window=default_window
    )
    shared: dict[tuple[str, ...], tuple[tuple[str, ...], Rules]] = {}
    rules_cache: dict[tuple[int, bool], Rules] = {}
    for eid, names in members.items():
        key = tuple(names)
        hit = shared.get(key)
        if hit is None:
            # An event in several sets follows the strictest confirmation and tracks UNKNOWN if
            # any of its sets does (transitions to or from UNKNOWN go only to those sets).
            rule_key = (
                max(set_specs[n].confirm_after for n in names),
                any(set_specs[n].track_unknown for n in names),
            )
            hit = shared[key] = (key, rules_cache.setdefault(rule_key, Rules(*rule_key)))
        sets, rules = hit
        known = attrs.get(eid)
        if known is None:
            espec = EventSpec(eid, None, -1, None, sets, rules, None, None)
        else:
            venue_id = known["venue"][0] if "venue" in known else None
            region = known["region"][0] if "region" in known else None
            venue = venues.get(venue_id) if venue_id is not None else None
            tz_name = known["time_zone"][0] if "time_zone" in known else None
            tz_name = tz_name or (venue.time_zone if venue else None)
            window = venue.maintenance.window() if venue and venue.maintenance else default_window
            zone = zone_for(tz_name, window) if tz_name else -1
            partner_id = known["partner_event_id"][0] if "partner_event_id" in known else None
            espec = EventSpec(
                eid, region, zone, venue_id, sets, rules, partner_id,
                "config" if zone >= 0 else None,
            )  # fmt: skip
        catalog.events[eid] = espec
        catalog.rules[eid] = rules
    return catalog

"""Transition detection: confirmed values, pending streaks, UNKNOWN as "no data".

Everything here is a pure function of the stored state and the new observation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import is_not
from typing import NamedTuple

from monitor.domain import FIELD_RESALE, FIELD_STATUS, STATUSES, UNKNOWN, Observation

#: (confirmed value or None before the baseline, pending value or None, pending streak length)
FieldState = tuple[str | None, str | None, int]
EMPTY_FIELD: FieldState = (None, None, 0)


class EventState(NamedTuple):
    """What is remembered of one event: one FieldState per field."""

    status: FieldState = EMPTY_FIELD
    resale: FieldState = EMPTY_FIELD


EMPTY_STATE = EventState()


@dataclass(frozen=True, slots=True)
class Rules:
    """How one event's observations are judged (from the watch sets that hold it)."""

    confirm_after: int = 1
    track_unknown: bool = False


DEFAULT_RULES = Rules()


def step(
    state: FieldState, value: str, confirm_after: int, track_unknown: bool
) -> tuple[FieldState, tuple[str, str] | None]:
    """Feed one observed value into one field's state.

    Returns the new state and, when a change is confirmed, `(previous, current)`.
    The first value is the baseline. A change needs `confirm_after` consecutive equal
    observations. Unless `track_unknown`, UNKNOWN is "no data": it neither confirms nor breaks
    a streak and never becomes a transition.
    """
    confirmed, pending, streak = state
    if value == UNKNOWN and not track_unknown:
        return state, None
    if confirmed is None or (confirmed == UNKNOWN and not track_unknown):
        # No baseline yet (or one left over from when UNKNOWN was tracked): this is it.
        return (value, None, 0), None
    if value == confirmed:
        return ((confirmed, None, 0) if pending is not None else state), None
    streak = streak + 1 if pending == value else 1
    if streak >= confirm_after:
        return (value, None, 0), (confirmed, value)
    return (confirmed, value, streak), None


class Candidate(NamedTuple):
    """A detected change before the store gives it a sequence."""

    event_id: str
    field: str
    previous: str
    current: str


@dataclass(slots=True)
class Detection:
    """What one batch of observations changes: new states (only those that differ) and changes."""

    changed: dict[str, EventState]
    candidates: list[Candidate]
    # detect_columns: each event's state before the batch, in batch order (when it gives them)
    remembered: list[EventState] | None = None


def detect(
    observations: Iterable[Observation],
    states: Mapping[str, EventState],
    rules: Mapping[str, Rules],
) -> Detection:
    """Judge a batch of observations against the remembered states.

    Only events whose state differs afterwards appear in `changed`, so unchanged events cost no
    write. Events without rules get the defaults.
    """
    changed: dict[str, EventState] = {}
    candidates: list[Candidate] = []
    for obs in observations:
        eid = obs.event_id
        old = states.get(eid, EMPTY_STATE)
        rule = rules.get(eid, DEFAULT_RULES)
        status_state, resale_state = old
        if obs.status is not None:
            status_state, change = step(
                status_state, obs.status, rule.confirm_after, rule.track_unknown
            )
            if change is not None:
                candidates.append(Candidate(eid, FIELD_STATUS, change[0], change[1]))
        if obs.resale_status is not None:
            resale_state, change = step(
                resale_state, obs.resale_status, rule.confirm_after, rule.track_unknown
            )
            if change is not None:
                candidates.append(Candidate(eid, FIELD_RESALE, change[0], change[1]))
        if status_state != old.status or resale_state != old.resale:
            changed[eid] = EventState(status_state, resale_state)
    return Detection(changed, candidates)


def steady_states(
    intern: dict[EventState, EventState],
) -> dict[tuple[str | None, str | None], EventState]:
    """For each observed (status, resale) pair, the state in which observing exactly that pair
    changes nothing: each value confirmed, nothing pending; a field the answer lacks (None) never
    observed either (an upstream that leaves out `resaleStatus`). Interned through `intern`, so
    a remembered state can be compared by identity."""
    table: dict[tuple[str | None, str | None], EventState] = {}
    values: tuple[str | None, ...] = (*STATUSES, None)
    for status in values:
        for resale in values:
            state = EventState(
                EMPTY_FIELD if status is None else (status, None, 0),
                EMPTY_FIELD if resale is None else (resale, None, 0),
            )
            table[(status, resale)] = intern.setdefault(state, state)
    return table


def noise_of(
    steady: Mapping[tuple[str | None, str | None], EventState],
) -> frozenset[tuple[EventState, str | None, str | None]]:
    """(remembered state, observed status, observed resale) triples that change nothing while
    UNKNOWN is "no data": a steady state observed with UNKNOWN or a missing field in place of
    one of its values (or of a value never observed)."""
    out: set[tuple[EventState, str | None, str | None]] = set()
    for (status, resale), state in steady.items():
        for seen_status in {status, UNKNOWN, None}:
            for seen_resale in {resale, UNKNOWN, None}:
                out.add((state, seen_status, seen_resale))
    return frozenset(out)


def detect_columns(
    ids: Sequence[str],
    statuses: Sequence[str | None],
    resales: Sequence[str | None],
    states: Mapping[str, EventState],
    rules: Mapping[str, Rules],
    steady: Mapping[tuple[str | None, str | None], EventState],
    noise: frozenset[tuple[EventState, str | None, str | None]] = frozenset(),
) -> Detection:
    """`detect` for a batch given as columns, with the same result.

    Most events observe exactly what they are remembered at. Those are recognised a column at
    a time: the state `steady` gives for an observed pair is the remembered one (usually the very
    same interned object). When no event tracks UNKNOWN, pass `noise` (from `noise_of`): events
    that observed UNKNOWN or nothing in place of a remembered value are recognised too. Only
    the rest go through `step`, one by one.
    """
    expected = list(map(steady.get, zip(statuses, resales, strict=True)))
    # EMPTY_STATE for events never seen: never a steady state, and never the None that `steady`
    # gives for a pair it does not hold.
    remembered = list(map(states.get, ids, repeat(EMPTY_STATE, len(ids))))
    # Positions where the states are not the same object, found without a Python-level loop.
    odd = list(compress(range(len(ids)), map(is_not, expected, remembered)))
    if not odd:
        return Detection({}, [], remembered)
    odd = [i for i in odd if expected[i] != remembered[i]]  # equal copies change nothing either
    if noise:
        odd = [i for i in odd if (remembered[i], statuses[i], resales[i]) not in noise]
    found = detect((Observation(ids[i], statuses[i], resales[i]) for i in odd), states, rules)
    found.remembered = remembered
    return found

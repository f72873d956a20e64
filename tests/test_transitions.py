"""Table tests for the transition detector: `step` (one field) and `detect` (one batch)."""

from __future__ import annotations

import pytest

from monitor.core.transitions import (
    EMPTY_FIELD,
    Candidate,
    EventState,
    Rules,
    detect,
    step,
)
from monitor.domain import (
    FEW_TICKETS_LEFT,
    FIELD_RESALE,
    FIELD_STATUS,
    TICKETS_AVAILABLE,
    TICKETS_NOT_AVAILABLE,
    UNKNOWN,
    Observation,
)

A = TICKETS_AVAILABLE
F = FEW_TICKETS_LEFT
N = TICKETS_NOT_AVAILABLE
U = UNKNOWN


def run(observations, confirm_after, track_unknown):
    """Feed a sequence into one field; return [(index, previous, current)] and the final state."""
    state = EMPTY_FIELD
    out = []
    for i, value in enumerate(observations):
        state, change = step(state, value, confirm_after, track_unknown)
        if change is not None:
            out.append((i, *change))
    return out, state


# (observations, confirm_after, track_unknown, expected transitions as (index, previous, current))
SEQUENCES = [
    # --- baseline ---------------------------------------------------------------------------
    pytest.param([A], 1, False, [], id="first-value-is-baseline-not-transition"),
    pytest.param([N], 2, False, [], id="first-value-is-baseline-confirm2"),
    pytest.param([A, A, A], 1, False, [], id="same-value-repeated-is-silent"),
    # --- confirm_after=1 --------------------------------------------------------------------
    pytest.param([A, F], 1, False, [(1, A, F)], id="confirm1-immediate"),
    pytest.param(
        [A, F, N, A], 1, False, [(1, A, F), (2, F, N), (3, N, A)], id="confirm1-every-change"
    ),
    pytest.param([A, F, F, F], 1, False, [(1, A, F)], id="confirm1-once-per-change"),
    # --- confirm_after=2 --------------------------------------------------------------------
    pytest.param([A, F], 2, False, [], id="confirm2-one-observation-is-not-enough"),
    pytest.param([A, F, F], 2, False, [(2, A, F)], id="confirm2-two-consecutive-confirm"),
    pytest.param([A, F, F, F, F], 2, False, [(2, A, F)], id="confirm2-confirmed-once"),
    pytest.param([A, F, A], 2, False, [], id="confirm2-one-poll-flap-is-silence"),
    pytest.param([A, F, A, A, A], 2, False, [], id="confirm2-flap-then-stable-is-silence"),
    pytest.param([A, F, A, F], 2, False, [], id="confirm2-return-to-confirmed-resets-streak"),
    pytest.param([A, F, A, F, F], 2, False, [(4, A, F)], id="confirm2-fresh-streak-after-reset"),
    pytest.param([A, F, N], 2, False, [], id="confirm2-third-value-restarts-streak"),
    pytest.param([A, F, N, F], 2, False, [], id="confirm2-alternating-never-confirms"),
    pytest.param([A, F, N, N], 2, False, [(3, A, N)], id="confirm2-third-value-confirmed"),
    pytest.param([A, F, F, A, A], 2, False, [(2, A, F), (4, F, A)], id="confirm2-back-and-forth"),
    # --- confirm_after=3 --------------------------------------------------------------------
    pytest.param([A, F, F, A, F, F], 3, False, [], id="confirm3-streak-broken-by-return"),
    pytest.param(
        [A, F, F, A, F, F, F], 3, False, [(6, A, F)], id="confirm3-full-streak-after-reset"
    ),
    pytest.param([A, F, F, N, N], 3, False, [], id="confirm3-streak-interrupted-by-third"),
    pytest.param([A, F, F, N, N, N], 3, False, [(5, A, N)], id="confirm3-third-value-own-streak"),
    # --- UNKNOWN as "no data" (track_unknown=False) -----------------------------------------
    pytest.param([A, U, A], 1, False, [], id="unknown-gap-is-no-data"),
    pytest.param([A, U, U, U], 1, False, [], id="unknown-never-a-transition"),
    pytest.param([A, U, F], 1, False, [(2, A, F)], id="unknown-then-change-compares-to-before"),
    pytest.param([A, F, U, F], 2, False, [(3, A, F)], id="unknown-does-not-break-streak"),
    pytest.param([A, F, U], 2, False, [], id="unknown-does-not-confirm-streak"),
    pytest.param([A, F, U, U, U, F], 2, False, [(5, A, F)], id="unknown-run-inside-streak"),
    pytest.param([A, F, U, A, F], 2, False, [], id="unknown-then-return-still-resets"),
    pytest.param([U, A], 1, False, [], id="unknown-first-sets-no-baseline"),
    pytest.param([U, U, A, F], 1, False, [(3, A, F)], id="baseline-is-first-known-value"),
    pytest.param([U], 1, False, [], id="only-unknown"),
    # --- track_unknown=True: UNKNOWN is an ordinary value -----------------------------------
    pytest.param([A, U], 1, True, [(1, A, U)], id="tracked-unknown-is-a-transition"),
    pytest.param([A, U, A], 1, True, [(1, A, U), (2, U, A)], id="tracked-unknown-and-back"),
    pytest.param([U, A], 1, True, [(1, U, A)], id="tracked-unknown-can-be-baseline"),
    pytest.param([A, U, A], 2, True, [], id="tracked-unknown-flap-is-silence"),
    pytest.param([A, U, U], 2, True, [(2, A, U)], id="tracked-unknown-confirmed"),
    pytest.param([A, F, U, F], 2, True, [], id="tracked-unknown-breaks-streak"),
]


@pytest.mark.parametrize(("observations", "confirm_after", "track_unknown", "expected"), SEQUENCES)
def test_step_sequences(observations, confirm_after, track_unknown, expected):
    transitions, _ = run(observations, confirm_after, track_unknown)
    assert transitions == expected


# (observations, confirm_after, track_unknown, final FieldState)
FINAL_STATES = [
    pytest.param([], 1, False, (None, None, 0), id="nothing-seen"),
    pytest.param([U, U], 1, False, (None, None, 0), id="unknown-leaves-no-baseline"),
    pytest.param([A], 1, False, (A, None, 0), id="baseline"),
    pytest.param([A, F], 2, False, (A, F, 1), id="pending-streak-of-one"),
    pytest.param([A, F, F], 3, False, (A, F, 2), id="pending-streak-of-two"),
    pytest.param([A, F, U], 2, False, (A, F, 1), id="unknown-keeps-pending"),
    pytest.param([A, F, A], 2, False, (A, None, 0), id="return-clears-pending"),
    pytest.param([A, F, N], 3, False, (A, N, 1), id="third-value-restarts-pending"),
    pytest.param([A, F, F], 2, False, (F, None, 0), id="confirmed-clears-pending"),
    pytest.param([U], 1, True, (U, None, 0), id="tracked-unknown-baseline"),
]


@pytest.mark.parametrize(
    ("observations", "confirm_after", "track_unknown", "expected"), FINAL_STATES
)
def test_step_final_state(observations, confirm_after, track_unknown, expected):
    _, state = run(observations, confirm_after, track_unknown)
    assert state == expected


@pytest.mark.parametrize(
    ("state", "value", "confirm_after", "track_unknown", "expected_state", "expected_change"),
    [
        pytest.param(
            (U, None, 0), A, 1, False, (A, None, 0), None, id="left-over-unknown-baseline-replaced"
        ),
        pytest.param(
            (U, None, 0), A, 1, True, (A, None, 0), (U, A), id="tracked-unknown-baseline-changes"
        ),
        pytest.param((A, F, 1), U, 2, False, (A, F, 1), None, id="untracked-unknown-no-op"),
        pytest.param((A, F, 1), F, 2, False, (F, None, 0), (A, F), id="pending-confirmed"),
        pytest.param((A, F, 1), N, 2, False, (A, N, 1), None, id="pending-replaced"),
    ],
)
def test_step_from_state(
    state, value, confirm_after, track_unknown, expected_state, expected_change
):
    assert step(state, value, confirm_after, track_unknown) == (expected_state, expected_change)


# ------------------------------------------------------------------------------------------
# detect: one batch of observations against stored states
# ------------------------------------------------------------------------------------------

BASE_A = EventState(status=(A, None, 0), resale=(A, None, 0))


def obs(event_id, status, resale=None):
    return Observation(event_id, status, resale)


# (stored states, observations, rules, expected changed, expected candidates)
DETECT_CASES = [
    pytest.param(
        {},
        [obs("e1", A, N)],
        {},
        {"e1": EventState((A, None, 0), (N, None, 0))},
        [],
        id="new-event-baseline-is-stored-not-reported",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", A, A)],
        {},
        {},
        [],
        id="unchanged-event-not-in-changed",
    ),
    pytest.param(
        {"e1": BASE_A, "e2": BASE_A},
        [obs("e1", A, A), obs("e2", F, A)],
        {},
        {"e2": EventState((F, None, 0), (A, None, 0))},
        [Candidate("e2", FIELD_STATUS, A, F)],
        id="only-changed-events-in-changed",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", F, N)],
        {},
        {"e1": EventState((F, None, 0), (N, None, 0))},
        [Candidate("e1", FIELD_STATUS, A, F), Candidate("e1", FIELD_RESALE, A, N)],
        id="candidates-for-status-and-resale",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", A, F)],
        {},
        {"e1": EventState((A, None, 0), (F, None, 0))},
        [Candidate("e1", FIELD_RESALE, A, F)],
        id="resale-only-change",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", None, F)],
        {},
        {"e1": EventState((A, None, 0), (F, None, 0))},
        [Candidate("e1", FIELD_RESALE, A, F)],
        id="missing-status-ignored",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", N, None)],
        {},
        {"e1": EventState((N, None, 0), (A, None, 0))},
        [Candidate("e1", FIELD_STATUS, A, N)],
        id="missing-resale-ignored",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", None, None)],
        {},
        {},
        [],
        id="both-missing-no-write",
    ),
    pytest.param(
        {},
        [obs("e1", None, None)],
        {},
        {},
        [],
        id="both-missing-new-event-no-write",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", U, U)],
        {},
        {},
        [],
        id="untracked-unknown-no-write",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", U, U)],
        {"e1": Rules(track_unknown=True)},
        {"e1": EventState((U, None, 0), (U, None, 0))},
        [Candidate("e1", FIELD_STATUS, A, U), Candidate("e1", FIELD_RESALE, A, U)],
        id="tracked-unknown-by-rules",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", F, A)],
        {"e1": Rules(confirm_after=2)},
        {"e1": EventState((A, F, 1), (A, None, 0))},
        [],
        id="pending-streak-is-a-write-not-a-candidate",
    ),
    pytest.param(
        {"e1": EventState((A, F, 1), (A, None, 0))},
        [obs("e1", F, A)],
        {"e1": Rules(confirm_after=2)},
        {"e1": EventState((F, None, 0), (A, None, 0))},
        [Candidate("e1", FIELD_STATUS, A, F)],
        id="streak-confirmed-across-batches",
    ),
    pytest.param(
        {"e1": BASE_A, "e2": BASE_A},
        [obs("e1", F, A), obs("e2", F, A)],
        {"e1": Rules(confirm_after=2)},
        {
            "e1": EventState((A, F, 1), (A, None, 0)),
            "e2": EventState((F, None, 0), (A, None, 0)),
        },
        [Candidate("e2", FIELD_STATUS, A, F)],
        id="event-absent-from-rules-gets-defaults",
    ),
    pytest.param(
        {"e1": BASE_A},
        [obs("e1", U, A)],
        {"other": Rules(track_unknown=True)},
        {},
        [],
        id="default-rules-do-not-track-unknown",
    ),
]


@pytest.mark.parametrize(
    ("states", "observations", "rules", "expected_changed", "expected_candidates"),
    DETECT_CASES,
)
def test_detect(states, observations, rules, expected_changed, expected_candidates):
    result = detect(observations, states, rules)
    assert result.changed == expected_changed
    assert result.candidates == expected_candidates


def test_detect_does_not_mutate_inputs():
    states = {"e1": BASE_A}
    detect([obs("e1", F, N)], states, {})
    assert states == {"e1": BASE_A}


def test_rules_defaults():
    assert Rules() == Rules(confirm_after=1, track_unknown=False)
    assert EventState() == EventState(EMPTY_FIELD, EMPTY_FIELD)


# ------------------------------------------------------------------------------------------
# detect_columns: the batch-at-a-time detector must agree with `detect` on every input
# ------------------------------------------------------------------------------------------

_VALUES = (A, F, N, U, None)
_FIELD_STATES = (
    EMPTY_FIELD,
    (A, None, 0),
    (F, None, 0),
    (U, None, 0),
    (A, F, 1),
    (A, U, 1),
    (N, A, 2),
)


def _all_cases():
    """Every (remembered state or none, observed status, observed resale): 50 x 25 events."""
    states = [None] + [EventState(s, r) for s in _FIELD_STATES for r in _FIELD_STATES]
    return [(st, s, r) for st in states for s in _VALUES for r in _VALUES]


@pytest.mark.parametrize("intern_states", [True, False], ids=["interned", "copies"])
@pytest.mark.parametrize(
    ("rules", "use_noise"),
    [
        pytest.param(Rules(), True, id="defaults-with-noise"),
        pytest.param(Rules(), False, id="defaults-without-noise"),
        pytest.param(Rules(confirm_after=2), True, id="confirm-2"),
        pytest.param(Rules(track_unknown=True), False, id="track-unknown"),
        pytest.param(Rules(confirm_after=3, track_unknown=True), False, id="confirm-3-track"),
    ],
)
def test_detect_columns_agrees_with_detect(rules, use_noise, intern_states):
    from monitor.core.transitions import detect_columns, noise_of, steady_states

    intern: dict[EventState, EventState] = {}
    steady = steady_states(intern)
    noise = noise_of(steady) if use_noise else frozenset()
    cases = _all_cases()
    ids = [f"e{i}" for i in range(len(cases))]
    states = {}
    for eid, (st, _s, _r) in zip(ids, cases, strict=True):
        if st is not None:
            # Interned (as LiveState keeps them) or equal copies: the result must not depend on it.
            states[eid] = intern.setdefault(st, st) if intern_states else EventState(*st)
    statuses = [s for _st, s, _r in cases]
    resales = [r for _st, _s, r in cases]
    by_event = dict.fromkeys(ids, rules)
    fast = detect_columns(ids, statuses, resales, states, by_event, steady, noise)
    slow = detect(map(Observation, ids, statuses, resales), states, by_event)
    assert fast.changed == slow.changed
    assert fast.candidates == slow.candidates
    assert slow.candidates  # the table holds real changes, so the comparison means something


def test_detect_columns_unchanged_batch_is_empty():
    from monitor.core.transitions import detect_columns, noise_of, steady_states

    intern: dict[EventState, EventState] = {}
    steady = steady_states(intern)
    states = {"a": steady[(A, N)], "b": steady[(F, F)]}
    got = detect_columns(["a", "b"], [A, U], [N, None], states, {}, steady, noise_of(steady))
    assert (got.changed, got.candidates) == ({}, [])
    first = detect_columns(["c"], [A], [None], states, {}, steady, noise_of(steady))
    assert first.changed == {"c": EventState((A, None, 0), EMPTY_FIELD)}  # a baseline is stored

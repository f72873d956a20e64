"""Log summaries: the first failure at once, then a count at most every `every` seconds."""

from __future__ import annotations

import pytest

from monitor.core.summary import Summary


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        ([0.0], [0]),
        ([0.0, 1.0, 2.0], [0, None, None]),
        ([0.0, 1.0, 2.0, 60.0], [0, None, None, 2]),
        ([0.0, 60.0, 61.0, 120.0], [0, 0, None, 1]),
        # a wall-clock step back must not silence the key for the length of the step
        ([100.0, 50.0], [0, 0]),
    ],
)
def test_admits_the_first_then_a_count_per_period(times, expected):
    s = Summary(every=60.0)
    assert [s.admit("k", t) for t in times] == expected


def test_keys_are_independent_and_clear_reports_what_was_held():
    s = Summary(every=10.0)
    assert s.admit("a", 0.0) == 0
    assert s.admit("b", 0.0) == 0
    assert s.admit("a", 1.0) is None
    assert s.admit("a", 2.0) is None
    assert s.clear("a") == 2
    assert s.clear("a") == 0
    assert s.admit("a", 3.0) == 0  # a new run after recovery is written at once


def test_memory_is_bounded_by_max_keys():
    s = Summary(every=10.0, max_keys=3)
    for i in range(100):
        s.admit(i, 0.0)
    assert len(s) == 3
    assert s.admit(0, 1.0) == 0  # the oldest were forgotten: a new run


def test_a_thousand_failures_a_second_for_a_minute_give_a_handful_of_lines():
    s = Summary(every=10.0)
    lines = sum(1 for i in range(60_000) if s.admit("down", i / 1000) is not None)
    assert lines == 6


@pytest.mark.parametrize(("every", "keys"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_rejects_nonsense_settings(every, keys):
    with pytest.raises(ValueError, match="every"):
        Summary(every=every, max_keys=keys)

"""Table tests for retry timing: full jitter, Retry-After and Rate-Limit-Reset."""

from __future__ import annotations

import pytest

from monitor.core.backoff import full_jitter, retry_after_seconds

# (attempt, base, cap, rand, expected seconds)
JITTER = [
    pytest.param(0, 0.5, 30.0, 0.0, 0.0, id="rand-zero-is-zero"),
    pytest.param(0, 0.5, 30.0, 0.5, 0.25, id="attempt0-half"),
    pytest.param(1, 0.5, 30.0, 0.5, 0.5, id="attempt1-doubles"),
    pytest.param(3, 0.5, 30.0, 0.5, 2.0, id="attempt3"),
    pytest.param(5, 0.5, 30.0, 0.5, 8.0, id="attempt5-below-cap"),
    pytest.param(6, 0.5, 30.0, 0.5, 15.0, id="attempt6-capped"),
    pytest.param(20, 0.5, 30.0, 0.5, 15.0, id="attempt20-capped"),
    pytest.param(10, 1.0, 5.0, 0.2, 1.0, id="small-cap"),
    pytest.param(2, 1.0, 100.0, 0.75, 3.0, id="base-one"),
]


@pytest.mark.parametrize(("attempt", "base", "cap", "rand", "expected"), JITTER)
def test_full_jitter_values(attempt, base, cap, rand, expected):
    assert full_jitter(attempt, base, cap, rand) == pytest.approx(expected)


@pytest.mark.parametrize("attempt", [0, 1, 2, 5, 10, 30, 60])
@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999999])
def test_full_jitter_bounds(attempt, rand):
    base, cap = 0.5, 30.0
    got = full_jitter(attempt, base, cap, rand)
    assert 0.0 <= got <= min(cap, base * 2**attempt)
    assert got <= cap


def test_full_jitter_huge_attempt_is_capped():
    assert full_jitter(1100, 0.5, 30.0, 0.5) == pytest.approx(15.0)


NOW = 1_772_971_200.0  # 2026-03-08 12:00:00 UTC (a Sunday)


# (headers, expected seconds or None)
HEADERS = [
    pytest.param({}, None, id="no-headers"),
    pytest.param({"Retry-After": "120"}, 120.0, id="retry-after-seconds"),
    pytest.param({"Retry-After": "0"}, 0.0, id="retry-after-zero"),
    pytest.param({"Retry-After": " 7 "}, 7.0, id="retry-after-whitespace"),
    pytest.param({"Retry-After": "Sun, 08 Mar 2026 12:01:30 GMT"}, 90.0, id="http-date-future"),
    pytest.param({"Retry-After": "Sun, 08 Mar 2026 12:00:00 GMT"}, 0.0, id="http-date-now"),
    pytest.param({"Retry-After": "Sun, 08 Mar 2026 11:00:00 GMT"}, 0.0, id="http-date-past"),
    pytest.param({"Retry-After": "-5"}, 0.0, id="retry-after-negative"),
    pytest.param({"Rate-Limit-Reset": "1772971245000"}, 45.0, id="reset-epoch-ms"),
    pytest.param({"Rate-Limit-Reset": "1772971200500"}, 0.5, id="reset-sub-second"),
    pytest.param({"Rate-Limit-Reset": "1772971100000"}, 0.0, id="reset-past"),
    pytest.param({"Rate-Limit-Reset": "1000"}, 0.0, id="reset-long-past"),
    pytest.param(
        {"Retry-After": "10", "Rate-Limit-Reset": "1772971245000"}, 10.0, id="both-retry-after-wins"
    ),
    pytest.param(
        {"Retry-After": "1", "Rate-Limit-Reset": "1772971245000", "Rate-Limit-Available": "0"},
        45.0,
        id="quota-spent-reset-wins",
    ),
    pytest.param(
        {"Rate-Limit-Reset": "1772971245000", "Rate-Limit-Available": "0"},
        45.0,
        id="quota-spent-reset-only",
    ),
    pytest.param(
        {"Rate-Limit-Reset": "1772971245000", "Rate-Limit-Available": "4000"},
        None,
        id="spike-arrest-quota-left-reset-ignored",
    ),
    pytest.param(
        {"Retry-After": "1", "Rate-Limit-Reset": "1772971245000", "Rate-Limit-Available": "7"},
        1.0,
        id="spike-arrest-retry-after",
    ),
    pytest.param(
        {"Retry-After": "100", "Rate-Limit-Reset": "1772971245000"},
        100.0,
        id="both-retry-after-later",
    ),
    pytest.param(
        {"Retry-After": "Sun, 08 Mar 2026 12:02:00 GMT", "Rate-Limit-Reset": "1772971245000"},
        120.0,
        id="both-http-date-later",
    ),
    pytest.param({"Retry-After": "soon"}, None, id="garbage-word"),
    pytest.param({"Retry-After": ""}, None, id="garbage-empty"),
    pytest.param({"Retry-After": "12abc"}, None, id="garbage-trailing"),
    pytest.param({"Retry-After": "Sun, 99 Foo 2026 99:99:99 GMT"}, None, id="garbage-date"),
    pytest.param({"Rate-Limit-Reset": "abc"}, None, id="garbage-reset"),
    pytest.param({"Retry-After": "soon", "Rate-Limit-Reset": "abc"}, None, id="garbage-both"),
    pytest.param(
        {"Retry-After": "soon", "Rate-Limit-Reset": "1772971230000"},
        30.0,
        id="garbage-retry-after-valid-reset",
    ),
    pytest.param({"Retry-After": "20", "Rate-Limit-Reset": "abc"}, 20.0, id="valid-plus-garbage"),
    pytest.param({"Retry-After": "inf"}, None, id="garbage-inf"),
    pytest.param({"Retry-After": "nan"}, None, id="garbage-nan"),
    pytest.param({"Rate-Limit-Reset": "inf"}, None, id="garbage-reset-inf"),
]


@pytest.mark.parametrize(("headers", "expected"), HEADERS)
def test_retry_after_seconds(headers, expected):
    got = retry_after_seconds(headers, NOW)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


# Absurd waits a hostile or broken upstream may ask for: each is capped, never slept in full.
CAPPED = [
    pytest.param({"Retry-After": "99999999999999999999"}, 300.0, "retry_after", id="ra-20-digits"),
    pytest.param({"Retry-After": "1e20"}, 300.0, "retry_after", id="ra-1e20"),
    pytest.param({"Retry-After": "9" * 400}, 300.0, "retry_after", id="ra-400-digits"),
    pytest.param(
        {"Retry-After": "Fri, 31 Dec 9999 23:59:59 GMT"}, 300.0, "retry_after", id="ra-year-9999"
    ),
    pytest.param(
        {"Rate-Limit-Available": "0", "Rate-Limit-Reset": "9" * 30},
        86400.0,
        "quota_reset",
        id="reset-30-digits",
    ),
    pytest.param(
        {"Rate-Limit-Available": "0", "Rate-Limit-Reset": str(int(NOW * 1000) + 3 * 3600 * 1000)},
        3 * 3600.0,
        "quota_reset",
        id="reset-in-3h-is-not-capped",
    ),
    pytest.param(
        {"Rate-Limit-Available": "0", "Rate-Limit-Reset": "1772971245000", "Retry-After": "1e20"},
        300.0,
        "retry_after",
        id="spent-and-absurd-retry-after",
    ),
]


@pytest.mark.parametrize(("headers", "seconds", "source"), CAPPED)
def test_server_waits_are_capped(headers, seconds, source):
    from monitor.core.backoff import server_wait

    wait = server_wait(headers, NOW)
    assert wait is not None
    assert wait.seconds == pytest.approx(seconds)
    assert wait.source == source
    assert wait.asked >= wait.seconds
    assert retry_after_seconds(headers, NOW) == pytest.approx(seconds)


def test_caps_are_the_callers_to_choose():
    from monitor.core.backoff import server_wait

    wait = server_wait({"Retry-After": "1e20"}, NOW, max_retry_after=5.0)
    assert wait is not None and wait.seconds == 5.0 and wait.capped
    small = server_wait({"Retry-After": "3"}, NOW, max_retry_after=5.0)
    assert small is not None and small.seconds == 3.0 and not small.capped

"""Table tests for sizing requests under a gateway's URL or body limit (pure)."""

from __future__ import annotations

import pytest

from monitor.core.request_size import fitting, ids_per_request, request_bytes, shrunk_limit

IDS16 = [f"E{i:015d}" for i in range(1000)]


@pytest.mark.parametrize(
    ("ids", "fixed", "limit", "expected"),
    [
        pytest.param(IDS16, 100, None, 1000, id="no-limit-all"),
        pytest.param(IDS16, 100, 8192, (8192 - 100) // 17, id="8KB-16-char-ids"),
        pytest.param(IDS16, 100, 100 + 17 * 3, 3, id="exactly-three"),
        pytest.param(IDS16, 100, 100 + 17 * 3 - 1, 2, id="one-byte-short-of-three"),
        pytest.param(IDS16, 100, 50, 1, id="not-even-one-still-one"),
        pytest.param([], 100, 8192, 0, id="none"),
        pytest.param(["a", "bbbbbbbbbb", "c"], 0, 2 + 11, 2, id="mixed-lengths"),
    ],
)
def test_fitting(ids, fixed, limit, expected):
    n = fitting(ids, fixed, limit)
    assert n == expected
    if limit is not None and n > 1:
        assert request_bytes(ids[:n], fixed) - 1 <= limit  # the first ID has no comma


@pytest.mark.parametrize(
    ("batch", "limit", "fixed", "id_bytes", "expected"),
    [
        pytest.param(1000, None, 100, 16, 1000, id="no-limit"),
        pytest.param(1000, 8192, 100, 16, 476, id="8KB"),
        pytest.param(100, 8192, 100, 16, 100, id="batch-smaller"),
        pytest.param(1000, 120, 100, 64, 1, id="at-least-one"),
    ],
)
def test_ids_per_request(batch, limit, fixed, id_bytes, expected):
    assert ids_per_request(batch, limit, fixed, id_bytes) == expected


@pytest.mark.parametrize(
    ("limit", "refused", "floor", "expected"),
    [
        pytest.param(8192, 8000, 200, 4000, id="halved"),
        pytest.param(None, 17000, 200, 8500, id="first-refusal-without-limit"),
        pytest.param(3000, 8000, 200, 3000, id="never-above-current"),
        pytest.param(8192, 300, 200, 200, id="floor-one-id"),
    ],
)
def test_shrunk_limit(limit, refused, floor, expected):
    assert shrunk_limit(limit, refused, floor) == expected


@pytest.mark.parametrize(
    ("method", "max_url", "expected_range"),
    [
        pytest.param("POST", 8192, (1000, 1000), id="post-full-batches"),
        pytest.param("GET", 8192, (420, 470), id="get-8KB"),
        pytest.param("POST_QUERY", 8192, (420, 470), id="post-query-8KB"),
        pytest.param("GET", 65536, (1000, 1000), id="get-64KB"),
    ],
)
def test_planned_ids_per_request(method, max_url, expected_range):
    from monitor.core.request_size import planned_ids_per_request

    n = planned_ids_per_request(1000, method, max_url, "https://app.ticketmaster.com", 32)
    assert expected_range[0] <= n <= expected_range[1]

"""How many event IDs fit in one request when the upstream's gateway limits its size (pure).

IDs travel comma-separated: in the URL's query string (GET, POST_QUERY) or in a form body
(POST). A thousand 16-character IDs make a URL of about 17 KB, and many API gateways refuse a
URL over 8 KB (414, or 413 for a body). Sizes here are in bytes: `fixed` is what a request for
no IDs at all takes (the URL without IDs, or the form field's name) and each ID adds its
length plus one for the comma.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate

TYPICAL_ID_BYTES = 17
"""A Ticketmaster event ID is about 16 to 18 characters; used until real IDs were seen."""


def request_bytes(ids: Sequence[str], fixed: int) -> int:
    """The size of a request for `ids`."""
    return fixed + sum(map(len, ids)) + len(ids)


def fitting(ids: Sequence[str], fixed: int, limit: int | None) -> int:
    """How many of the leading `ids` fit in a request of at most `limit` bytes (all of them
    without a limit); at least one, so that every ID can still be asked about alone."""
    if limit is None or not ids:
        return len(ids)
    room = limit - fixed
    sizes = accumulate(len(e) + 1 for e in ids)
    return max(1, bisect_right(list(sizes), room))


def ids_per_request(batch_size: int, limit: int | None, fixed: int, id_bytes: float) -> int:
    """How many IDs to take for one request: `batch_size`, or fewer when `limit` holds only
    so many IDs of about `id_bytes` characters each (at least one)."""
    if limit is None:
        return batch_size
    return max(1, min(batch_size, int((limit - fixed) // (id_bytes + 1))))


def shrunk_limit(limit: int | None, refused_bytes: int, floor: int) -> int:
    """The size limit to use after the upstream refused a request of `refused_bytes` as too
    large: half that size, never above the current limit, never below `floor` (a request of
    one ID)."""
    half = refused_bytes // 2
    if limit is not None:
        half = min(half, limit)
    return max(floor, half)


def planned_ids_per_request(
    batch_size: int, method: str, max_url_bytes: int, base_url: str, api_key_bytes: int
) -> int:
    """IDs per request to plan calls with (a quota plan): the batch size, or what a URL of
    `max_url_bytes` holds of typical IDs when they travel in the URL (GET, POST_QUERY)."""
    if method == "POST":
        return batch_size
    fixed = len(base_url) + len("/inventory-status/v1/availability?apikey=&events=") + 32
    return ids_per_request(batch_size, max_url_bytes, fixed + api_key_bytes, TYPICAL_ID_BYTES)

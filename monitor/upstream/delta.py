"""Decoding an answer against the last one to the same request: only the objects that changed.

An answer that is not byte for byte the last one (see `monitor.poller.repeats`) still differs
from it in a few events only. When both are compact arrays of exactly one flat object per
requested event (`[{...},{...}]`, no braces inside strings), each object is the bytes between
two `},{`: objects whose bytes are the same as last time decode to the same values, so only
the others are decoded. Anything else (another layout, a changed object that is not a known
status of the event asked for at that place, too many changes) gives None, and the caller
decodes the whole answer as usual. Pure functions; the caller keeps one `Layout` per request.
"""

from __future__ import annotations

import os
from array import array
from dataclasses import dataclass
from itertools import compress
from operator import ne
from typing import Any

import orjson

from monitor.domain import STATUSES

# Each known value as one shared object: decoded strings are fresh copies, and a layout keeps
# a thousand per request. Also the check that a value is known (a KeyError when it is not).
CANONICAL: dict[str | None, str | None] = {s: s for s in STATUSES}
CANONICAL[None] = None

# Past this share of changed objects, decoding the whole answer costs about as much.
MOST_CHANGED = 0.25

# Unchanged objects are recognised by `hash()` of their bytes: 64 bits, keyed by a secret seed
# drawn per process, so no upstream can make a changed object pass for an unchanged one. With
# the seed fixed (PYTHONHASHSEED), it could be computed: every answer is then decoded in full.
ENABLED = os.environ.get("PYTHONHASHSEED", "random") == "random"


@dataclass(slots=True)
class Layout:
    """What the last answer to a request (`ids`) decoded to, object by object: a hash of each
    object's bytes and its (canonical) status and resale status. Never changed in place."""

    ids: list[str]
    hashes: array[int]
    statuses: list[str | None]
    resales: list[str | None]


def objects(body: bytes, n: int, *, count_braces: bool = True) -> list[bytes] | None:
    """The bytes inside each object of `body`, if it is a compact array of exactly n flat
    objects with no brace inside any string; else None.

    Without `count_braces`, the caller checks that no part holds a brace (then every `},{` was
    a boundary between two objects, as counting would have shown)."""
    if n == 0 or not (body.startswith(b"[{") and body.endswith(b"}]")):
        return None
    # One `{` and one `}` per object: then every `},{` is a boundary between two objects.
    if count_braces and (body.count(b"{") != n or body.count(b"}") != n):
        return None
    parts = body[2:-2].split(b"},{")
    return parts if len(parts) == n else None


def layout_of(
    body: bytes, ids: list[str], statuses: list[str | None], resales: list[str | None]
) -> Layout | None:
    """The layout of an answer decoded in full by the fast path (every requested ID once, in
    request order, each value known), or None when its bytes are not in the layout `objects`
    reads."""
    if not ENABLED or len(statuses) != len(ids) or len(resales) != len(ids):
        return None
    parts = objects(body, len(ids))
    if parts is None:
        return None
    try:
        canonical = CANONICAL.__getitem__
        return Layout(
            ids,
            array("q", map(hash, parts)),
            list(map(canonical, statuses)),
            list(map(canonical, resales)),
        )
    except (KeyError, TypeError):
        return None


def decode_delta(
    body: bytes, requested: list[str], last: Layout
) -> tuple[list[str | None], list[str | None], Layout] | None:
    """The statuses and resale statuses of `body` (an answer to `requested`, whose last answer
    had layout `last`), decoding only the objects that changed, and the new layout; None when
    that cannot be done (decode the whole answer then)."""
    n = len(requested)
    if not ENABLED or len(last.hashes) != n or last.ids != requested:
        return None
    # No brace count over the whole body: a part with the hash of the last answer's part
    # there has its bytes, which held none (`layout_of` counted); the others are checked below.
    parts = objects(body, n, count_braces=False)
    if parts is None:
        return None
    hashes = array("q", map(hash, parts))
    changed = list(compress(range(n), map(ne, hashes, last.hashes)))
    if len(changed) > n * MOST_CHANGED:
        return None
    statuses = last.statuses.copy()
    resales = last.resales.copy()
    for i in changed:
        part = parts[i]
        if b"{" in part or b"}" in part:
            return None
        try:
            item: Any = orjson.loads(b"{" + part + b"}")
        except orjson.JSONDecodeError:
            return None
        eid = item.get("eventId")
        if eid is None:
            eid = item.get("eventid")
        if eid != requested[i]:
            return None  # not the event asked for at this place: let the careful path judge
        try:
            statuses[i] = CANONICAL[item.get("status")]
            resales[i] = CANONICAL[item.get("resaleStatus")]
        except (KeyError, TypeError):
            return None  # an unknown status, or not a string: the careful path counts it
    # The answer's columns are the caller's to keep or change; the layout's stay as they are.
    return statuses, resales, Layout(requested, hashes, statuses.copy(), resales.copy())

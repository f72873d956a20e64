"""Reading an upstream answer's body within a size cap.

A 1000-ID Inventory Status answer is 60-100 KB; nothing an upstream sends is read past the
cap: not a 50 MB body, not an endless chunked stream, not a gzip bomb (the cap counts the
*decoded* bytes, and aiohttp inflates a compressed body a bounded piece at a time, as it is
read). The time a read may take is bounded by the request's total timeout, not an idle one,
so a body that trickles a byte a second ends too.
"""

from __future__ import annotations

from typing import Final

import aiohttp

DEFAULT_MAX_BYTES: Final = 4 * 1024 * 1024


class AnswerTooLarge(Exception):
    """The body (as declared, or as read and decoded) is larger than the cap."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        if declared is not None:
            text = f"answer declares {declared} bytes, over the {limit}-byte cap"
        else:
            text = f"answer is over the {limit}-byte cap (decoded)"
        super().__init__(text)
        self.limit = limit


async def read_capped(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole (decoded) body of `resp`, or AnswerTooLarge as soon as it passes `limit`."""
    declared = resp.content_length
    if declared is not None and declared > limit:
        raise AnswerTooLarge(limit, declared)
    chunks: list[bytes] = []
    size = 0
    content = resp.content
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise AnswerTooLarge(limit)
        chunks.append(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)

"""How many event IDs go in one Inventory Status request, under a gateway's size limit.

The limit (`upstream.max_url_bytes` for GET and POST_QUERY; none for POST until a 413) starts as
configured and is halved each time the upstream refuses a request as too large (414/413), never
grown back: the daemon keeps a size that works. The arithmetic is `monitor.core.request_size`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monitor.core.request_size import (
    TYPICAL_ID_BYTES,
    fitting,
    ids_per_request,
    request_bytes,
    shrunk_limit,
)
from monitor.logs import get_logger
from monitor.metrics import Metrics

log = get_logger("monitor.dispatcher")

REGION_ROOM = 16
"""Bytes kept free when estimating a batch before its region is known (`&region=XX`)."""


class RequestSizer:
    """The request size limit in force, and batches cut to fit it.

    `fixed_bytes(region)` is the size of a request for no IDs (the client knows its URL);
    `sized` says what the limit applies to (`url` or `body`), for the log.
    """

    def __init__(
        self,
        *,
        fixed_bytes: Callable[[str | None], int],
        sized: str,
        batch_size: int,
        limit: int | None,
        metrics: Metrics,
    ) -> None:
        self._fixed_of = fixed_bytes
        self._sized = sized
        self._batch_size = batch_size
        self._metrics = metrics
        self._fixed: dict[str | None, int] = {}
        self._id_bytes = float(TYPICAL_ID_BYTES)  # mean ID length of the last batch
        self.limit = limit
        if limit is not None:
            metrics.upstream_request_limit_bytes.set(limit)

    def _fixed_bytes(self, region: str | None) -> int:
        fixed = self._fixed.get(region)
        if fixed is None:
            fixed = self._fixed[region] = self._fixed_of(region)
        return fixed

    def batch_ids(self) -> int:
        """How many IDs to take for the next request."""
        fixed = self._fixed_bytes(None) + REGION_ROOM
        return ids_per_request(self._batch_size, self.limit, fixed, self._id_bytes)

    def fit(self, region: str | None, ids: list[str]) -> tuple[list[str], list[str]]:
        """(the leading IDs that fit in one request, the rest)."""
        if self.limit is None or not ids:
            return ids, []
        self._id_bytes = request_bytes(ids, 0) / len(ids) - 1
        n = fitting(ids, self._fixed_bytes(region), self.limit)
        return ids[:n], ids[n:]

    def refused(self, region: str | None, ids: Sequence[str], status: int | None) -> bool:
        """The upstream refused a request for `ids` as too large: lower the limit (logged
        once per size). False when the request cannot be split (one ID)."""
        if len(ids) == 1:
            return False
        fixed = self._fixed_bytes(region)
        refused = request_bytes(ids, fixed)
        new = shrunk_limit(self.limit, refused, fixed + max(map(len, ids)) + 1)
        if self.limit is None or new < self.limit:
            self.limit = new
            self._metrics.upstream_request_limit_bytes.set(new)
            log.warning(
                "upstream refuses requests this large; sending smaller ones from now on",
                status=status,
                refused_bytes=refused,
                limit_bytes=new,
                sized=self._sized,
            )
        self._metrics.upstream_request_splits_total.inc()
        return True

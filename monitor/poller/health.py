"""What readiness depends on: state loaded and writable, the upstream accepting the key,
requests not held back for long, the cluster's leases; kept in the `ready` gauge."""

from __future__ import annotations

from collections.abc import Callable

from monitor.metrics import Metrics


class Health:
    """What readiness depends on: state loaded, the upstream accepting the key, no long pause."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.state_loaded = False
        self.key_status = "unchecked"  # unchecked | accepted | refused
        self.nothing_to_poll = False
        self.cluster: Callable[[], tuple[bool, str]] | None = None
        self.store: Callable[[], tuple[bool, str]] | None = None  # (writable, why not)
        self.standby: Callable[[], bool] = lambda: False
        # Why upstream requests are held back for long, when they are (set by the dispatcher).
        self.upstream_pause: Callable[[], str | None] = lambda: None
        self.reason = "starting"
        self._metrics = metrics

    def key_accepted(self) -> None:
        """The upstream answered a request with 2xx."""
        if self.key_status != "accepted" and self._metrics:
            self._metrics.upstream_key_accepted.set(1)
        self.key_status = "accepted"

    def key_refused(self, why: str) -> None:
        """The upstream answered 401 or 403."""
        self.key_status = "refused"
        self.reason = why
        if self._metrics:
            self._metrics.upstream_key_accepted.set(0)

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason); also kept in the `ready` gauge."""
        ready, reason = self._readiness()
        if self._metrics:
            self._metrics.ready.set(1 if ready else 0)
        return ready, reason

    def _readiness(self) -> tuple[bool, str]:
        if not self.state_loaded:
            return False, "state not loaded yet"
        if self.store is not None:
            ok, why = self.store()
            if not ok:
                return False, why
        if self.cluster is not None:
            ok, why = self.cluster()
            if not ok:
                return False, why
        if self.key_status == "refused":
            return False, f"upstream refuses the API key: {self.reason}"
        paused = self.upstream_pause()
        if paused is not None:
            return False, paused
        if self.key_status == "accepted":
            return True, "ok"
        if self.standby():
            return True, "hot standby: no share of the rate budget, ready to take over"
        if self.nothing_to_poll:
            return True, "no events are watched"
        return False, "waiting for the first upstream answer"

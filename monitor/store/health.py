"""Whether the state store can take writes: what readiness, a metric and the log are told.

A store that cannot write (a full disk, a read-only file, a state file deleted or replaced
under the running daemon, a database that refuses) must not look healthy: nothing it detects
could be kept. `WriteHealth` holds the store's verdict: ok until a write fails, then the
failure's root cause until a write succeeds again. A state file that is no longer the one at
the configured path stays failed until a restart: writing on would only feed an orphan.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monitor.clock import Clock
from monitor.core.summary import Summary
from monitor.logs import get_logger, redact

log = get_logger("monitor.store")

#: SQLite result codes (the primary code, before any "_" suffix) by failure kind.
_SQLITE_KINDS = {
    "SQLITE_FULL": "full",
    "SQLITE_READONLY": "readonly",
    "SQLITE_IOERR": "io",
    "SQLITE_CANTOPEN": "io",
    "SQLITE_CORRUPT": "corrupt",
    "SQLITE_NOTADB": "corrupt",
    "SQLITE_BUSY": "busy",
    "SQLITE_LOCKED": "busy",
    "SQLITE_PERM": "readonly",
    "SQLITE_AUTH": "readonly",
}
#: PostgreSQL SQLSTATEs (or their two-character class) by failure kind.
_PG_KINDS = {
    "53100": "full",  # disk_full
    "25006": "readonly",  # read_only_sql_transaction (a standby after a failover)
    "42501": "denied",  # insufficient_privilege
    "08": "unavailable",  # connection exceptions
    "53": "unavailable",  # out of memory, too many connections
    "57": "unavailable",  # operator intervention: shutdown, cancelled
}


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """Why a write failed: a short `kind` (a metric label) and the root cause, as text."""

    kind: str
    cause: str


class StateFileMoved(Exception):
    """The state file open is no longer the file at the configured path: nothing is written."""


def root_cause(exc: BaseException) -> WriteFailure:
    """The failure an exception stands for: the innermost database error in its chain (an
    error while rolling back would hide the one that made the transaction fail), else the
    exception itself."""
    seen: set[int] = set()
    found: WriteFailure | None = None
    node: BaseException | None = exc
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        found = _classify(node) or found
        node = node.__cause__ or node.__context__
    return found or WriteFailure("error", _text(exc))


def _classify(exc: BaseException) -> WriteFailure | None:
    if isinstance(exc, StateFileMoved):
        return WriteFailure("moved", _text(exc))
    code = getattr(exc, "sqlite_errorname", None)
    if isinstance(code, str):
        primary = "_".join(code.split("_")[:2])
        return WriteFailure(_SQLITE_KINDS.get(primary, "error"), _text(exc))
    state = getattr(exc, "sqlstate", None)
    if isinstance(state, str):
        kind = _PG_KINDS.get(state) or _PG_KINDS.get(state[:2], "error")
        return WriteFailure(kind, _text(exc))
    if isinstance(exc, OSError | ConnectionError | TimeoutError):
        return WriteFailure("unavailable", _text(exc))
    if type(exc).__module__.startswith("asyncpg"):  # closed connections, protocol errors
        return WriteFailure("unavailable", _text(exc))
    return None


def _text(exc: BaseException) -> str:
    return redact(str(exc) or type(exc).__name__)[:300]


#: Told of every failure (with it) and of every recovery (None).
Observer = Callable[[WriteFailure | None], None]


class WriteHealth:
    """The store's fitness for writes, for readiness, metrics and the log.

    Real writes decide: a failed one makes the store unhealthy, a successful one healthy again.
    A probe (a tiny write the store makes while nothing else writes) finds trouble an idle
    store would not; its success only undoes what a probe found, so a probe that fits where a
    batch does not cannot make readiness flap. `moved` is final until a restart. Failures of
    one kind are logged once, then as a count every `summary_seconds`; the recovery too.
    """

    def __init__(self, clock: Clock, *, what: str, summary_seconds: float = 60.0) -> None:
        self._clock = clock
        self._what = what
        self._summary = Summary(summary_seconds, max_keys=64)
        self._observers: list[Observer] = []
        self._write_failed = False
        self._probe_failed = False
        self._last: WriteFailure | None = None
        self.moved: WriteFailure | None = None
        self.last_success = clock.monotonic()

    def observe(self, observer: Observer) -> None:
        """Call `observer` on every failure and recovery from now on."""
        self._observers.append(observer)

    @property
    def ok(self) -> bool:
        """Whether the store takes writes, as far as anyone knows."""
        return self.moved is None and not self._write_failed and not self._probe_failed

    @property
    def failure(self) -> WriteFailure | None:
        """Why writes fail (None while they go in)."""
        return None if self.ok else self.moved or self._last

    def state(self) -> tuple[bool, str]:
        """(True, "ok"), or (False, why writes fail) for readiness."""
        failure = self.failure
        if failure is None:
            return True, "ok"
        cause = failure.cause
        return False, f"the {self._what} cannot take writes: {cause}"

    def failed(self, failure: WriteFailure, *, probe: bool = False) -> None:
        """A write (or a probe) failed."""
        if failure.kind == "moved":
            self.moved = self.moved or failure
        elif probe:
            self._probe_failed = True
        else:
            self._write_failed = True
        self._last = failure
        held = self._summary.admit(failure.kind, self._clock.monotonic())
        if held is not None:
            log.error(
                f"the {self._what} cannot take writes; not ready until it can",
                kind=failure.kind,
                error=failure.cause,
                **({"repeated": held} if held else {}),
            )
        for observer in self._observers:
            observer(failure)

    def succeeded(self, *, probe: bool = False) -> None:
        """A write (or a probe) went in."""
        self.last_success = self._clock.monotonic()
        was = self.ok
        self._probe_failed = False
        if not probe:
            self._write_failed = False
        if was or not self.ok:
            return
        held = {kind: self._summary.clear(kind) for kind in list(_ALL_KINDS)}
        log.info(
            f"the {self._what} takes writes again",
            failures_not_logged=sum(held.values()),
        )
        for observer in self._observers:
            observer(None)


_ALL_KINDS = frozenset(
    [*_SQLITE_KINDS.values(), *_PG_KINDS.values(), "error", "unavailable", "moved"]
)

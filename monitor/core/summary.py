"""Log summaries: the first failure of a kind is written at once, its repeats as a count.

An outage makes the same failure happen hundreds of times a second (every delivery attempt to a
receiver that is down, every request to an upstream that refuses). Writing each one floods the
log an operator reads during exactly that outage. `Summary` decides, per key (a kind of failure
and its target), which occurrences get a line: the first at once, then at most one line every
`every` seconds carrying how many were held back since the last line. Metrics still count every
occurrence; only the log is summarised. Pure: the caller gives the time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class _Run:
    last_line: float
    held: int = 0


class Summary:
    """Which occurrences of a repeated failure get a log line.

    `admit(key, now)` answers None for an occurrence to leave out of the log, or the number of
    occurrences held back since the key's last line (0 for the first of a run). `clear(key)`
    ends a run (the target recovered) and answers how many were held back and never written.
    At most `max_keys` runs are remembered; the oldest is forgotten first, so a churn of
    targets cannot grow memory.
    """

    def __init__(self, every: float = 60.0, max_keys: int = 4096) -> None:
        if every <= 0 or max_keys < 1:
            raise ValueError("every must be > 0 and max_keys >= 1")
        self.every = every
        self.max_keys = max_keys
        self._runs: OrderedDict[Hashable, _Run] = OrderedDict()

    def admit(self, key: Hashable, now: float) -> int | None:
        """None to hold this occurrence back, else the count held back since the last line."""
        run = self._runs.get(key)
        if run is None:
            self._runs[key] = _Run(last_line=now)
            if len(self._runs) > self.max_keys:
                self._runs.popitem(last=False)
            return 0
        self._runs.move_to_end(key)
        if now - run.last_line >= self.every or now < run.last_line:
            held, run.held, run.last_line = run.held, 0, now
            return held
        run.held += 1
        return None

    def clear(self, key: Hashable) -> int:
        """End the run of `key`; the number of occurrences held back and not yet written."""
        run = self._runs.pop(key, None)
        return 0 if run is None else run.held

    def __len__(self) -> int:
        return len(self._runs)

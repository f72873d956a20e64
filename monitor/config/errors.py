"""Config errors that name their key path."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem, at one key path such as `watch_sets[1].events[4]`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


#: Issues `render` lists before it sums up the rest in one line.
RENDERED_MAX = 200


class ConfigError(Exception):
    """Every problem found in a config, reported together."""

    def __init__(self, issues: Sequence[ConfigIssue], source: str = "") -> None:
        self.issues = list(issues)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        """All issues, one per line."""
        head = f"{self.source}: " if self.source else ""
        n = len(self.issues)
        lines = [f"{head}{n:,} error{'s' if n != 1 else ''} in config"]
        lines += [f"  {issue}" for issue in self.issues[:RENDERED_MAX]]
        if n > RENDERED_MAX:
            lines.append(f"  ... and {n - RENDERED_MAX:,} more")
        return "\n".join(lines)


def join_path(parts: Iterable[str | int]) -> str:
    """`("watch_sets", 1, "events", 4)` -> `watch_sets[1].events[4]`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part) if len(str(part)) <= 80 else str(part)[:80] + "..."
            out += f".{text}" if out else text
    return out

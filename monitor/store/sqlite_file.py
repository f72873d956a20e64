"""The SQLite state file as it was opened, and whether the configured path still names it.

Deleting or replacing the state file under a running daemon (`rm`, a restore copied over it, a
new volume mounted) does not stop SQLite: it writes on to the old, unlinked file, and all of it
is gone at the next start. So the store remembers which file (device and inode) it opened and
compares the path with it before every write and every few seconds.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from monitor.logs import get_logger

log = get_logger("monitor.store")

#: The files SQLite keeps beside the database in WAL mode.
SIDE_FILES = ("-wal", "-shm")


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


class FileIdentity:
    """Which files the store opened (the database and its WAL side files), by device and inode."""

    def __init__(self, path: Path) -> None:
        self._path = str(path)
        self._pinned: dict[str, tuple[int, int]] = {}

    def pin(self) -> None:
        """Remember the files now at the path (right after opening them)."""
        for suffix in ("", *SIDE_FILES):
            ident = _identity(self._path + suffix)
            if ident is not None:
                self._pinned[suffix] = ident

    def moved(self) -> str | None:
        """None while the path names the open file; else what happened to it."""
        pinned = self._pinned.get("")
        if pinned is None:
            return None
        now = _identity(self._path)
        if now == pinned:
            return None
        what = "deleted or moved away" if now is None else "replaced by another file"
        return (
            f"the state file {self._path} was {what} while the daemon ran; nothing more is "
            "written to the old one: restart the daemon"
        )

    def remove_orphans(self) -> None:
        """Delete the WAL side files of the old file, when the path still names them. (SQLite
        leaves them when the database file has moved; beside a new file they would confuse.)"""
        for suffix in SIDE_FILES:
            pinned = self._pinned.get(suffix)
            path = self._path + suffix
            if pinned is not None and _identity(path) == pinned:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    log.warning("removed the side file of the old state file", path=path)


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error. The error raised is the one that
    made the transaction fail: SQLite rolls back by itself after some (a full disk), and a
    ROLLBACK then would fail with "no transaction is active" and hide the real cause."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise

"""The start-up checks that need the machine: what `run` would trip over before it polls.

`check-config` and `run` both call `preflight` after the config validates, so a config that
`check-config` accepts gets past every step of starting short of opening its sockets and its
database, and one that `run` would refuse is refused by both with the key path. Nothing here
binds, connects or writes.
"""

from __future__ import annotations

import inspect
import os
import re
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from monitor.config.errors import ConfigIssue
from monitor.config.models import Config, State, parse_listen

_SQLITE_MAGIC = b"SQLite format 3\x00"


def preflight(
    config: Config, resolve: Callable[[str, int], object] | None = None
) -> list[ConfigIssue]:
    """Every problem that would stop the daemon from starting, with its key path.

    `resolve(host, port)` raises OSError for a listen host that does not resolve (default: the
    system resolver, as the server's bind would use it).
    """
    issues: list[ConfigIssue] = []
    _check_listen(config.server.listen, resolve or _resolve, issues)
    if config.state.backend == "sqlite":
        problem = sqlite_path_problem(config.state.path)
        if problem:
            issues.append(ConfigIssue("state.path", problem))
    else:
        _check_dsn(config.state, issues)
    return issues


def _resolve(host: str, port: int) -> object:
    return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)


def _check_listen(
    listen: str, resolve: Callable[[str, int], object], issues: list[ConfigIssue]
) -> None:
    host, port = parse_listen(listen)
    try:
        resolve(host, port)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        issues.append(ConfigIssue("server.listen", f"cannot resolve host {host!r}: {reason}"))


def sqlite_path_problem(path: str) -> str | None:
    """Why a SQLite state file cannot be opened or created at `path`, or None.

    The file may exist (a regular, readable and writable SQLite file) or not (then the nearest
    existing folder above it must be a writable folder: the daemon creates the rest). Its folder
    must be writable either way: SQLite keeps its journal and the daemon its lock file there.
    """
    if path == ":memory:":
        return None
    p = Path(path)
    if path.endswith(("/", os.sep)) or p.name in ("", ".", ".."):
        return f"{path!r} names a folder; give a file such as ./data/monitor.db"
    try:
        if p.exists() or p.is_symlink():
            return _existing_file_problem(p)
        return _new_file_problem(p)
    except OSError as exc:
        return f"cannot use {path}: {exc.strerror}"


def _existing_file_problem(p: Path) -> str | None:
    info = p.stat()
    if p.is_dir():
        return f"{p} is a directory; give a file inside it such as {p / 'monitor.db'}"
    if not p.is_file():
        return f"{p} is not a regular file (a device, a FIFO or a socket)"
    if not os.access(p, os.R_OK | os.W_OK):
        return f"{p} is not readable and writable by this user"
    if info.st_size:
        with open(p, "rb") as handle:
            if handle.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                return f"{p} exists and is not a SQLite database"
    return _folder_problem(p.parent)


def _new_file_problem(p: Path) -> str | None:
    folder = p.parent
    while not folder.exists():
        if folder.is_symlink():
            return f"{folder} is a broken symbolic link"
        folder = folder.parent
    return _folder_problem(folder)


def _folder_problem(folder: Path) -> str | None:
    if not folder.is_dir():
        return f"{folder} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"the folder {folder} is not writable by this user"
    return None


def _check_dsn(state: State, issues: list[ConfigIssue]) -> None:
    """The DSN's shape, then the DSN as the PostgreSQL driver itself parses it (without
    connecting). The driver's messages are not repeated: they could quote the DSN, which holds
    the password."""
    assert state.dsn is not None  # the model requires one with backend postgres
    try:
        check_dsn_shape(state.dsn.reveal())
    except ValueError as exc:
        issues.append(ConfigIssue("state.dsn", str(exc)))
        return
    parse = _driver_parser()
    if parse is None:
        return
    try:
        parse(state.dsn.reveal())
    except Exception as exc:  # any failure is the same finding
        kind = type(exc).__name__
        hint = (
            " (check its sslmode, ports and other parameters)"
            if kind == "ClientConfigurationError"
            else ""
        )
        issues.append(ConfigIssue("state.dsn", f"the PostgreSQL driver cannot parse it{hint}"))


def check_dsn_shape(dsn: str) -> None:
    """A PostgreSQL URI (postgres:// or postgresql://) whose ports are 1-65535; raises
    ValueError with a reason that never repeats the DSN (it holds a password)."""
    try:
        parts = urlsplit(dsn)
    except ValueError:
        raise ValueError("the DSN is not a valid URI (postgresql://user@host:5432/db)") from None
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError("the DSN must start with postgresql:// or postgres://")
    hosts = parts.netloc.rpartition("@")[2]
    for hostport in hosts.split(","):
        m = _HOSTPORT_RE.fullmatch(hostport)
        if m is None:
            raise ValueError("a host in the DSN is not host, host:port or [v6]:port")
        if m[1] is not None and not 1 <= int(m[1]) <= 65535:
            raise ValueError("a port in the DSN is not a number from 1 to 65535")


_HOSTPORT_RE = re.compile(r"(?:\[[0-9A-Fa-f:.%\w]*\]|[^\[\]:/?#\s]*)(?::(\d{1,5}))?")


def _driver_parser() -> Callable[[str], Any] | None:
    """asyncpg's own DSN parser, called with every other argument unset; None when this
    asyncpg has none by that name (the DSN's shape is still checked by the model)."""
    try:
        from asyncpg import connect_utils
    except ImportError:  # pragma: no cover - a declared dependency
        return None
    parser = getattr(connect_utils, "_parse_connect_dsn_and_args", None)
    if parser is None:
        return None
    names = list(inspect.signature(parser).parameters)

    def parse(dsn: str) -> Any:
        return parser(**{**dict.fromkeys(names), "dsn": dsn})

    return parse

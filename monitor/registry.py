"""The watch sets the runtime API manages: each change validated, applied and stored as one step.

Changes run one at a time (a lock), so two requests never read the same old set and both write
their own copy of it. A change is first checked against the whole configuration (a new catalog
is built), then applied to the running daemon, then stored: if applying fails nothing is stored,
and if storing fails what was applied is taken back. Creating is atomic in the store too (a
second replica creating the same name finds the row and gets a 409), and updates compare and
swap against what this process last read, so a change another replica made is not overwritten.

What was stored by an older version and no longer validates is reported at start, with what to
do, and left out; it never stops the daemon from starting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError

from monitor.config import Config, ConfigIssue
from monitor.config.catalog import Catalog, build_catalog
from monitor.config.loader import validation_issues
from monitor.config.models import WatchSet
from monitor.logs import get_logger
from monitor.store.base import Store

log = get_logger("monitor.registry")

KIND = "watch_set"
#: How often an update is tried again when another replica changed the set in between.
CAS_ATTEMPTS = 3


class ChangeRefused(Exception):
    """A change that cannot be made; `status` is the HTTP status the API answers with."""

    def __init__(
        self, status: int, message: str, field: str = "", errors: list[str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.errors = errors or []


def spec_of(ws: WatchSet) -> dict[str, Any]:
    """How a watch set is stored."""
    return ws.model_dump(mode="json", exclude_none=True)


class WatchSetRegistry:
    """API-made watch sets; the daemon gives it the config and how to use a new catalog."""

    def __init__(
        self,
        *,
        store: Store,
        config: Callable[[], Config],
        use_catalog: Callable[[Catalog], None],
        catalog: Callable[[], Catalog],
    ) -> None:
        self._store = store
        self._config = config
        self._use_catalog = use_catalog
        self._catalog = catalog
        self._sets: dict[str, WatchSet] = {}
        self._stored: dict[str, dict[str, Any]] = {}  # as read or written, for compare and swap
        self._invalid: dict[str, str] = {}  # stored, but refused at load: name -> why
        self._lock = asyncio.Lock()

    # -- reading ---------------------------------------------------------------------------

    def sets(self) -> Mapping[str, WatchSet]:
        """The API-made sets in use, by name."""
        return self._sets

    def listing(self) -> list[tuple[WatchSet, str]]:
        """Every watch set with its origin ("config" or "api"), the config file's first."""
        config = self._config()
        names = {ws.name for ws in config.watch_sets}
        out = [(ws, "config") for ws in config.watch_sets]
        return out + [(ws, "api") for n, ws in sorted(self._sets.items()) if n not in names]

    def effective(self, config: Config | None = None) -> Config:
        """The config with the API-made sets added (a config set shadows one of its name)."""
        return _with_sets(config or self._config(), self._sets)

    # -- loading ---------------------------------------------------------------------------

    async def load(self) -> None:
        """Read the stored sets; each one that no longer validates is reported and left out."""
        async with self._lock:
            stored = await self._store.load_objects(KIND)
            sets: dict[str, WatchSet] = {}
            invalid: dict[str, str] = {}
            for name, spec in sorted(stored.items()):
                ws, why = _validated(name, spec)
                if ws is None:
                    invalid[name] = why or "invalid"
                else:
                    sets[name] = ws
            invalid |= _drop_conflicting(self._config(), sets)
            for name, why in invalid.items():
                if name not in self._invalid:
                    log.error(
                        "a stored watch set is left out: it does not validate any more (stored "
                        "by an older version, or it conflicts with the config); delete it with "
                        "DELETE /v1/watch-sets/NAME and create it again",
                        watch_set=name,
                        problems=why,
                    )
            self._sets = sets
            self._stored = {name: stored[name] for name in sets}
            self._invalid = invalid

    # -- changes ---------------------------------------------------------------------------

    async def create(self, ws: WatchSet, max_sets: int) -> None:
        """Create an API watch set (409 when the name is taken, here or by another replica, or
        when `max_sets` watch sets exist, the config file's included)."""
        async with self._lock:
            self._check_name_free(ws.name)
            if len(self.listing()) >= max_sets:
                raise ChangeRefused(409, f"at most {max_sets} watch sets can exist")
            spec = spec_of(ws)
            undo = self._apply({**self._sets, ws.name: ws}, ws.name)
            try:
                created = await self._store.create_object(KIND, ws.name, spec)
            except BaseException:
                undo()
                raise
            if not created:
                undo()
                raise ChangeRefused(
                    409, f"watch set {ws.name!r} exists (made by another replica)", "name"
                )
            self._stored[ws.name] = spec

    async def update(self, name: str, change: Callable[[WatchSet], WatchSet]) -> WatchSet:
        """Change an API watch set: `change` gets the current set and returns the new one."""
        async with self._lock:
            for _ in range(CAS_ATTEMPTS):
                current = self._owned(name)
                new = change(current)
                spec = spec_of(new)
                undo = self._apply({**self._sets, name: new}, name)
                try:
                    swapped = await self._store.replace_object(KIND, name, self._stored[name], spec)
                except BaseException:
                    undo()
                    raise
                if swapped:
                    self._stored[name] = spec
                    return new
                undo()
                await self._reread(name)
            raise ChangeRefused(409, f"watch set {name!r} keeps changing; try again")

    async def delete(self, name: str) -> None:
        """Delete an API watch set (or a stored one that was refused at load)."""
        async with self._lock:
            if name in self._invalid and name not in self._sets:
                await self._store.delete_object(KIND, name)
                del self._invalid[name]
                return
            self._owned(name)
            rest = {n: ws for n, ws in self._sets.items() if n != name}
            undo = self._apply(rest, name)
            try:
                await self._store.delete_object(KIND, name)
            except BaseException:
                undo()
                raise
            self._stored.pop(name, None)

    # -- helpers ---------------------------------------------------------------------------

    def _check_name_free(self, name: str) -> None:
        if any(ws.name == name for ws in self._config().watch_sets) or name in self._sets:
            raise ChangeRefused(409, f"watch set {name!r} exists", "name")
        if name in self._invalid:
            raise ChangeRefused(
                409,
                f"a stored watch set {name!r} no longer validates; delete it first",
                "name",
            )

    def _owned(self, name: str) -> WatchSet:
        if any(ws.name == name for ws in self._config().watch_sets):
            raise ChangeRefused(409, f"watch set {name!r} belongs to the config file")
        ws = self._sets.get(name)
        if ws is None:
            raise ChangeRefused(404, f"no watch set {name!r}")
        return ws

    def _apply(self, sets: dict[str, WatchSet], changed: str) -> Callable[[], None]:
        """Check `sets` against the whole config and put them to use; returns how to undo.

        Problems are reported with key paths inside the `changed` set's body (`events[0]`).
        """
        issues: list[ConfigIssue] = []
        effective = _with_sets(self._config(), sets)
        catalog = build_catalog(effective, issues)
        if issues:
            index = next((i for i, ws in enumerate(effective.watch_sets) if ws.name == changed), -1)
            own = [_relative(i, index) for i in issues]
            problems = [str(i) for i in own]
            raise ChangeRefused(409, problems[0], own[0].path or "events", problems)
        before_sets, before_catalog = self._sets, self._catalog()

        def undo() -> None:
            self._sets = before_sets
            try:
                self._use_catalog(before_catalog)
            except Exception:
                log.exception("taking a watch set change back failed")

        self._sets = sets
        try:
            self._use_catalog(catalog)
        except Exception as exc:
            log.exception("a watch set change could not be applied; it was taken back")
            undo()
            raise ChangeRefused(422, f"cannot be applied: {type(exc).__name__}") from None
        return undo

    async def _reread(self, name: str) -> None:
        """Another replica changed `name`: take what the store holds now."""
        spec = (await self._store.load_objects(KIND)).get(name)
        ws = _validated(name, spec)[0] if spec is not None else None
        sets = dict(self._sets)
        if ws is None:
            sets.pop(name, None)
            self._stored.pop(name, None)
        else:
            sets[name], self._stored[name] = ws, spec or {}
        self._apply(sets, name)


def _validated(name: str, spec: Mapping[str, Any]) -> tuple[WatchSet | None, str | None]:
    try:
        ws = WatchSet.model_validate(spec)
    except ValidationError as exc:
        return None, "; ".join(str(i) for i in validation_issues(exc, spec, WatchSet)[:5])
    if ws.name != name or ws.events_file is not None:
        return None, "the stored name or events_file is not one the API makes"
    return ws, None


def _with_sets(config: Config, sets: Mapping[str, WatchSet]) -> Config:
    names = {ws.name for ws in config.watch_sets}
    extra = [ws for name, ws in sorted(sets.items()) if name not in names]
    if not extra:
        return config
    return config.model_copy(update={"watch_sets": [*config.watch_sets, *extra]})


def _drop_conflicting(config: Config, sets: dict[str, WatchSet]) -> dict[str, str]:
    """Take the sets out of `sets` that conflict with the config or an earlier set; why each.

    One catalog build finds every conflict; the sets named in its problems go, until none are.
    """
    dropped: dict[str, str] = {}
    while sets:
        effective = _with_sets(config, sets)
        issues: list[ConfigIssue] = []
        build_catalog(effective, issues)
        first_api = len(config.watch_sets)
        by_set: dict[str, list[str]] = {}
        for issue in issues:
            index = _set_index(issue.path)
            if index is not None and index >= first_api:
                by_set.setdefault(effective.watch_sets[index].name, []).append(str(issue))
        if not by_set:
            break
        for name, problems in by_set.items():
            dropped[name] = "; ".join(problems[:5])
            del sets[name]
    return dropped


def _relative(issue: ConfigIssue, index: int) -> ConfigIssue:
    """An issue of the watch set at `index`, with its path made relative to that set."""
    prefix = f"watch_sets[{index}]."
    if issue.path.startswith(prefix):
        return ConfigIssue(issue.path[len(prefix) :], issue.message)
    return issue


def _set_index(path: str) -> int | None:
    """The watch-set index of a key path `watch_sets[3]...`."""
    if not path.startswith("watch_sets["):
        return None
    digits = path[len("watch_sets[") :].split("]", 1)[0]
    return int(digits) if digits.isdigit() else None

"""Webhook subscriptions: those of the config file and those created through the API.

What the config defines belongs to the config (the API may not change it); what the API
creates lives in the store and survives restarts and reloads. A 410 Gone disables either kind,
and that too is remembered in the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from monitor.config.models import Filter, Webhook
from monitor.core.filters import TransitionFilter, TransitionLike
from monitor.logs import get_logger
from monitor.secrets import Secret
from monitor.store.base import Store

log = get_logger("monitor.subscriptions")

KIND = "subscription"
STATE_KIND = "subscription_state"


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscriber: where to POST, how to sign, what it wants."""

    name: str
    url: str
    secrets: tuple[Secret, ...]
    filter: Filter = field(default_factory=Filter)
    format: str = "standard"
    max_in_flight: int = 64
    enabled: bool = True
    origin: str = "config"  # config | api
    disabled_reason: str | None = None

    @property
    def matcher(self) -> TransitionFilter:
        """The filter as the pure matcher."""
        f = self.filter
        return TransitionFilter.of(
            watch_sets=f.watch_sets, event_ids=f.event_ids, fields=f.fields, from_=f.from_, to=f.to
        )

    def public(self) -> dict[str, Any]:
        """What the API shows (never the secrets themselves)."""
        return {
            "name": self.name,
            "url": self.url,
            "filter": self.filter.model_dump(by_alias=True, exclude_defaults=True),
            "format": self.format,
            "max_in_flight": self.max_in_flight,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "origin": self.origin,
            "secrets": len(self.secrets),
        }

    def to_spec(self) -> dict[str, Any]:
        """How an API-created subscription is stored (secrets included: the store is 0600)."""
        return {
            "name": self.name,
            "url": self.url,
            "secrets": [s.reveal() for s in self.secrets],
            "filter": self.filter.model_dump(by_alias=True, exclude_defaults=True),
            "format": self.format,
            "max_in_flight": self.max_in_flight,
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Subscription:
        """The inverse of `to_spec`."""
        return cls(
            name=spec["name"],
            url=spec["url"],
            secrets=tuple(Secret(s) for s in spec["secrets"]),
            filter=Filter.model_validate(spec.get("filter", {})),
            format=spec.get("format", "standard"),
            max_in_flight=int(spec.get("max_in_flight", 64)),
            enabled=bool(spec.get("enabled", True)),
            origin="api",
            disabled_reason=spec.get("disabled_reason"),
        )


def from_config(hook: Webhook) -> Subscription:
    """A config-file webhook as a subscription."""
    return Subscription(
        name=hook.name,
        url=hook.url,
        secrets=tuple(hook.all_secrets()),
        filter=hook.filter,
        format=hook.format,
        max_in_flight=hook.max_in_flight,
        enabled=hook.enabled,
        origin="config",
    )


class Subscriptions:
    """Every subscription, by name, with routing of transitions to them."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._config: dict[str, Subscription] = {}
        self._api: dict[str, Subscription] = {}
        self._matchers: dict[str, TransitionFilter] = {}
        self.refused: dict[str, str] = {}  # stored, but no longer valid: name -> why

    async def load(self, webhooks: Iterable[Webhook]) -> None:
        """Read API-created subscriptions and disabled flags from the store; one stored by an
        older version that no longer validates is reported and left out (never a crash)."""
        api: dict[str, Subscription] = {}
        refused: dict[str, str] = {}
        for name, spec in (await self._store.load_objects(KIND)).items():
            try:
                api[name] = Subscription.from_spec(spec)
            except (ValidationError, KeyError, TypeError, ValueError) as exc:
                refused[name] = type(exc).__name__
                if name not in self.refused:
                    log.error(
                        "a stored subscription is left out: it does not validate any more; "
                        "delete it with DELETE /v1/subscriptions/NAME and create it again",
                        subscription=name,
                        problem=_problem(exc),
                    )
        self._api, self.refused = api, refused
        await self.set_config(webhooks)

    async def set_config(self, webhooks: Iterable[Webhook]) -> None:
        """Take the config file's webhooks (at start and on reload)."""
        states = await self._store.load_objects(STATE_KIND)
        subs = {}
        for hook in webhooks:
            sub = from_config(hook)
            state = states.get(hook.name)
            if state is not None and not state.get("enabled", True):
                sub = replace(sub, enabled=False, disabled_reason=state.get("reason"))
            subs[hook.name] = sub
        self._config = subs
        self._rebuild()

    def _rebuild(self) -> None:
        self._matchers = {s.name: s.matcher for s in self.all() if s.enabled}

    def all(self) -> list[Subscription]:
        """Config subscriptions first, then API ones; a config name shadows an API one."""
        api = [s for n, s in sorted(self._api.items()) if n not in self._config]
        return [*self._config.values(), *api]

    def get(self, name: str) -> Subscription | None:
        """A subscription by name."""
        return self._config.get(name) or self._api.get(name)

    def route(self, transition: TransitionLike) -> list[str]:
        """The enabled subscriptions whose filter the transition passes."""
        return [name for name, m in self._matchers.items() if m.matches(transition)]

    def route_all(self, transitions: Sequence[TransitionLike]) -> list[list[str]]:
        """`route` for each transition."""
        return [self.route(t) for t in transitions]

    def is_config(self, name: str) -> bool:
        """Whether the config file owns this name."""
        return name in self._config

    async def put(self, sub: Subscription) -> None:
        """Create or replace an API subscription (persisted first)."""
        await self._store.save_object(KIND, sub.name, sub.to_spec())
        self._api[sub.name] = replace(sub, origin="api")
        self._rebuild()

    async def create(self, sub: Subscription) -> bool:
        """Create an API subscription unless the store holds one of its name (made by another
        replica, say); False then, and nothing changed."""
        if not await self._store.create_object(KIND, sub.name, sub.to_spec()):
            return False
        self._api[sub.name] = replace(sub, origin="api")
        self._rebuild()
        return True

    async def delete(self, name: str) -> bool:
        """Delete an API subscription (or a stored one refused at load) and its deliveries."""
        if name in self.refused and name not in self._api:
            await self._store.delete_object(KIND, name)
            await self._store.drop_deliveries(name)
            del self.refused[name]
            return True
        if name not in self._api:
            return False
        await self._store.delete_object(KIND, name)
        await self._store.drop_deliveries(name)
        del self._api[name]
        self._rebuild()
        return True

    async def set_enabled(self, name: str, enabled: bool, reason: str | None = None) -> None:
        """Enable or disable (a 410 disables); remembered across restarts for either kind."""
        sub = self.get(name)
        if sub is None:
            return
        new = replace(sub, enabled=enabled, disabled_reason=None if enabled else reason)
        if name in self._config:
            if enabled:
                await self._store.delete_object(STATE_KIND, name)
            else:
                await self._store.save_object(
                    STATE_KIND, name, {"enabled": False, "reason": reason}
                )
            self._config[name] = new
        else:
            await self._store.save_object(KIND, name, new.to_spec())
            self._api[name] = new
        self._rebuild()


def _problem(exc: Exception) -> str:
    """What is wrong with a stored subscription, without its values (secrets among them)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
    return type(exc).__name__

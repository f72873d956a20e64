"""Action rules as outbox targets: routing transitions to rules, and running one rule.

Each rule is a target named `action:<rule>` in the outbox, so an action is stored in the same
transaction as its transition and inherits everything deliveries have: at least once, ordered
per event, retried on the schedule, dead-lettered and replayable. The body a rule sends is
normalized once at load, so a retried action applies exactly the same attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monitor.config.models import Action
from monitor.core.filters import TransitionFilter, TransitionLike
from monitor.logs import get_logger
from monitor.marketplace.validation import InvalidAttributes, normalize_update
from monitor.metrics import Metrics
from monitor.notify.base import AttemptResult, Target
from monitor.store.base import Delivery, Store
from monitor.upstream.marketplace import (
    MarketplaceAuthError,
    MarketplaceClient,
    MarketplaceError,
)

log = get_logger("monitor.actions")

PREFIX = "action:"
STATE_KIND = "action_state"


def target_name(rule: str) -> str:
    """The outbox name of a rule."""
    return PREFIX + rule


@dataclass(slots=True)
class ActionTarget:
    """One rule, runnable by the outbox."""

    rule: Action
    body: dict[str, Any]
    matcher: TransitionFilter
    client: MarketplaceClient | None
    metrics: Metrics
    enabled: bool = True
    disabled_reason: str | None = None

    @property
    def name(self) -> str:
        """`action:<rule>`."""
        return target_name(self.rule.name)

    @property
    def max_in_flight(self) -> int:
        """One bulk update at a time per rule keeps the marketplace's view simple."""
        return 1

    def wants(self, t: TransitionLike) -> bool:
        """Whether the transition triggers this rule (and the event has listings)."""
        return t.event_id in self.rule.listings and self.matcher.matches(t)

    async def attempt(self, delivery: Delivery) -> AttemptResult:
        """Send the bulk update for the delivery's event (or, in dry run, say what it would)."""
        t = delivery.transition
        ids = self.rule.listings.get(t.event_id, [])
        counted = self.metrics.actions_total
        if self.rule.dry_run or self.client is None:
            log.info(
                "dry run: would update listings",
                rule=self.rule.name,
                event_id=t.event_id,
                sequence=t.sequence,
                listings=len(ids),
                update=self.body,
            )
            counted.labels(self.rule.name, "dry_run").inc()
            return AttemptResult(
                "success", result={"outcome": "dry_run", "listings": ids, "update": self.body}
            )
        try:
            result = await self.client.bulk_update(ids, self.body, validate=False)
        except MarketplaceAuthError as exc:
            counted.labels(self.rule.name, "auth_failed").inc()
            return AttemptResult("gone", exc.status, error=f"marketplace refused the token: {exc}")
        except MarketplaceError as exc:
            counted.labels(self.rule.name, "retry").inc()
            outcome = "failure" if exc.retry else "dead"
            return AttemptResult(outcome, exc.status, exc.retry_after, str(exc))
        except InvalidAttributes as exc:
            counted.labels(self.rule.name, "rejected").inc()
            return AttemptResult("dead", error=str(exc))
        summary = {
            "outcome": result.outcome,
            "updated": result.updated,
            "missing": result.missing,
            "rejected": result.rejected,
            "errors": result.errors,
            "requests": result.requests,
        }
        counted.labels(self.rule.name, result.outcome).inc()
        if result.outcome == "rejected":
            log.error(
                "marketplace rejected the update; not retried",
                rule=self.rule.name,
                event_id=t.event_id,
                errors=result.errors[:5],
            )
            return AttemptResult("dead", error="; ".join(result.errors[:5]), result=summary)
        if result.outcome != "ok":
            log.warning(
                "marketplace update incomplete",
                rule=self.rule.name,
                event_id=t.event_id,
                outcome=result.outcome,
                missing=result.missing[:20],
            )
        else:
            log.info(
                "marketplace listings updated",
                rule=self.rule.name,
                event_id=t.event_id,
                updated=len(result.updated),
            )
        return AttemptResult("success", result=summary)


class ActionRules:
    """Every rule: routes transitions to them and gives the outbox their targets."""

    def __init__(self, *, store: Store, client: MarketplaceClient | None, metrics: Metrics) -> None:
        self._store = store
        self._client = client
        self._metrics = metrics
        self._targets: dict[str, ActionTarget] = {}

    async def load(self, rules: Sequence[Action]) -> None:
        """Take the config's rules (at start and on reload); disabled flags come from the store."""
        states = await self._store.load_objects(STATE_KIND)
        targets = {}
        for rule in rules:
            f = rule.when
            target = ActionTarget(
                rule=rule,
                body=normalize_update(rule.update),
                matcher=TransitionFilter.of(
                    watch_sets=f.watch_sets,
                    event_ids=f.event_ids,
                    fields=f.field,
                    from_=f.from_,
                    to=f.to,
                ),
                client=self._client,
                metrics=self._metrics,
            )
            state = states.get(rule.name)
            if state is not None and not state.get("enabled", True):
                target.enabled = False
                target.disabled_reason = state.get("reason")
            targets[target.name] = target
            self._metrics.action_rule_enabled.labels(rule.name).set(1 if target.enabled else 0)
        self._targets = targets
        self._metrics.keep_only("rule", {t.rule.name for t in targets.values()})

    def targets(self) -> list[Target]:
        """The rules as outbox targets."""
        return list(self._targets.values())

    def rules(self) -> list[ActionTarget]:
        """The rules."""
        return list(self._targets.values())

    def get(self, rule: str) -> ActionTarget | None:
        """A rule by name."""
        return self._targets.get(target_name(rule))

    def route_all(self, transitions: Sequence[TransitionLike]) -> list[list[str]]:
        """Target names per transition."""
        live = [t for t in self._targets.values() if t.enabled]
        return [[a.name for a in live if a.wants(t)] for t in transitions]

    async def disable(self, name: str, reason: str) -> None:
        """Stop a rule (a 401 from the marketplace); remembered across restarts."""
        await self.set_enabled(name.removeprefix(PREFIX), False, reason)

    async def set_enabled(self, rule: str, enabled: bool, reason: str | None = None) -> None:
        """Enable or disable a rule."""
        target = self.get(rule)
        if target is None:
            return
        target.enabled = enabled
        target.disabled_reason = None if enabled else reason
        if enabled:
            await self._store.delete_object(STATE_KIND, rule)
        else:
            await self._store.save_object(STATE_KIND, rule, {"enabled": False, "reason": reason})
            log.error("action rule disabled", rule=rule, reason=reason)
        self._metrics.action_rule_enabled.labels(rule).set(1 if enabled else 0)


def describe(target: ActionTarget, counts: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """A rule as the API shows it."""
    pending, dead = counts.get(target.name, (0, 0))
    rule = target.rule
    return {
        "name": rule.name,
        "when": rule.when.model_dump(by_alias=True, exclude_defaults=True),
        "events": len(rule.listings),
        "listings": sum(len(v) for v in rule.listings.values()),
        "update": target.body,
        "dry_run": rule.dry_run,
        "enabled": target.enabled,
        "disabled_reason": target.disabled_reason,
        "pending": pending,
        "dead_letters": dead,
    }

"""Prometheus metrics. One `Metrics` per daemon, on a registry passed in (a fresh one per test).

No label ever carries an event ID.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info
from prometheus_client.metrics import MetricWrapperBase

from monitor import __version__

PREFIX = "availability_monitor_"


class Metrics:
    """Every metric the daemon exports (names fixed by INTERFACES.md, prefix included)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        r = self.registry = registry if registry is not None else CollectorRegistry()
        p = PREFIX
        self.build_info = Info(p + "build", "Version of the running daemon.", registry=r)
        self.build_info.info({"version": __version__})
        self.events_watched = Gauge(
            p + "events_watched", "Events watched, per watch set.", ["watch_set"], registry=r
        )
        self.events_by_status = Gauge(
            p + "events_by_status",
            "Watched events by confirmed status (UNKNOWN: no confirmed status yet).",
            ["watch_set", "status"],
            registry=r,
        )
        self.events_in_maintenance = Gauge(
            p + "events_in_maintenance",
            "Events left out of polling because their venue is in its maintenance window.",
            ["watch_set"],
            registry=r,
        )
        self.events_without_time_zone = Gauge(
            p + "events_without_time_zone",
            "Events with no known time zone: polled at all hours, maintenance cannot apply.",
            ["watch_set"],
            registry=r,
        )
        self.events_retired = Gauge(
            p + "events_retired",
            "Events no longer polled because their date (or offsale time) has passed.",
            ["watch_set"],
            registry=r,
        )
        self.events_quarantined = Gauge(
            p + "events_quarantined",
            "Event IDs the upstream refused with 400, left out for a while.",
            registry=r,
        )
        self.transitions_total = Counter(
            p + "transitions_total",
            "Confirmed status transitions.",
            ["watch_set", "field", "from", "to"],
            registry=r,
        )
        self.upstream_requests_total = Counter(
            p + "upstream_requests_total",
            "Upstream requests by API and outcome.",
            ["api", "outcome"],
            registry=r,
        )
        self.upstream_request_duration_seconds = Histogram(
            p + "upstream_request_duration_seconds",
            "Upstream request duration.",
            ["api"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.upstream_batch_size = Histogram(
            p + "upstream_batch_size",
            "Event IDs per upstream request.",
            buckets=(1, 10, 50, 100, 250, 500, 750, 1000),
            registry=r,
        )
        self.upstream_unknown_status_total = Counter(
            p + "upstream_unknown_status_total",
            "Status strings the upstream sent that this daemon does not know (counted as UNKNOWN).",
            registry=r,
        )
        self.upstream_rate_limited_seconds_total = Counter(
            p + "upstream_rate_limited_seconds_total",
            "Seconds all upstream requests were held back because the upstream said to wait.",
            registry=r,
        )
        self.upstream_key_accepted = Gauge(
            p + "upstream_key_accepted",
            "1 while the upstream accepts the API key, 0 after it refused it.",
            registry=r,
        )
        self.last_successful_poll_timestamp_seconds = Gauge(
            p + "last_successful_poll_timestamp_seconds",
            "When a poll of every due event of the watch set last succeeded.",
            ["watch_set"],
            registry=r,
        )
        self.poll_runs_total = Counter(
            p + "poll_runs_total",
            "Scheduled poll runs by outcome (ok, partial, failed, skipped: overlapped).",
            ["watch_set", "outcome"],
            registry=r,
        )
        self.upstream_repeated_answers_total = Counter(
            p + "upstream_repeated_answers_total",
            "Answers byte for byte the same as the last one to the same request, with nothing "
            "changed since: not decoded or judged again.",
            registry=r,
        )
        self.observations_total = Counter(
            p + "observations_total", "Event statuses received and judged.", registry=r
        )
        self.state_write_seconds = Histogram(
            p + "state_write_seconds",
            "Time to store one batch's changes and transitions.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
            registry=r,
        )
        self.state_write_errors_total = Counter(
            p + "state_write_errors_total",
            "Batches whose changes could not be stored (they are judged again next poll).",
            registry=r,
        )
        self.state_store_ok = Gauge(
            p + "state_store_ok",
            "1 while the state store takes writes; 0 while they fail (full, read-only, moved).",
            registry=r,
        )
        self.state_store_ok.set(1)
        self.state_store_errors_total = Counter(
            p + "state_store_errors_total",
            "Failed writes (and write probes) of the state store, by kind: full, readonly, "
            "moved, io, corrupt, busy, denied, unavailable, error.",
            ["kind"],
            registry=r,
        )
        self.config_reloads_total = Counter(
            p + "config_reloads_total", "SIGHUP reloads by outcome.", ["outcome"], registry=r
        )
        self.ready = Gauge(p + "ready", "1 while /readyz answers 200.", registry=r)
        self.actions_total = Counter(
            p + "actions_total",
            "Marketplace action attempts by rule and outcome (ok, partial, not_found, "
            "rejected, unconfirmed, retry, auth_failed, dry_run).",
            ["rule", "outcome"],
            registry=r,
        )
        self.action_rule_enabled = Gauge(
            p + "action_rule_enabled",
            "1 while an action rule is enabled; 0 after the marketplace refused the token.",
            ["rule"],
            registry=r,
        )
        self.cluster_shards_owned = Gauge(
            p + "cluster_shards_owned", "Shards this replica holds and polls.", registry=r
        )
        self.cluster_budget_slots_owned = Gauge(
            p + "cluster_budget_slots_owned",
            "Rate-budget slots this replica holds (its requests per window).",
            registry=r,
        )
        self.cluster_replicas_live = Gauge(
            p + "cluster_replicas_live", "Replicas with a recent heartbeat.", registry=r
        )
        self.cluster_lease_renewals_total = Counter(
            p + "cluster_lease_renewals_total",
            "Lease cycles by outcome (ok, error).",
            ["outcome"],
            registry=r,
        )
        self.cluster_leases_lost_total = Counter(
            p + "cluster_leases_lost_total",
            "Shard leases that expired before this replica renewed them.",
            registry=r,
        )
        self.cluster_takeover_seconds = Histogram(
            p + "cluster_takeover_seconds",
            "How long a shard taken over from another replica had been without an owner.",
            buckets=(0.1, 0.5, 1, 2, 5, 10, 15, 20, 30, 60, 120),
            registry=r,
        )
        self.cluster_fenced_writes_total = Counter(
            p + "cluster_fenced_writes_total",
            "Writes refused because a shard lease had moved on (nothing was stored).",
            registry=r,
        )
        self.watch_set_interval_seconds = Gauge(
            p + "watch_set_interval_seconds",
            "Effective poll interval per watch set (after daily-quota planning).",
            ["watch_set"],
            registry=r,
        )
        self.quota_calls_needed_per_day = Gauge(
            p + "quota_calls_needed_per_day",
            "Upstream calls per day the watch sets need at their configured intervals.",
            registry=r,
        )
        self.quota_calls_planned_per_day = Gauge(
            p + "quota_calls_planned_per_day",
            "Upstream calls per day at the effective (possibly stretched) intervals.",
            registry=r,
        )
        self.quota_calls_allowed_per_day = Gauge(
            p + "quota_calls_allowed_per_day",
            "upstream.daily_quota, when set.",
            registry=r,
        )
        self.upstream_quota_remaining = Gauge(
            p + "upstream_quota_remaining",
            "Calls left in the upstream's quota period (Rate-Limit-Available), when it says.",
            registry=r,
        )
        self.upstream_pause_remaining_seconds = Gauge(
            p + "upstream_pause_remaining_seconds",
            "Seconds left in the pause of all upstream requests the upstream asked for (0: none).",
            registry=r,
        )
        self.upstream_conflicting_events_total = Counter(
            p + "upstream_conflicting_events_total",
            "Events an answer named twice with different statuses (no observation taken).",
            registry=r,
        )
        self.upstream_request_limit_bytes = Gauge(
            p + "upstream_request_limit_bytes",
            "Largest request URL (or form body) sent: configured, lowered after a 414/413.",
            registry=r,
        )
        self.upstream_request_splits_total = Counter(
            p + "upstream_request_splits_total",
            "Batches sent again in smaller requests because the upstream refused the size.",
            registry=r,
        )
        self.upstream_refused_batches_total = Counter(
            p + "upstream_refused_batches_total",
            "Batches answered 400 as a whole (both halves refused alike): no ID quarantined.",
            registry=r,
        )
        self.partner_not_found_ratio = Gauge(
            p + "partner_not_found_ratio",
            "Share of recent Partner API event lookups answered 404 (high: set partner_event_id).",
            registry=r,
        )
        self.oldest_observation_age_seconds = Gauge(
            p + "oldest_observation_age_seconds",
            "Age of the oldest observation among a set's events outside maintenance.",
            ["watch_set"],
            registry=r,
        )
        self.webhook_deliveries_total = Counter(
            p + "webhook_deliveries_total",
            "Webhook delivery attempts by outcome (success, failure, dead, gone, refused).",
            ["subscription", "outcome"],
            registry=r,
        )
        self.webhook_pending = Gauge(
            p + "webhook_pending",
            "Deliveries waiting in the outbox (first attempt or retry).",
            ["subscription"],
            registry=r,
        )
        self.webhook_dead_letters = Gauge(
            p + "webhook_dead_letters",
            "Deliveries whose retry schedule is spent, kept for replay.",
            ["subscription"],
            registry=r,
        )
        self.webhook_delivery_latency_seconds = Histogram(
            p + "webhook_delivery_latency_seconds",
            "From transition stored to the subscriber's 2xx.",
            ["subscription"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 300, 3600, 36000),
            registry=r,
        )
        self.webhook_subscription_enabled = Gauge(
            p + "webhook_subscription_enabled",
            "1 while a subscription is enabled, 0 once disabled (a 410 Gone disables).",
            ["subscription"],
            registry=r,
        )
        self.alertmanager_pushes_total = Counter(
            p + "alertmanager_pushes_total",
            "Pushes of alerts to Alertmanager by outcome (ok, error).",
            ["outcome"],
            registry=r,
        )
        self.alerts_firing = Gauge(
            p + "alerts_firing",
            "Alerts this daemon keeps firing on Alertmanager.",
            registry=r,
        )
        self.http_connections_open = Gauge(
            p + "http_connections_open", "Connections open to the HTTP server.", registry=r
        )
        self.http_connections_refused_total = Counter(
            p + "http_connections_refused_total",
            "Connections answered 503 and closed because the connection cap was reached.",
            registry=r,
        )
        self.http_bad_requests_total = Counter(
            p + "http_bad_requests_total",
            "Requests the HTTP server could not handle, by kind (malformed: not parseable or "
            "over a size limit; error: failed in the server).",
            ["kind"],
            registry=r,
        )

    def store_write(self, failure_kind: str | None, ok: bool) -> None:
        """The state store's writes: one failed (of `failure_kind`) or they go in again."""
        if failure_kind is not None:
            self.state_store_errors_total.labels(failure_kind).inc()
        self.state_store_ok.set(1 if ok else 0)

    # -- series of objects that come and go (subscriptions, rules, watch sets) ------------------

    def _labelled(self, label: str) -> list[MetricWrapperBase]:
        return [
            m
            for m in vars(self).values()
            if isinstance(m, MetricWrapperBase) and label in m._labelnames
        ]

    def label_values(self, label: str) -> set[str]:
        """Every value `label` has in some series now."""
        values: set[str] = set()
        for metric in self._labelled(label):
            for family in metric.collect():
                values.update(s.labels[label] for s in family.samples if label in s.labels)
        return values

    def forget(self, label: str, value: str) -> None:
        """Remove every series whose `label` is `value` (its object was deleted): a deleted
        subscription's pending count is not 253 forever, and names that come and go do not
        pile up series."""
        for metric in self._labelled(label):
            metric.remove_by_labels({label: value})

    def keep_only(self, label: str, values: Collection[str]) -> None:
        """Remove the series of every `label` value not in `values` (the objects that exist)."""
        for gone in self.label_values(label).difference(values):
            self.forget(label, gone)

"""Labelled counters start at zero for every label value known, as Prometheus advises.

A counter series that appears only with its first increment makes `rate()` and `increase()`
miss that increment and makes `absent()` fire for a healthy daemon. So each series an alert or
the dashboard reads exists from the start: per watch set, subscription and action rule (when
they are made, at start or later through the API or a reload), per upstream API and outcome.
Series of objects that are deleted are removed where the objects are.
"""

from __future__ import annotations

from collections.abc import Iterable

from monitor.metrics import Metrics

STATUSES = ("TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", "TICKETS_NOT_AVAILABLE")
FIELDS = ("status", "resale_status")
POLL_OUTCOMES = ("ok", "partial", "failed", "skipped")
UPSTREAM_OUTCOMES = (
    "ok", "server_error", "timeout", "connection_error", "malformed", "rate_limited",
    "auth_failed", "bad_request", "client_error",
)  # fmt: skip
DELIVERY_OUTCOMES = ("success", "failure", "gone", "refused", "dead")
ACTION_OUTCOMES = (
    "ok", "partial", "not_found", "rejected", "unconfirmed", "retry", "auth_failed", "dry_run",
)  # fmt: skip


def watch_set_series(m: Metrics, name: str, track_unknown: bool) -> None:
    """A watch set's transitions (every field, every change it can report) and poll runs."""
    statuses = (*STATUSES, "UNKNOWN") if track_unknown else STATUSES
    for field in FIELDS:
        for old in statuses:
            for new in statuses:
                if old != new:
                    m.transitions_total.labels(name, field, old, new)
    for outcome in POLL_OUTCOMES:
        m.poll_runs_total.labels(name, outcome)


def subscription_series(m: Metrics, name: str) -> None:
    """A subscription's delivery outcomes and latency."""
    for outcome in DELIVERY_OUTCOMES:
        m.webhook_deliveries_total.labels(name, outcome)
    m.webhook_delivery_latency_seconds.labels(name)


def rule_series(m: Metrics, name: str) -> None:
    """An action rule's outcomes."""
    for outcome in ACTION_OUTCOMES:
        m.actions_total.labels(name, outcome)


def daemon_series(m: Metrics, *, apis: Iterable[str], alertmanager: bool, cluster: bool) -> None:
    """The series of the daemon's own parts: upstream APIs, reloads, the HTTP server."""
    for api in apis:
        for outcome in UPSTREAM_OUTCOMES:
            m.upstream_requests_total.labels(api, outcome)
        m.upstream_request_duration_seconds.labels(api)
    for outcome in ("ok", "invalid"):
        m.config_reloads_total.labels(outcome)
    for kind in ("malformed", "error"):
        m.http_bad_requests_total.labels(kind)
    if alertmanager:
        for outcome in ("ok", "error"):
            m.alertmanager_pushes_total.labels(outcome)
    if cluster:
        for outcome in ("ok", "error"):
            m.cluster_lease_renewals_total.labels(outcome)

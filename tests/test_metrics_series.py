"""Metrics follow objects: a deleted subscription, rule or watch set leaves no series behind.

A gauge left at its last value says something false forever (a subscription's 253 "pending"
deliveries after it was deleted keep an alert firing), and names that come and go would grow
the series count without bound.
"""

from __future__ import annotations

from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry

from monitor.core.transitions import EventState
from monitor.metrics import Metrics
from monitor.store.base import NewTransition
from tests.test_api import AUTH, A, call
from tests.test_api import api as api  # the fixture


async def scrape(url: str) -> str:
    async with aiohttp.ClientSession() as s, s.get(url + "/metrics") as r:
        return await r.text()


async def series_of(url: str, label: str) -> list[str]:
    return [line for line in (await scrape(url)).splitlines() if label in line]


async def published(d: Any, label: str) -> list[str]:
    """The series with `label` once the outbox has published its gauges (its loop does so
    at most once a second; this does it now)."""
    await d.outbox.refresh_counts()
    return await series_of(d.url, label)


async def test_a_deleted_subscription_leaves_no_series(api):
    hook = {"name": "temp", "url": "http://127.0.0.1:9/x", "secret": None}
    hook.pop("secret")
    status, _ = await call("POST", api.url + "/v1/subscriptions", json=hook, headers=AUTH)
    assert status == 201
    t = NewTransition(A, "status", "TICKETS_AVAILABLE", "FEW_TICKETS_LEFT", ("config-set",), 1.0)
    await api.store.record({A: EventState()}, [t], 1.0, [["temp"]], 1.0)
    await api.outbox.drain(timeout=2)  # one attempt: refused by the closed port, kept pending
    await api.outbox.refresh_counts()
    lines = await series_of(api.url, 'subscription="temp"')
    assert 'availability_monitor_webhook_pending{subscription="temp"} 1.0' in lines
    assert any(line.startswith("availability_monitor_webhook_deliveries_total") for line in lines)

    status, _ = await call("DELETE", api.url + "/v1/subscriptions/temp", headers=AUTH)
    assert status == 204
    assert await published(api, 'subscription="temp"') == []
    assert await series_of(api.url, 'subscription="from-config"') != []  # the others stay


async def test_subscriptions_that_come_and_go_do_not_grow_the_series(api):
    await api.outbox.refresh_counts()
    before = len((await scrape(api.url)).splitlines())
    for n in range(20):
        hook = {"name": f"churn{n}", "url": "http://127.0.0.1:9/x"}
        status, _ = await call("POST", api.url + "/v1/subscriptions", json=hook, headers=AUTH)
        assert status == 201
        assert await published(api, f'subscription="churn{n}"') != []
        status, _ = await call("DELETE", api.url + f"/v1/subscriptions/churn{n}", headers=AUTH)
        assert status == 204
        assert await published(api, f'subscription="churn{n}"') == []
    assert len((await scrape(api.url)).splitlines()) == before


async def test_a_deleted_watch_set_leaves_no_series(api):
    ws = {"name": "late", "interval_seconds": 30, "events": ["LATE1"]}
    assert (await call("POST", api.url + "/v1/watch-sets", json=ws, headers=AUTH))[0] == 201
    api.metrics.transitions_total.labels("late", "status", "A", "B").inc()
    api.metrics.poll_runs_total.labels("late", "ok").inc()
    assert await series_of(api.url, 'watch_set="late"') != []
    assert (await call("DELETE", api.url + "/v1/watch-sets/late", headers=AUTH))[0] == 204
    assert await series_of(api.url, 'watch_set="late"') == []
    assert await series_of(api.url, 'watch_set="config-set"') != []


def test_forget_and_keep_only_touch_only_their_label():
    m = Metrics(CollectorRegistry())
    m.webhook_pending.labels("a").set(3)
    m.webhook_deliveries_total.labels("a", "failure").inc()
    m.webhook_delivery_latency_seconds.labels("a").observe(1.0)
    m.webhook_pending.labels("b").set(1)
    m.actions_total.labels("a", "ok").inc()  # a rule named like the subscription
    assert m.label_values("subscription") == {"a", "b"}
    m.keep_only("subscription", {"b"})
    assert m.label_values("subscription") == {"b"}
    assert m.label_values("rule") == {"a"}
    m.forget("rule", "a")
    assert m.label_values("rule") == set()

"""Webhook bodies, built purely from a stored transition: the same bytes on every attempt."""

from __future__ import annotations

from typing import Any

import orjson

from monitor.clock import iso_utc
from monitor.domain import Transition

EVENT_TYPE = "availability.changed"
CLOUDEVENTS_TYPE = "com.availability-monitor.availability.changed"
CLOUDEVENTS_SOURCE = "urn:availability-monitor"


def standard_body(transition: Transition, created_at: float) -> bytes:
    """`{"type", "timestamp", "data"}` as INTERFACES.md shows."""
    body: dict[str, Any] = {
        "type": EVENT_TYPE,
        "timestamp": iso_utc(created_at),
        "data": transition.to_json(),
    }
    return orjson.dumps(body)


def cloudevents_body(transition: Transition, created_at: float, msg_id: str) -> bytes:
    """A CloudEvents 1.0 structured-mode event; `id` is the webhook-id."""
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": msg_id,
        "source": CLOUDEVENTS_SOURCE,
        "type": CLOUDEVENTS_TYPE,
        "subject": transition.event_id,
        "time": iso_utc(created_at),
        "datacontenttype": "application/json",
        "data": transition.to_json(),
    }
    return orjson.dumps(body)


def build(fmt: str, transition: Transition, created_at: float, msg_id: str) -> tuple[bytes, str]:
    """(body, content type) for a subscription's format."""
    if fmt == "cloudevents":
        return cloudevents_body(transition, created_at, msg_id), "application/cloudevents+json"
    return standard_body(transition, created_at), "application/json"

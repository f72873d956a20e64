"""A receiver down for a minute gives a few log lines, not one per attempt; the metric counts all.

Real deliveries over loopback to a receiver that answers 503, on a manual clock: a minute of
retries of twenty events is about a thousand failed attempts.
"""

from __future__ import annotations

import json
from typing import Any

from monitor.notify.outbox import OutboxWorker
from tests.test_outbox import Rig
from tests.test_outbox import rig as rig  # the fixture


def lines(stream: Any, event: str) -> list[dict[str, Any]]:
    out = [json.loads(x) for x in stream.getvalue().splitlines() if x.strip()]
    return [r for r in out if r.get("event") == event]


async def test_a_receiver_down_for_a_minute_gives_a_bounded_number_of_lines(
    rig: Rig, log_stream: Any
) -> None:
    rig.receiver.respond = lambda r: 503
    w: OutboxWorker = await rig.worker(schedule=[0] + [1.0] * 200, log_every=10.0)
    await rig.record(w, *((f"E{i}", i) for i in range(20)))
    await w.drain(timeout=5)
    minute = 0.0
    while minute < 60:
        rig.clock.advance(1.2)  # the retries (1 s, jitter up to 10%) are due
        minute += 1.2
        await w.drain(timeout=5)
    failed = w._metrics.webhook_deliveries_total.labels("ops", "failure")._value.get()
    assert failed >= 20 * 45  # every attempt failed and was counted

    got = lines(log_stream, "webhook delivery failed")
    assert 1 <= len(got) <= 1 + 60 / 10 + 1  # the first, then one every 10 s
    assert got[0].get("repeated") is None and got[0]["status"] == 503
    rig.receiver.respond = lambda r: 200
    rig.clock.advance(1.2)
    await w.drain(timeout=5)
    [back] = lines(log_stream, "deliveries succeed again")
    assert back["subscription"] == "ops"
    # Every failure is in the log: written, counted in a later line, or in the recovery line.
    assert len(got) + sum(r.get("repeated", 0) for r in got) + back["failures_not_logged"] == failed
    assert lines(log_stream, "webhook delivery failed")[-1:] == got[-1:]  # none after recovery

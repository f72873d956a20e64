"""Shared fixtures: the project's own simulator on loopback, configs, daemons on temp state."""

from __future__ import annotations

import io
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from monitor.app import Daemon
from monitor.clock import Clock
from monitor.config import Config, parse_config
from monitor.logs import configure_logging
from monitor.simulator.app import Simulator

API_KEY = "SIMKEY-sup3r-s3cret-value-123"


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A simulator with static statuses (scripted by tests) that records request IDs."""
    async with Simulator(seed=1, evolve=False, api_key=API_KEY, record_ids=True) as s:
        yield s


@pytest.fixture
def log_stream() -> io.StringIO:
    """Everything logged during the test, as JSON lines."""
    stream = io.StringIO()
    configure_logging("json", "debug", stream)
    return stream


def make_config(
    sim_url: str,
    state_path: Path,
    body: str,
    *,
    upstream: str = "",
    env: dict[str, str] | None = None,
) -> Config:
    """A config on the simulator and a temp state file; `body` holds watch sets and venues.

    `upstream` is YAML whose keys override the test defaults of the upstream section.
    """
    up: dict[str, Any] = {
        "base_url": sim_url,
        "api_key": API_KEY,
        "rate_limit": {"requests": 50, "per_seconds": 1, "margin": 0.05},
        "backoff_base_seconds": 0.01,
        "backoff_max_seconds": 0.05,
        "timeout_seconds": 2,
    }
    up.update(yaml.safe_load(textwrap.dedent(upstream)) or {})
    head = yaml.safe_dump(
        {"upstream": up, "state": {"path": str(state_path)}, "server": {"listen": "127.0.0.1:0"}}
    )
    return parse_config(head + textwrap.dedent(body), env=env or {})


DaemonFactory = Callable[..., Any]


@pytest.fixture
async def daemons() -> AsyncIterator[list[Daemon]]:
    """Daemons started by a test are stopped after it."""
    started: list[Daemon] = []
    yield started
    for d in started:
        await d.stop()


@pytest.fixture
def start_daemon(daemons: list[Daemon]) -> Callable[..., Any]:
    """`await start_daemon(config, clock=..., notifiers=...)`: a started daemon, unscheduled."""

    async def _start(config: Config, *, clock: Clock | None = None, **kw: Any) -> Daemon:
        d = Daemon(config, clock=clock, registry=CollectorRegistry(), **kw)
        await d.start(schedule=False)
        daemons.append(d)
        return d

    return _start

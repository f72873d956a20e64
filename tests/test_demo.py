"""The demo runs on its embedded default and shows transitions and maintenance skips."""

from __future__ import annotations

import asyncio
import sys


async def test_demo_shows_transitions_and_maintenance():
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "demo", "--duration", "14", "--port", "0",
        "--change-seconds", "2",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 40)
    text = out.decode()
    assert proc.returncode == 0, err.decode()
    assert "/metrics" in text
    assert "maintenance: skipping" in text  # one venue is always in its window
    transitions = [line for line in text.splitlines() if " -> " in line]
    assert len(transitions) >= 3, text
    assert "demo stopped" in text
    deliveries = [line for line in text.splitlines() if line.strip().startswith("webhook ")]
    assert any("webhook desk" in line and " 200 " in line for line in deliveries)
    assert all("signature ok" in line for line in deliveries)
    assert any("webhook flaky" in line and " 503 " in line for line in deliveries)
    assert "partner API: DEMO0001AMEVENT plays" in text  # time zones from the Partner API
    assert "partner API: DEMO9001NOZONE unknown (404)" in text
    assert "action reprice-on-sellout:" in text and "listing(s) ok" in text
    assert "Traceback" not in err.decode()

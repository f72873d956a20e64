"""The command line: check-config exit codes and summaries, and `run` as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from monitor.cli import main
from tests.conftest import API_KEY

ROOT = Path(__file__).resolve().parent.parent
CONFIG_FILES = sorted((ROOT / "config").glob("*.yaml"))
_SECRET = "whsec_" + "A" * 40
ENV = {
    "TM_API_KEY": "dummy-key-for-check",
    "MONITOR_ADMIN_TOKEN": "dummy-token",
    "OPS_WEBHOOK_SECRET": _SECRET,
    "RESALE_SECRET_OLD": _SECRET,
    "RESALE_SECRET_NEW": "whsec_" + "B" * 40,
}


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_shipped_config_checks(path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    for k, v in ENV.items():
        monkeypatch.setenv(k, v)
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("config OK")
    assert "dummy-key-for-check" not in out


def test_the_demo_config_checks(capsys):
    from monitor.config import parse_config
    from monitor.demo.runner import demo_config_text

    cfg = parse_config(demo_config_text(), env={})
    assert cfg.partner is not None  # time zones come from the (simulated) Partner API
    assert all(e.time_zone is None and e.venue is None for ws in cfg.watch_sets for e in ws.events)


def test_check_config_lists_every_error_with_its_path_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "upstream: {api_key: k, batch_size: 5000, rate_limt: 1}\n"
        "watch_sets:\n  - name: main\n    events: [ok1, 'not ok', {id: x, time_zone: Nowhere/City}]\n"
    )
    assert main(["check-config", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "4 errors" in err
    assert "upstream.batch_size" in err
    assert "upstream.rate_limt: unknown key (did you mean 'rate_limit'?)" in err
    assert "watch_sets[0].events[1]: invalid event ID 'not ok'" in err
    assert "watch_sets[0].events[2].time_zone: unknown time zone 'Nowhere/City'" in err


def test_missing_config_is_a_usage_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    assert main(["check-config"]) == 2
    assert main(["check-config", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read config file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_monitor_config_env_names_the_file(tmp_path, monkeypatch, capsys):
    good = tmp_path / "good.yaml"
    good.write_text("upstream: {api_key: abcd}\nwatch_sets: [{name: a, events: [X1]}]\n")
    monkeypatch.setenv("MONITOR_CONFIG", str(good))
    assert main(["check-config"]) == 0


def _config(tmp_path: Path, url: str, sets: str) -> str:
    return (
        f"upstream: {{base_url: '{url}', api_key: {API_KEY}, rate_limit: {{requests: 20, per_seconds: 1}}}}\n"
        f"state: {{path: '{tmp_path / 'state.db'}'}}\n"
        "server: {listen: '127.0.0.1:0'}\n"
        "log: {format: json}\n"
        f"watch_sets:\n{sets}"
    )


async def _read_until(proc: asyncio.subprocess.Process, needle: str, timeout: float = 15) -> dict:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = await asyncio.wait_for(proc.stderr.readline(), deadline - time.monotonic())
        if not line:
            break
        text = line.decode()
        if needle in text:
            return json.loads(text)
    raise AssertionError(f"no log line with {needle!r}")


async def test_run_reloads_on_sighup_and_stops_on_sigterm(sim, tmp_path):
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(
        _config(
            tmp_path, sim.url, "  - {name: one, interval_seconds: 1, events: [RUNAAAAAAAAAAAA1]}\n"
        )
    )
    env = {**os.environ, "MONITOR_CONFIG": str(cfg)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "run",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        started = await _read_until(proc, "daemon started")
        assert started["events"] == 1
        await asyncio.sleep(1.5)
        assert any(r.status == 200 for r in sim.log)

        cfg.write_text("upstream: {api_key: k}\nwatch_sets: [{name: BAD NAME}]\n")
        proc.send_signal(signal.SIGHUP)
        invalid = await _read_until(proc, "new config is invalid")
        assert any("watch_sets[0].name" in e for e in invalid["errors"])
        assert proc.returncode is None

        cfg.write_text(
            _config(
                tmp_path,
                sim.url,
                "  - {name: one, interval_seconds: 1, events: [RUNAAAAAAAAAAAA1]}\n"
                "  - {name: two, interval_seconds: 1, events: [RUNBBBBBBBBBBBB2]}\n",
            )
        )
        proc.send_signal(signal.SIGHUP)
        reloaded = await _read_until(proc, "config reloaded")
        assert reloaded["watch_sets"] == 2
        await asyncio.sleep(1.5)
        assert any("RUNBBBBBBBBBBBB2" in r.ids for r in sim.log)

        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await _read_until(proc, '"stopped"')
        code = await asyncio.wait_for(proc.wait(), 10)
        assert code == 0
        assert time.monotonic() - t0 < 10
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_run_with_invalid_config_exits_2(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("upstream: {}\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "run",
        "--config",
        str(cfg),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"upstream.api_key: required key is missing" in err

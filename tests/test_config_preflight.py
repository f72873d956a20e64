"""check-config is the daemon's own start-up check: what it refuses, `run` refuses the same way
(exit 2, the key path, no traceback); keys never travel over plain http unless a section says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import parse_config
from monitor.config.preflight import preflight, sqlite_path_problem

ROOT = Path(__file__).resolve().parent.parent


def write_config(tmp_path: Path, extra: str, *, state: str | None = None) -> Path:
    path = tmp_path / "monitor.yaml"
    state_line = f"state: {{path: '{state or tmp_path / 'state.db'}'}}\n" if state != "" else ""
    server_line = "" if extra.startswith("server") else "server: {listen: '127.0.0.1:0'}\n"
    path.write_text(
        "upstream: {base_url: 'http://127.0.0.1:9', api_key: k-123456}\n"
        "watch_sets: [{name: s, events: [E1]}]\n" + state_line + server_line + extra
    )
    return path


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check-config", "--config", str(path)])
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out, out.err


def run(path: Path) -> tuple[int, str]:
    """`availability-monitor run` as a process; a config it refuses ends it at once."""
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stderr


def _state_cases(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "adir").mkdir()
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "notdb.db").write_text("some text, not SQLite")
    os.mkfifo(tmp_path / "fifo.db")
    return {
        "directory": str(tmp_path / "adir"),
        "device": "/dev/null",
        "fifo": str(tmp_path / "fifo.db"),
        "trailing-slash": str(tmp_path / "x") + "/",
        "parent-is-a-file": str(tmp_path / "afile" / "state.db"),
        "not-sqlite": str(tmp_path / "notdb.db"),
    }


REFUSED = [
    pytest.param(
        "state: {path: ''}\n", "state.path", "at least 1 character", id="state-path-empty"
    ),
    pytest.param(
        "server: {listen: 'no-such-host.invalid:9108'}\n",
        "server.listen",
        "cannot resolve host 'no-such-host.invalid'",
        id="listen-host-unresolvable",
    ),
    pytest.param(
        "server: {listen: '127.0.0.1:70000'}\n", "server.listen", "host:port", id="listen-port"
    ),
    pytest.param(
        "state: {backend: postgres, dsn: 'postgresql://u:pw-secret-1@h/db?sslmode=bogus'}\n",
        "state.dsn",
        "cannot parse it",
        id="dsn-sslmode",
    ),
    pytest.param(
        "state: {backend: postgres, dsn: 'postgresql://u:pw-secret-1@h:99999/db'}\n",
        "state.dsn",
        "1 to 65535",
        id="dsn-port",
    ),
    pytest.param(
        "state: {backend: postgres, dsn: 'mysql://u:pw-secret-1@h/db'}\n",
        "state.dsn",
        "postgresql://",
        id="dsn-scheme",
    ),
    pytest.param(
        "state: {backend: postgres, dsn: 'postgresql://u:pw-secret-1@[::1/db'}\n",
        "state.dsn",
        "valid URI",
        id="dsn-ipv6",
    ),
    pytest.param(
        "partner: {base_url: 'https://p.example.com:99999', api_key: a-123456, "
        "client_secret: c-123456}\n",
        "partner.base_url",
        "Port out of range",
        id="partner-port",
    ),
    pytest.param(
        "partner: {base_url: 'http://p.example.com', api_key: a-123456, client_secret: c-1234}\n",
        "partner.base_url",
        "plain http:// would send the key in the clear",
        id="partner-plain-http",
    ),
    pytest.param(
        "marketplace: {base_url: 'http://m.example.com', api_token: t-123456}\n",
        "marketplace.base_url",
        "plain http:// would send the key in the clear",
        id="marketplace-plain-http",
    ),
]


@pytest.mark.parametrize(("extra", "key", "fragment"), REFUSED)
def test_check_config_and_run_refuse_alike(tmp_path, capsys, extra, key, fragment):
    path = write_config(tmp_path, extra, state="" if extra.startswith("state") else None)
    code, _, err = check(path, capsys)
    assert code == 2
    assert f"{key}: " in err and fragment in err, err
    assert "pw-secret-1" not in err
    code, err = run(path)
    assert code == 2
    assert f"{key}: " in err and fragment in err, err
    assert "pw-secret-1" not in err


@pytest.mark.parametrize(
    "case", ["directory", "device", "fifo", "trailing-slash", "parent-is-a-file", "not-sqlite"]
)
def test_unusable_state_path_refused(tmp_path, capsys, case):
    target = _state_cases(tmp_path)[case]
    path = write_config(tmp_path, "", state=target)
    code, _, err = check(path, capsys)
    assert code == 2
    assert "state.path: " in err


def test_run_refuses_an_unusable_state_path_like_check_config(tmp_path):
    (tmp_path / "adir").mkdir()
    code, err = run(write_config(tmp_path, "", state=str(tmp_path / "adir")))
    assert code == 2
    assert f"state.path: {tmp_path / 'adir'} is a directory" in err


@pytest.mark.parametrize(
    "target",
    [":memory:", "new/deeper/state.db", "state.db"],
)
def test_usable_state_paths(tmp_path, target):
    assert sqlite_path_problem(str(tmp_path / target) if target != ":memory:" else target) is None


def test_existing_sqlite_file_is_usable(tmp_path):
    import sqlite3

    sqlite3.connect(tmp_path / "s.db").execute("create table t (x)").connection.close()
    assert sqlite_path_problem(str(tmp_path / "s.db")) is None


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to any folder")
def test_unwritable_folder_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert "not writable" in (sqlite_path_problem(str(folder / "s.db")) or "")
    finally:
        folder.chmod(0o700)


def test_preflight_takes_its_resolver():
    config = parse_config("upstream: {api_key: k-123456}\nserver: {listen: 'h.example:1'}\n")
    asked = []

    def resolve(host: str, port: int) -> object:
        asked.append((host, port))
        raise OSError("no")

    problems = preflight(config, resolve)
    assert asked == [("h.example", 1)]
    assert [i.path for i in problems] == ["server.listen"]


# -- plain http -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080", "http://127.1.2.3", "http://[::1]:9", "http://localhost:1"],
)
def test_plain_http_to_loopback_is_fine_and_unremarked(tmp_path, capsys, url):
    path = write_config(tmp_path, "").read_text().replace("http://127.0.0.1:9", url)
    (tmp_path / "monitor.yaml").write_text(path)
    code, out, _ = check(tmp_path / "monitor.yaml", capsys)
    assert code == 0
    assert "WARNING" not in out


def test_plain_http_upstream_refused_unless_allowed(tmp_path, capsys):
    text = write_config(tmp_path, "").read_text()
    (tmp_path / "monitor.yaml").write_text(text.replace("127.0.0.1:9", "api.example.com"))
    code, _, err = check(tmp_path / "monitor.yaml", capsys)
    assert code == 2
    assert "upstream.base_url: plain http:// would send the key in the clear" in err
    allowed = text.replace(
        "base_url: 'http://127.0.0.1:9'",
        "base_url: 'http://api.example.com', allow_insecure_http: true",
    )
    (tmp_path / "monitor.yaml").write_text(allowed)
    code, out, _ = check(tmp_path / "monitor.yaml", capsys)
    assert code == 0
    assert "WARNING       upstream.base_url is plain http" in out


def test_https_is_fine_anywhere(tmp_path, capsys):
    text = write_config(tmp_path, "").read_text()
    (tmp_path / "monitor.yaml").write_text(text.replace("http://127.0.0.1:9", "https://a.example"))
    assert check(tmp_path / "monitor.yaml", capsys)[0] == 0

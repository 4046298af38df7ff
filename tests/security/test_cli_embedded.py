"""Finding 7: the README's own user commands, and every other CLI command, work while
``iotmon up`` runs on the same embedded database, without stopping it; and a process whose
database went away still answers SIGTERM."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iotmon.cli import STOP_GRACE_S
from tests.integration.helpers import free_port
from tests.security.conftest import child_env, repo_env

PASSWORD = "alice-password-1"  # noqa: S105


def _postmaster_pid(data: Path) -> int | None:
    try:
        return int((data / "pg" / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, dict[str, str], Path]]:
    port = free_port()
    # not under pytest's tmp_path: that is private to root, and the embedded PostgreSQL runs
    # as a user of its own, which must reach its data directory
    base = Path(tempfile.mkdtemp(prefix="iotmon-security-"))
    base.chmod(0o755)
    data = base / "var"
    env = child_env(repo_env()) | {
        "IOTMON_DATA_DIR": str(data),
        "IOTMON_HTTP_PORT": str(port),
        "IOTMON_LOG_JSON": "true",
        "IOTMON_SIMULATOR_RATE": "5",
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "up"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            if httpx.get(f"{url}/health", timeout=3).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.5)
    yield proc, url, env, log
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    pid = _postmaster_pid(data)  # never leave a server behind
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        time.sleep(2)
    shutil.rmtree(base, ignore_errors=True)


def _cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "iotmon", *args], env=env, capture_output=True, timeout=120
    )
    assert out.returncode == 0, (args, out.stdout.decode(), out.stderr.decode())
    return out.stdout.decode() + out.stderr.decode()


def _healthy(url: str) -> None:
    r = httpx.get(f"{url}/health", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["dependencies"]["database"]["status"] == "healthy"


def test_cli_commands_leave_a_running_up_running(up: tuple) -> None:  # type: ignore[type-arg]
    proc, url, env, log = up
    _cli(env, "users", "create", "alice", "--role", "operator", "--password", PASSWORD)
    _healthy(url)
    assert "alice" in _cli(env, "users", "list")
    _healthy(url)
    for args in (("migrate",), ("silence", "list"), ("config", "show")):
        _cli(env, *args)
        _healthy(url)
    _cli(env, "silence", "create", "--for", "1m", "--device", "device-001")
    _cli(env, "users", "set-password", "alice", "--password", "alice-password-2")
    _healthy(url)
    # the running system still serves, with the user the CLI made
    time.sleep(1)
    r = httpx.post(
        f"{url}/api/auth/token",
        json={"username": "alice", "password": "alice-password-2"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    token = r.json()["data"]["accessToken"]
    r = httpx.get(f"{url}/api/silences", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["data"]["silences"]
    assert proc.poll() is None, log.read_text()[-3000:]
    # and it stops cleanly on SIGTERM
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) is not None


def test_a_process_that_lost_its_database_still_answers_sigterm(up: tuple) -> None:  # type: ignore[type-arg]
    proc, _, env, log = up
    data = Path(env["IOTMON_DATA_DIR"])
    pid = _postmaster_pid(data)
    assert pid, "no embedded PostgreSQL?"
    # the database goes away under the running system, as when `iotmon users list` stopped
    # it: pg_ctl stop's fast shutdown (SIGINT to the postmaster)
    os.kill(pid, signal.SIGINT)
    time.sleep(5)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"iotmon up ignored SIGTERM for 60 s:\n{log.read_text()[-3000:]}")
    took = time.monotonic() - t0
    print(f"exited {proc.returncode} {took:.1f} s after SIGTERM")
    # before: 27 s (roles retrying the database); now at most the stop grace (cli.STOP_GRACE_S)
    assert took < STOP_GRACE_S + 3, log.read_text()[-3000:]

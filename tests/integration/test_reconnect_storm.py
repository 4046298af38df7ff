"""A reconnect storm: 1,000 Socket.IO clients connecting within a quarter of a second (what a
web process restart or a network blip does to a wall of dashboards), against `iotmon run web`
on the real Redis and against `iotmon up` (embedded Redis). Every client must end up
connected, told to retry and then connected, within a generous bound, and the server must log
no traceback. The clients are real python-socketio clients on websockets, in four processes
(tests/integration/storm.py).

Before the fix, each connect read ``live:seq`` on a connection of its own from redis-py's
pool (100 at most): against the real Redis 522 of 1,000 connected, in `iotmon up` 100, the
rest waited forever for an answer that never came, and the log held a
``MaxConnectionsError`` traceback per failed handler.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest

from iotmon.config import Settings
from iotmon.users.service import create_user
from tests.integration.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
CLIENTS = 1000
CROWDS = 4  # client processes
SPREAD_S = 0.0  # all clients start connecting within this
WITHIN_S = 30.0  # generous: two cores, shared with the server, the crowds and other tests
PASSWORD = "correct-horse-battery"  # noqa: S105 (a test user's)


class Server:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "iotmon", *args],
                env=env | {"IOTMON_HTTP_PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return f"--- server (rc {self.popen.poll()}) ---\n{self.text()[-chars:]}"

    def ready(self, within_s: float = 120) -> None:
        deadline = time.monotonic() + within_s
        while True:
            if self.popen.poll() is not None:
                pytest.fail(f"the server exited\n{self.tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"no healthy /health within {within_s:g} s\n{self.tail()}")
            time.sleep(0.2)

    def socket_clients(self) -> int:
        body = httpx.get(f"{self.url}/health", timeout=10).json()
        return int(body["roles"]["web"]["socketClients"])

    def token(self, username: str, password: str) -> str:
        r = httpx.post(
            f"{self.url}/api/auth/token",
            json={"username": username, "password": password},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["accessToken"])

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(60)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)
            pytest.fail(f"the server did not stop within 60 s of SIGTERM\n{self.tail()}")
        assert self.popen.returncode == 0, self.tail()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    made: list[Server] = []
    yield made
    for s in made:
        if s.popen.poll() is None:
            s.popen.kill()
            s.popen.wait(10)


def storm(server: Server, token: str) -> list[dict[str, Any]]:
    """CLIENTS clients in CROWDS processes, all starting within SPREAD_S; returns each
    crowd's figures, with every client still connected, and then disconnects them."""
    at = time.time() + 3.0  # the crowd processes import python-socketio meanwhile
    per = CLIENTS // CROWDS
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")}
    crowds = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.storm",
                server.url,
                token,
                str(per),
                str(at + SPREAD_S * i / CROWDS),
                str(SPREAD_S),
                str(WITHIN_S),
            ],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(CROWDS)
    ]
    try:
        results = []
        for c in crowds:
            assert c.stdout is not None
            line = c.stdout.readline()
            assert line, f"a crowd process exited with {c.wait()}\n{server.tail()}"
            results.append(orjson.loads(line))
        # All of them at once, as the server counts them.
        counted = server.socket_clients()
        results.append({"serverCounted": counted})
        for c in crowds:
            assert c.stdin is not None
            c.stdin.write("close\n")
            c.stdin.flush()
        for c in crowds:
            assert c.stdout is not None
            assert "closed" in c.stdout.readline()
            c.wait(30)
        return results
    finally:
        for c in crowds:
            if c.poll() is None:
                c.kill()
                c.wait(10)


def check(server: Server, results: list[dict[str, Any]]) -> None:
    crowds, counted = results[:-1], results[-1]["serverCounted"]
    summary = orjson.dumps(results).decode()
    assert sum(r["hung"] for r in crowds) == 0, f"clients left hanging: {summary}"
    assert sum(r["failedCount"] for r in crowds) == 0, f"clients refused for good: {summary}"
    assert sum(r["connected"] for r in crowds) == CLIENTS, summary
    assert sum(r["status"] for r in crowds) == CLIENTS, f"connection-status missing: {summary}"
    assert counted == CLIENTS, summary
    log = server.text()
    assert "Traceback" not in log, server.tail(6000)
    assert "MaxConnectionsError" not in log, server.tail(6000)
    errors = [line for line in log.splitlines() if re.search(r'"level": ?"(error|critical)"', line)]
    assert not errors, "\n".join(errors[:20])
    # Once they left, the server counts none of them.
    deadline = time.monotonic() + WITHIN_S
    while server.socket_clients():
        assert time.monotonic() < deadline, f"still counted after they left: {summary}"
        time.sleep(0.1)
    print(summary)


def test_a_thousand_clients_at_once_against_run_web(
    settings: Settings, subprocess_env: dict[str, str], tmp_path: Path, servers: list[Server]
) -> None:
    assert settings.database_url is not None
    with psycopg.connect(settings.database_url.get_secret_value(), autocommit=True) as conn:
        create_user(conn, "storm-viewer", PASSWORD, "viewer")
    env = subprocess_env | {"IOTMON_RATE_LIMIT_PER_MINUTE": "0"}
    server = Server(["run", "web"], env, tmp_path / "web.log")
    servers.append(server)
    server.ready()
    results = storm(server, server.token("storm-viewer", PASSWORD))
    check(server, results)
    server.stop()


def test_a_thousand_clients_at_once_against_up(tmp_path: Path, servers: list[Server]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")}
    env |= {"IOTMON_DATA_DIR": str(tmp_path / "var"), "IOTMON_LOG_JSON": "true"}
    server = Server(["up"], env, tmp_path / "up.log")
    servers.append(server)
    server.ready()
    m = re.search(r"created user 'admin' with password '([^']+)'", server.text())
    assert m, server.tail()
    results = storm(server, server.token("admin", m.group(1)))
    check(server, results)
    server.stop()

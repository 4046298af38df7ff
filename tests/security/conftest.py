"""The security suite runs against the real thing: ``iotmon run <role>`` child processes on the
real PostgreSQL, Redis and Kafka of ``scripts/infra.sh`` (each test its own database and
topics), spoken to over real HTTP, as an attacker on the network would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from iotmon.config import Settings
from iotmon.users.service import create_user
from tests.integration.helpers import free_port

PASSWORD = "correct-horse-battery"  # noqa: S105 (test users)
ROLES = ("viewer", "operator", "admin")
REDIS_DB = 15  # the suite's own Redis database (e2e 10, scenarios 9, benches 11-14)


@dataclass
class Proc:
    role: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return int(self.proc.returncode)


@dataclass
class System:
    settings: Settings
    env: dict[str, str]
    tmp: Path
    db: str
    redis_url: str
    procs: list[Proc] = field(default_factory=list)
    _tokens: dict[str, str] = field(default_factory=dict)

    def start(self, role: str, **extra: str) -> Proc:
        port = free_port()
        env = child_env(self.env | {"IOTMON_HTTP_PORT": str(port)} | extra)
        log = self.tmp / f"{role}-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "iotmon", "run", role],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        p = Proc(role, f"http://127.0.0.1:{port}", proc, log)
        self.procs.append(p)
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(f"iotmon run {role} exited with {proc.returncode}:\n{p.text()[-3000:]}")
            try:
                if httpx.get(f"{p.url}/health", timeout=2).status_code in (200, 503):
                    return p
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, p.text()[-3000:]
            time.sleep(0.2)

    def token(self, web: Proc, user: str, password: str = PASSWORD) -> str:
        r = httpx.post(
            f"{web.url}/api/auth/token", json={"username": user, "password": password}, timeout=10
        )
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["accessToken"])

    def h(self, web: Proc, user: str) -> dict[str, str]:
        if user not in self._tokens:
            self._tokens[user] = self.token(web, user)
        return {"Authorization": f"Bearer {self._tokens[user]}"}

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.db, autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []


@pytest.fixture
def system(
    settings: Settings, subprocess_env: dict[str, str], database_url: str, tmp_path: Path
) -> Iterator[System]:
    assert settings.redis_url is not None
    redis_url = settings.redis_url.get_secret_value().rsplit("/", 1)[0] + f"/{REDIS_DB}"
    env = subprocess_env | {
        "IOTMON_REDIS_URL": redis_url,
        "IOTMON_RATE_LIMIT_PER_MINUTE": "0",
        "IOTMON_PROCESSING_GROUP": f"{settings.topic_prefix}processing",
        "IOTMON_ALERTS_GROUP": f"{settings.topic_prefix}alerts",
        "IOTMON_LOG_LEVEL": "INFO",
    }
    with psycopg.connect(database_url, autocommit=True) as conn:
        for role in ROLES:
            create_user(conn, role, PASSWORD, role)
    sysm = System(settings, env, tmp_path, database_url, redis_url)
    yield sysm
    for p in sysm.procs:
        p.stop()


def repo_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")}


def child_env(env: dict[str, str]) -> dict[str, str]:
    """The environment of an ``iotmon`` child process. To run the suite against another
    version of the code (the "before" of each finding), ``SECURITY_CHILD_PYTHONPATH`` names its
    ``src`` (e.g. of a ``git worktree`` at an older commit)."""
    other = os.environ.get("SECURITY_CHILD_PYTHONPATH")
    return env | {"PYTHONPATH": other} if other else env

"""A whole iotmon system for the reliability tests: a PRIVATE instance of the services
(`scripts/infra.sh` with its own state dir and ports, so restarting PostgreSQL, Redis or Kafka
never touches the shared ones), every role its own `iotmon run <role>` process, and the
checks the tests share: exactly once against the topic, statistics against a recomputation,
open alerts against their Redis mirror, Socket.IO clients that record what they receive.

Every wait polls a condition against a deadline and fails with what it saw last and the roles'
logs ("readings stored 12,340 of 12,400 after 60 s").
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis
import socketio
from confluent_kafka import Consumer as KConsumer
from confluent_kafka import TopicPartition as KTP

from iotmon.bus import topic_specs
from iotmon.bus.kafka import KafkaBus
from iotmon.users.service import create_user

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "scripts" / "infra.sh"
SERVICES = ("postgres", "redis", "kafka", "mosquitto")
PASSWORD = "reliability-password"  # noqa: S105 (a test user's)


# --- bounded waits ---------------------------------------------------------------------------
def wait_for(
    check: Callable[[], tuple[bool, str]],
    what: str,
    timeout: float,
    system: System | None = None,
    interval: float = 0.25,
) -> str:
    """Poll ``check`` (-> (done, what it saw)) until done; fail at the deadline with what it
    saw last, or at once when a role process died."""
    started = time.monotonic()
    seen = "nothing yet"
    while True:
        try:
            done, seen = check()
        except Exception as exc:  # a service still coming back: keep polling
            done, seen = False, f"{type(exc).__name__}: {exc}"
        if done:
            return seen
        if system is not None:
            system.check_alive()
        elapsed = time.monotonic() - started
        if elapsed > timeout:
            tails = system.tails() if system is not None else ""
            pytest.fail(f"{what}: {seen} after {elapsed:.0f} s\n{tails}")
        time.sleep(interval)


# --- the private services ------------------------------------------------------------------
def _ports_free(ports: list[int]) -> bool:
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def choose_ports() -> dict[str, int]:
    """Five free loopback ports in 55000-55999 (Kafka's controller is its port + 1)."""
    rng = random.Random()
    for _ in range(200):
        base = 55000 + rng.randrange(0, 995 // 5) * 5
        ports = list(range(base, base + 5))
        if _ports_free(ports):
            return {
                "IOTMON_PG_PORT": base,
                "IOTMON_REDIS_PORT": base + 1,
                "IOTMON_KAFKA_PORT": base + 2,  # controller: base + 3
                "IOTMON_MQTT_PORT": base + 4,
            }
    raise RuntimeError("no five free ports in 55000-55999")


class PrivateInfra:
    """`scripts/infra.sh` on a state dir and ports of its own."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.ports = choose_ports()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")} | {
            "IOTMON_INFRA_DIR": str(state),
            **{k: str(v) for k, v in self.ports.items()},
        }
        self.log = state / "infra-commands.log"

    def run(self, *args: str, timeout: float = 240) -> None:
        state = self.state
        state.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        proc = subprocess.run(
            [str(INFRA), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        with self.log.open("a") as out:
            out.write(
                f"$ infra.sh {' '.join(args)} ({time.monotonic() - started:.1f} s, rc "
                f"{proc.returncode})\n{proc.stderr}"
            )
        if proc.returncode != 0:
            raise RuntimeError(
                f"scripts/infra.sh {' '.join(args)} failed ({proc.returncode}):\n"
                f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
            )

    def up(self) -> None:
        self.run("up")

    def down(self) -> None:
        self.run("down")

    def start(self, service: str) -> None:
        self.run("start", service)

    def stop(self, service: str) -> None:
        self.run("stop", service)

    def kill9(self, service: str) -> None:
        self.run("kill9", service)

    @property
    def database_url(self) -> str:
        return f"postgresql://iotmon:iotmon@127.0.0.1:{self.ports['IOTMON_PG_PORT']}/iotmon"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.ports['IOTMON_REDIS_PORT']}/0"

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.ports['IOTMON_KAFKA_PORT']}"


# --- role processes ------------------------------------------------------------------------
@dataclass
class Role:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, chars: int = 3000) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return f"--- {self.name} (pid {self.pid}, rc {self.popen.poll()}) ---\n{text[-chars:]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class System:
    """The roles of one iotmon deployment on a private infra, each its own process."""

    def __init__(self, infra: PrivateInfra, logs: Path, **settings: str) -> None:
        self.infra = infra
        self.logs = logs
        self.prefix = f"r{uuid.uuid4().hex[:6]}-"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")} | {
            "IOTMON_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
            "IOTMON_DATABASE_URL": infra.database_url,
            "IOTMON_REDIS_URL": infra.redis_url,
            "IOTMON_TOPIC_PREFIX": self.prefix,
            "IOTMON_INGESTION_GROUP": f"{self.prefix}ingestion",
            "IOTMON_PROCESSING_GROUP": f"{self.prefix}processing",
            "IOTMON_ALERTS_GROUP": f"{self.prefix}alerts",
            "IOTMON_DATA_DIR": str(logs / "data"),
            "IOTMON_LOG_JSON": "true",
            "IOTMON_RATE_LIMIT_PER_MINUTE": "0",
            "IOTMON_DASHBOARD_DIR": str(logs / "no-dashboard"),
            **settings,
        }
        self.roles: dict[str, Role] = {}
        self.retired: list[Role] = []  # killed or stopped on purpose
        self.bus = KafkaBus(infra.kafka_bootstrap)

    # --- setup ---
    def prepare(self) -> None:
        """Migrations, topics, a viewer for the API and Socket.IO (once, before the roles)."""
        for cmd in (["migrate"], ["topics", "create"]):
            subprocess.run(
                [sys.executable, "-m", "iotmon", *cmd],
                env=self.env,
                check=True,
                capture_output=True,
                timeout=120,
            )
        with psycopg.connect(self.infra.database_url, autocommit=True) as conn:
            create_user(conn, "reliability", PASSWORD, "viewer")
            create_user(conn, "reliability-operator", PASSWORD, "operator")

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    # --- processes ---
    def start(self, name: str, **extra_env: str) -> Role:
        port = free_port()
        n = sum(1 for r in [*self.roles.values(), *self.retired] if r.name == name)
        log = self.logs / f"{name}-{n}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "iotmon", "run", name],
                env=self.env | {"IOTMON_HTTP_PORT": str(port)} | extra_env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        role = Role(name, popen, log, port)
        self.roles[name] = role
        return role

    def wait_healthy(self, *names: str, timeout: float = 90) -> None:
        for name in names or tuple(self.roles):
            role = self.roles[name]
            wait_for(
                lambda role=role: _health(f"{role.url}/health"),  # type: ignore[misc]
                f"{name} /health answering 200",
                timeout,
                self,
            )

    def kill9(self, name: str) -> Role:
        role = self.roles.pop(name)
        os.kill(role.pid, signal.SIGKILL)
        role.popen.wait(30)
        self.retired.append(role)
        return role

    def stop(self, name: str, timeout: float = 30) -> int:
        role = self.roles.pop(name)
        role.popen.send_signal(signal.SIGTERM)
        try:
            rc = role.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            role.popen.kill()
            role.popen.wait(10)
            rc = -9
        self.retired.append(role)
        return rc

    def revive(self, names: tuple[str, ...]) -> list[str]:
        """After a failed test: start again the roles of ``names`` that died, stop any other
        (the next test starts from the same place). Returns what it had to do."""
        done = []
        for name in [n for n in self.roles if n not in names]:
            self.stop(name)
            done.append(f"stopped {name}")
        for name in names:
            role = self.roles.get(name)
            if role is None or role.popen.poll() is not None:
                if role is not None:
                    self.retired.append(self.roles.pop(name))
                self.start(name)
                done.append(f"restarted {name}")
        if done:
            self.wait_healthy(*names)
        return done

    def pids(self) -> dict[str, int]:
        return {name: role.pid for name, role in self.roles.items()}

    def check_alive(self) -> None:
        dead = [r for r in self.roles.values() if r.popen.poll() is not None]
        if dead:
            pytest.fail("role process exited:\n" + "\n".join(r.tail() for r in dead))

    def assert_unchanged(self, pids: dict[str, int]) -> None:
        """Nobody restarted a role by hand: the same processes, all still running."""
        self.check_alive()
        assert self.pids() == pids, f"role processes changed: {pids} -> {self.pids()}"

    def tails(self, chars: int = 3000) -> str:
        return "\n".join(r.tail(chars) for r in [*self.roles.values(), *self.retired[-2:]])

    def stop_all(self) -> list[str]:
        problems = []
        for role in list(self.roles.values()):
            if role.popen.poll() is None:
                role.popen.send_signal(signal.SIGTERM)
        for name, role in list(self.roles.items()):
            try:
                role.popen.wait(30)
            except subprocess.TimeoutExpired:
                role.popen.kill()
                role.popen.wait(10)
                problems.append(f"{name} did not stop within 30 s of SIGTERM\n{role.tail()}")
            self.roles.pop(name)
            self.retired.append(role)
        return problems

    def close(self) -> None:
        self.stop_all()
        self.bus.close()

    # --- what is in the topics, the database, Redis ---
    def end_offsets(self, name: str) -> list[int]:
        return self.bus.end_offsets(self.topic(name))

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.infra.redis_url, socket_timeout=5)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.infra.database_url, connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()  # type: ignore[arg-type]

    def ingested(self) -> tuple[int, int, int]:
        """In one snapshot: rows stored, distinct (device, timestamp) among them, and the sum
        of ingestion's committed offsets (rows and offsets are committed together)."""
        with psycopg.connect(self.infra.database_url, connect_timeout=5) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            rows, distinct = conn.execute(
                'SELECT count(*), count(DISTINCT (device_id, "timestamp")) FROM sensor_readings'
            ).fetchone()  # type: ignore[misc]
            (offsets,) = conn.execute(
                "SELECT coalesce(sum(next_offset), 0) FROM ingest_offsets"
                " WHERE group_id = %s AND topic = %s",
                (f"{self.prefix}ingestion", self.topic("sensors-data")),
            ).fetchone()  # type: ignore[misc]
            conn.rollback()
        return int(rows), int(distinct), int(offsets)

    def committed(self, group: str, name: str) -> int:
        """The sum of a consumer group's committed offsets on a topic."""
        topic = self.topic(name)
        ends = self.bus.end_offsets(topic)
        c = KConsumer({"bootstrap.servers": self.infra.kafka_bootstrap, "group.id": group})
        try:
            tps = c.committed([KTP(topic, p) for p in range(len(ends))], timeout=10)
        finally:
            c.close()
        return sum(max(tp.offset, 0) for tp in tps)

    def dlq(self, name: str = "sensors-data.dlq") -> list[tuple[bytes | None, dict[str, bytes]]]:
        """Every message of a DLQ topic: (value, headers)."""
        topic = self.topic(name)
        ends = self.bus.end_offsets(topic)
        out: list[tuple[bytes | None, dict[str, bytes]]] = []
        if not any(ends):
            return out
        c = KConsumer(
            {
                "bootstrap.servers": self.infra.kafka_bootstrap,
                "group.id": f"dlq-reader-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "fetch.max.bytes": 52_428_800,
            }
        )
        try:
            c.assign([KTP(topic, p, 0) for p, end in enumerate(ends) if end])
            want = sum(ends)
            deadline = time.monotonic() + 60
            while len(out) < want and time.monotonic() < deadline:
                for m in c.consume(1000, 1.0):
                    if m.error() is None:
                        out.append((m.value(), dict(m.headers() or [])))
        finally:
            c.close()
        assert len(out) >= sum(ends), f"read {len(out)} of {sum(ends)} DLQ messages"
        return out


def _health(url: str) -> tuple[bool, str]:
    r = httpx.get(url, timeout=5)
    return r.status_code == 200, f"{r.status_code} {r.text[:300]}"


def health_code(url: str) -> int | str:
    try:
        return httpx.get(url, timeout=6).status_code
    except httpx.HTTPError as exc:
        return type(exc).__name__


# --- statistics against a recomputation (as tests/integration/test_processing.py) ---------
RECOMPUTE = """
    SELECT count(*), avg(value), min(value), max(value), stddev(value)
    FROM sensor_readings WHERE device_id = %s AND "timestamp" >= %s AND "timestamp" < %s
"""


def stats_mismatches(system: System, devices: list[str], window: str = "1h") -> list[str]:
    """Devices whose live statistics in Redis differ from a recomputation from PostgreSQL
    over the window the statistics say they cover."""
    r = system.redis()
    problems = []
    try:
        raws = r.mget([f"device:{d}:stats:{window}" for d in devices])
        with psycopg.connect(system.infra.database_url, connect_timeout=5) as conn:
            for device, raw in zip(devices, raws, strict=True):
                if not raw:
                    problems.append(f"{device}: no stats:{window} in Redis")
                    continue
                st = orjson.loads(raw)
                n, avg, lo, hi, std = conn.execute(
                    RECOMPUTE, (device, st["windowStart"], st["windowEnd"])
                ).fetchone()  # type: ignore[misc]
                ok = (
                    st["count"] == n
                    and (n == 0 or _close(st["avg"], avg, 1e-9))
                    and (n == 0 or (st["min"] == lo and st["max"] == hi))
                    and (n < 2 or _close(st["std"], std, 1e-6))
                )
                if not ok:
                    problems.append(
                        f"{device}: redis count={st['count']} avg={st.get('avg')} "
                        f"min={st.get('min')} max={st.get('max')} std={st.get('std')}; "
                        f"postgres count={n} avg={avg} min={lo} max={hi} std={std} "
                        f"[{st['windowStart']}, {st['windowEnd']})"
                    )
    finally:
        r.close()
    return problems


def _close(a: Any, b: Any, rel: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return abs(float(a) - float(b)) <= rel * max(abs(float(a)), abs(float(b)), 1e-12)


# --- open alerts against their Redis mirror --------------------------------------------------
def alert_problems(system: System) -> list[str]:
    """At most one open alert per device and type; the open alerts of PostgreSQL are exactly
    the hash alerts:active."""
    problems = []
    doubled = system.query(
        "SELECT device_id, alert_type, count(*) FROM alerts WHERE status <> 'resolved'"
        " GROUP BY 1, 2 HAVING count(*) > 1"
    )
    problems += [f"{d}/{t}: {n} open alerts" for d, t, n in doubled]
    open_ids = {str(i) for (i,) in system.query("SELECT id FROM alerts WHERE status <> 'resolved'")}
    r = system.redis()
    try:
        mirrored = {k.decode() for k in r.hkeys("alerts:active")}
    finally:
        r.close()
    if open_ids - mirrored:
        problems.append(f"open in PostgreSQL, missing from alerts:active: {open_ids - mirrored}")
    if mirrored - open_ids:
        problems.append(f"in alerts:active, not open in PostgreSQL: {mirrored - open_ids}")
    return problems


# --- Socket.IO ------------------------------------------------------------------------------
class LiveClient:
    """A python-socketio client that records every event it receives, in order. Like the
    dashboard's socket.io-client, it tries again when a connection attempt is refused (the
    server tells a client to retry when a dependency hiccups), within a deadline."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.refusals: list[Any] = []
        self.sio = self._client()

    def _client(self) -> socketio.AsyncClient:
        sio = socketio.AsyncClient(reconnection=False)
        sio.on("*", self._record)
        sio.on("connect_error", self._refused)
        return sio

    async def _record(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))

    async def _refused(self, data: Any = None) -> None:
        self.refusals.append(data)

    async def connect(self, url: str, auth_data: dict[str, Any], within_s: float = 60) -> None:
        deadline = time.monotonic() + within_s
        while True:
            try:
                await self.sio.connect(
                    url, auth=auth_data, transports=["websocket"], wait_timeout=30
                )
                return
            except socketio.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                with contextlib.suppress(Exception):
                    await self.sio.disconnect()
                self.sio = self._client()
                await asyncio.sleep(1.0)

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, timeout=30)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()

    def ids(self, room_events: tuple[str, ...] = ()) -> list[int]:
        return [
            int(d["eventId"])
            for e, d in self.events
            if isinstance(d, dict) and "eventId" in d and (not room_events or e in room_events)
        ]

    def last_id(self) -> int:
        return max(self.ids(), default=0)


def login(web_url: str, username: str = "reliability") -> str:
    r = httpx.post(
        f"{web_url}/api/auth/token", json={"username": username, "password": PASSWORD}, timeout=15
    )
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["accessToken"])


def start_scenario(system: System, device: str, kind: str, duration_s: float) -> None:
    """POST /simulator/scenarios on the simulator role (an operator's token)."""
    token = login(system.roles["web"].url, "reliability-operator")
    r = httpx.post(
        f"{system.roles['simulator'].url}/simulator/scenarios",
        json={"deviceId": device, "kind": kind, "durationS": duration_s},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert r.status_code == 201, r.text


def all_topics(prefix: str) -> list[str]:
    return [s.name for s in topic_specs(prefix)]

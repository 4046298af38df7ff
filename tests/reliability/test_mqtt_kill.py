"""MQTT devices, nothing lost and nothing doubled when the bridge or the decoder is killed
with SIGKILL mid-flow: real ``iotmon run mqtt-bridge`` / ``mqtt-decoder`` / ``ingestion``
processes on the shared services (only iotmon processes are killed), QoS 1 publishers that go
on publishing through the kills, each reading counted in PostgreSQL by device and device
timestamp at the end.

What each kill exercises:
- the bridge: messages Kafka acknowledged but the broker never got a PUBACK for are
  redelivered to the restarted bridge (its persistent session) and land twice on ``mqtt-raw``;
  the decoder's dedup window drops the second copy; messages not yet forwarded are not lost;
- the decoder: its open transaction (readings + offsets) is aborted by the restarted one
  (same transactional id), which starts from the committed offsets with its dedup window
  rebuilt from the raw topic.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from tests.integration.helpers import free_port
from tests.mqtt_support import bridge_url, close, connect, provision

pytestmark = pytest.mark.reliability

DEVICES = 12
RATE_PER_DEVICE = 60  # messages per second, ~720/s in all


class Fleet:
    """One provisioned MQTT connection per device, publishing QoS 1 in a thread: the n-th
    message of a device carries device timestamp base + n ms and value 20 + n / 1000."""

    def __init__(self, root: str, devices: list[str]) -> None:
        self.root = root
        self.devices = devices
        self.base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
        self.clients = {d: connect(*provision(d, root=root)) for d in devices}
        self.refused: list[str] = []  # PUBACKs with a failure reason code (an ACL, a quota)
        for c in self.clients.values():
            c.on_publish = self._on_publish
        self.infos: list[mqtt.MQTTMessageInfo] = []
        self.rounds = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_publish(
        self, client: mqtt.Client, userdata: object, mid: int, reason: object, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self.refused.append(str(reason))

    def stamp(self, n: int) -> datetime:
        return self.base + timedelta(milliseconds=n)

    def _run(self) -> None:
        period = 1.0 / RATE_PER_DEVICE
        next_at = time.monotonic()
        while not self._stop.is_set():
            n = self.rounds
            ts = self.stamp(n).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            for d, c in self.clients.items():
                body = orjson.dumps({"timestamp": ts, "value": 20 + n / 1000})
                self.infos.append(c.publish(f"{self.root}devices/{d}/telemetry", body, qos=1))
            self.rounds = n + 1
            next_at += period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self._thread.start()

    def stop(self, within: float = 60) -> None:
        """Stop publishing; wait until the broker acknowledged every message."""
        self._stop.set()
        self._thread.join(10)
        deadline = time.monotonic() + within
        for info in self.infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        unacked = sum(1 for i in self.infos if not i.is_published())
        assert unacked == 0, f"{unacked} of {len(self.infos)} publishes never acknowledged"
        assert not self.refused, f"{len(self.refused)} publishes refused: {self.refused[:3]}"

    def close(self) -> None:
        for c in self.clients.values():
            close(c)

    def expected(self) -> set[tuple[str, datetime]]:
        return {(d, self.stamp(n)) for n in range(self.rounds) for d in self.devices}


class Roles:
    """``iotmon run <role>`` processes with one environment, logs kept for a failure."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.all: list[subprocess.Popen[bytes]] = []
        self.starts: dict[str, int] = {}
        self.ports: dict[str, int] = {}
        self.note = ""

    def start(self, name: str) -> None:
        n = self.starts.get(name, 0)
        self.starts[name] = n + 1
        port = self.ports[name] = free_port()
        with (self.logs / f"{name}-{n}.log").open("wb") as out:
            p = subprocess.Popen(
                [sys.executable, "-m", "iotmon", "run", name],
                env=self.env | {"IOTMON_HTTP_PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.procs[name] = p
        self.all.append(p)

    def kill9(self, name: str) -> None:
        p = self.procs.pop(name)
        p.send_signal(signal.SIGKILL)
        p.wait(30)

    def wait_subscribed(self, timeout: float = 60) -> None:
        """The bridge connected (and, a moment later, subscribed): a message published before
        the first bridge subscribed has no subscriber and goes nowhere, as MQTT says."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{self.ports['mqtt-bridge']}/health", timeout=5)
                if r.json()["roles"]["mqtt-bridge"]["connected"]:
                    time.sleep(1.0)  # the SUBACK
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            self.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"the bridge did not connect in {timeout} s\n{self.tails()}")
            time.sleep(0.2)

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                pytest.fail(f"{name} exited with {p.returncode}\n{self.tails()}")

    def tails(self) -> str:
        logs = "\n".join(
            f"--- {f.name} ---\n{f.read_text(errors='replace')[-2500:]}"
            for f in sorted(self.logs.glob("*.log"))
        )
        return f"{logs}\n{self.health()}\n{self.note}"

    def health(self) -> str:
        """What each running role says of itself (its counters) on /health."""
        out = []
        for name in self.procs:
            try:
                r = httpx.get(f"http://127.0.0.1:{self.ports[name]}/health", timeout=5)
                out.append(f"{name}: {r.text[:1500]}")
            except httpx.HTTPError as exc:
                out.append(f"{name}: /health {type(exc).__name__}")
        return "\n".join(out)

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        self.procs.clear()

    def kill_all(self) -> None:
        for p in self.all:
            if p.poll() is None:
                p.kill()
                p.wait(10)


@pytest.fixture
def roles(subprocess_env: dict[str, str], settings: Settings, tmp_path: Path) -> Iterator[Roles]:
    tag = uuid.uuid4().hex[:8]
    env = subprocess_env | {
        "IOTMON_MQTT_URL": bridge_url(),
        "IOTMON_MQTT_TOPIC_ROOT": f"k{tag}/",
        "IOTMON_MQTT_SHARE_GROUP": f"k{tag}",
        "IOTMON_MQTT_CLIENT_ID": f"bridge-{tag}",
        "IOTMON_MQTT_DECODER_GROUP": f"{settings.topic_prefix}mqtt-decoder",
        "IOTMON_MQTT_DECODER_ID": tag,
        "IOTMON_MQTT_PROFILE_REFRESH_S": "0.5",
    }
    r = Roles(env, tmp_path)
    yield r
    r.kill_all()


def stored(url: str, prefix: str) -> set[tuple[str, datetime]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            'SELECT device_id, "timestamp" FROM sensor_readings WHERE device_id LIKE %s',
            (f"{prefix}%",),
        ).fetchall()
    return set(rows)


def row_counts(url: str, prefix: str) -> tuple[int, int]:
    with psycopg.connect(url) as conn:
        total, distinct = conn.execute(
            'SELECT count(*), count(DISTINCT (device_id, "timestamp")) FROM sensor_readings'
            " WHERE device_id LIKE %s",
            (f"{prefix}%",),
        ).fetchone()  # type: ignore[misc]
    return int(total), int(distinct)


def wait_rows(url: str, prefix: str, at_least: int, roles: Roles, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while True:
        n = row_counts(url, prefix)[0]
        if n >= at_least:
            return n
        roles.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"{n} of {at_least} rows after {timeout} s\n{roles.tails()}")
        time.sleep(0.1)


@pytest.mark.parametrize("victim", ["mqtt-bridge", "mqtt-decoder"])
def test_sigkill_mid_flow_loses_and_doubles_nothing(
    victim: str, roles: Roles, settings: Settings
) -> None:
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    prefix = f"mk{uuid.uuid4().hex[:4]}-"
    devices = [f"{prefix}{i:03d}" for i in range(DEVICES)]
    with psycopg.connect(url, autocommit=True) as conn:
        for d in devices:
            conn.execute(
                "INSERT INTO devices (device_id, device_type, location, profile)"
                " VALUES (%s, 'temperature', 'hall-k', 'spec-temperature')",
                (d,),
            )
    for name in ("ingestion", "mqtt-decoder", "mqtt-bridge"):
        roles.start(name)
    roles.wait_subscribed()
    fleet = Fleet(roles.env["IOTMON_MQTT_TOPIC_ROOT"], devices)
    try:
        fleet.start()
        reached = []
        for _ in range(3):
            # Mid-flow: rows arriving, publishers publishing.
            reached.append(wait_rows(url, prefix, row_counts(url, prefix)[0] + 1500, roles))
            roles.kill9(victim)
            time.sleep(1.5)  # the publishers go on meanwhile
            roles.start(victim)
        wait_rows(url, prefix, row_counts(url, prefix)[0] + 1500, roles)
        fleet.stop()
        expected = fleet.expected()
        raw = KafkaBus(str(settings.kafka_bootstrap)).end_offsets(settings.topic("mqtt-raw"))
        roles.note = f"published {len(expected)}, on {settings.topic('mqtt-raw')}: {sum(raw)}"
        wait_rows(url, prefix, len(expected), roles, timeout=180)
        time.sleep(2.0)  # anything doubled would land now
        roles.check_alive()
    finally:
        fleet.close()
        logs = roles.tails()
        roles.stop_all()

    total, distinct = row_counts(url, prefix)
    got = stored(url, prefix)
    missing, extra = expected - got, got - expected
    assert not missing, f"{len(missing)} readings lost, e.g. {sorted(missing)[:3]}\n{logs}"
    assert not extra, f"{len(extra)} readings never published, e.g. {sorted(extra)[:3]}"
    assert (total, distinct) == (len(expected), len(expected)), (
        f"{total} rows, {distinct} distinct, {len(expected)} published: "
        f"{total - distinct} doubled\n{logs}"
    )

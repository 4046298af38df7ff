"""The dashboards and the alerting rules against a real Prometheus (Debian's, installed when
missing) scraping a running system: every role its own ``iotmon run <role>`` process on this
test's database, topics and consumer groups (tests/reliability/system.py), the simulator
feeding it, one MQTT device publishing through the broker, a Socket.IO client watching a
device, an alert with a notification channel that fails, and malformed input for the DLQs.

Checked: every target is up; every expression of every dashboard (template variables
substituted) and of every rule is accepted by Prometheus's query API and returns data, but
for the ones listed in EXPECTED_EMPTY with the reason they stay empty on a healthy system;
every rule is loaded and evaluates without error; the one alert this system should raise
(notifications failing) has its condition true.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from iotmon.bus.kafka import KafkaBus
from iotmon.roles import ROLES
from tests import mqtt_support
from tests.deploy.prometheus_support import RULES, ensure_prometheus, queries, rules
from tests.reliability.system import LiveClient, System, free_port, login, start_scenario

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

ROLE_NAMES = tuple(ROLES)  # simulator, ingestion, processing, alerts, mqtt-*, web
SCENARIO_DEVICE = "device-001"
QUIET_DEVICE = "device-quiet"  # registered, never sends: its device_offline alert opens
SCRAPE_S = 2

# (dashboard, panel, refId) -> why it returns nothing on this healthy system
EXPECTED_EMPTY: dict[tuple[str, str, str], str] = {
    ("overview.json", "API errors (5xx) per second", "A"): "no request failed",
    ("web.json", "Redis errors", "A"): "Redis answered (the web role counts only failures)",
    ("alerts.json", "Redis errors", "A"): "Redis answered (the alerts role counts only failures)",
    ("processing.json", "Dead-lettered by reason", "A"): "processing dead-letters only readings"
    " its statistics fail on; invalid ones are ingestion's",
    ("alerts.json", "Dead-lettered by reason", "A"): "every alert candidate was valid",
    **{
        (f"{board}.json", "Role restarts (after a bug)", "A"): "no role raised"
        for board in ("web", "ingestion", "processing", "alerts", "mqtt")
    },
}
# metrics a rule reads that stay empty on this system (the rule's own test covers them)
EXPECTED_EMPTY_METRICS: dict[str, str] = {}


@dataclass
class SharedInfra:
    """The shared services of scripts/infra.sh, for System (which takes a private one)."""

    kafka_bootstrap: str
    database_url: str
    redis_url: str


class Prometheus:
    def __init__(self, binary: str, workdir: Path, targets: dict[str, int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": f"{SCRAPE_S}s", "evaluation_interval": f"{SCRAPE_S}s"},
            "rule_files": [str(RULES)],
            "scrape_configs": [
                {"job_name": role, "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
                for role, port in targets.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        with self.log.open("wb") as out:
            self.popen = subprocess.Popen(
                [
                    binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def api(self, path: str, **params: str) -> Any:
        r = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=30)
        body = r.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, promql: str) -> tuple[list[Any], str | None]:
        """(result, error): the error Prometheus gives for an expression it refuses."""
        r = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=30)
        body = r.json()
        if body.get("status") != "success":
            return [], f"{body.get('errorType')}: {body.get('error')}"
        return body["data"]["result"], None

    def close(self) -> None:
        self.popen.terminate()
        try:
            self.popen.wait(30)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(10)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def until(check: Any, what: str, timeout: float, system: System, prom: Prometheus) -> Any:
    deadline = time.monotonic() + timeout
    seen: Any = None
    while True:
        done, seen = check()
        if done:
            return seen
        system.check_alive()
        assert prom.popen.poll() is None, f"prometheus exited:\n{prom.tail()}"
        if time.monotonic() > deadline:
            pytest.fail(f"{what} after {timeout:.0f} s: {seen}\n{system.tails(1500)}")
        time.sleep(1.0)


class Watcher:
    """A Socket.IO client on the web role, in a thread of its own, in a device's room and the
    system room: events are fanned out to it, so the delivery latency has observations."""

    def __init__(self, web_url: str, token: str) -> None:
        self.error: BaseException | None = None
        self.events = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(web_url, token), daemon=True)
        self._thread.start()

    def _run(self, web_url: str, token: str) -> None:
        async def main() -> None:
            client = LiveClient()
            await client.connect(web_url, {"token": token})
            for event, data in (
                ("subscribe-device", {"deviceId": SCENARIO_DEVICE}),
                ("subscribe-system", None),
            ):
                ack = await client.call(event, data)
                assert ack.get("ok"), ack
            while not self._stop.is_set():
                self.events = len(client.events)
                await asyncio.sleep(0.5)
            await client.close()

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by the test
            self.error = exc

    def close(self) -> None:
        self._stop.set()
        self._thread.join(30)


@pytest.fixture
def system(
    infra: dict[str, str], database_url: str, tmp_path: Path
) -> Iterator[tuple[System, dict[str, str]]]:
    tag = uuid.uuid4().hex[:8]
    closed_port = free_port()  # nothing listens: every webhook notification fails
    shared = SharedInfra(infra["IOTMON_KAFKA_BOOTSTRAP"], database_url, infra["IOTMON_REDIS_URL"])
    s = System(
        shared,  # type: ignore[arg-type]
        tmp_path,
        IOTMON_SIMULATOR_DEVICES="10",
        IOTMON_SIMULATOR_RATE="2",
        IOTMON_NOTIFY_WEBHOOK_URLS=orjson.dumps([f"http://127.0.0.1:{closed_port}/hook"]).decode(),
        IOTMON_MQTT_URL=mqtt_support.bridge_url(),
        IOTMON_MQTT_TOPIC_ROOT=f"p{tag}/",
        IOTMON_MQTT_SHARE_GROUP=f"p{tag}",
        IOTMON_MQTT_CLIENT_ID=f"bridge-{tag}",
        IOTMON_MQTT_DECODER_ID=tag,
    )
    s.env["IOTMON_MQTT_DECODER_GROUP"] = f"{s.prefix}mqtt-decoder"
    s.prepare()
    s.query(
        "INSERT INTO devices (device_id, device_type, location, unit, normal_min, normal_max,"
        " alert_min, alert_max, interval_ms, offline_timeout_s)"
        " VALUES (%s, 'pressure', 'bench', 'psi', 10, 50, 5, 55, 1000, 3) RETURNING 1",
        (QUIET_DEVICE,),
    )
    try:
        for role in ROLE_NAMES:
            s.start(role)
        s.wait_healthy(timeout=120)
        yield s, {"root": f"p{tag}/"}
    finally:
        problems = s.stop_all()
        s.close()
        assert not problems, "\n".join(problems)


def feed_bad_input(system: System) -> None:
    """A record ingestion cannot parse (its DLQ, reason invalid_json or the like)."""
    bus = KafkaBus(system.env["IOTMON_KAFKA_BOOTSTRAP"])
    producer = bus.producer()
    producer.produce(system.topic("sensors-data"), b"{not json", key=b"device-001")
    producer.flush()


def feed_mqtt(system: System, root: str) -> None:
    """One MQTT device: readings through the bridge and decoder, and one it cannot decode."""
    device = f"pm-{uuid.uuid4().hex[:6]}"
    system.query(
        "INSERT INTO devices (device_id, device_type, location, profile)"
        " VALUES (%s, 'temperature', 'hall-p', 'spec-temperature') RETURNING 1",
        (device,),
    )
    client = mqtt_support.device_client(device, root=root)
    try:
        topic = f"{root}devices/{device}/telemetry"
        infos = []
        for n in range(5):
            ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{n:03d}Z"
            infos.append(client.publish(topic, orjson.dumps({"timestamp": ts, "value": 21.5})))
        infos.append(client.publish(topic, b"\xff not a reading", qos=1))
        for info in infos:
            info.wait_for_publish(30)
    finally:
        mqtt_support.close(client)


def rule_metrics(expr: str) -> set[str]:
    names = set(re.findall(r"\b(iotmon_[a-z_]+)\b", expr))
    if re.search(r"\bup\{", expr):
        names.add("up")
    return names


def test_dashboards_and_rules_on_a_running_system(
    system: tuple[System, dict[str, str]], tmp_path: Path
) -> None:
    s, mqtt = system
    tools = ensure_prometheus()
    ports = {name: role.port for name, role in s.roles.items()}
    assert set(ports) == set(ROLE_NAMES)
    prom = Prometheus(tools["prometheus"], tmp_path, ports)
    watcher: Watcher | None = None
    try:
        # Things for the series to show: bad input, MQTT traffic, an alert, a watching client.
        feed_bad_input(s)
        feed_mqtt(s, mqtt["root"])
        start_scenario(s, SCENARIO_DEVICE, "high", 240)
        watcher = Watcher(s.roles["web"].url, login(s.roles["web"].url))

        def targets_up() -> tuple[bool, Any]:
            try:
                active = prom.api("targets")["activeTargets"]
            except (httpx.HTTPError, ValueError) as exc:
                return False, repr(exc)
            health = {t["labels"]["job"]: (t["health"], t["lastError"]) for t in active}
            ok = set(health) == set(ROLE_NAMES) and all(h == "up" for h, _ in health.values())
            return ok, health

        until(targets_up, "every role's target up", 90, s, prom)

        qs = queries()
        expected = [q for q in qs if (q.dashboard, q.panel, q.ref) not in EXPECTED_EMPTY]
        unknown = set(EXPECTED_EMPTY) - {(q.dashboard, q.panel, q.ref) for q in qs}
        assert not unknown, f"EXPECTED_EMPTY names queries the dashboards lack: {unknown}"

        def empty_ones() -> tuple[bool, list[str]]:
            assert watcher is not None
            if watcher.error is not None:
                raise watcher.error
            empty = []
            for q in expected:
                result, error = prom.query(q.promql)
                assert error is None, f"{q.dashboard} / {q.panel} / {q.ref}: {error}\n{q.promql}"
                if not result:
                    empty.append(f"{q.dashboard} / {q.panel} / {q.ref}: {q.promql}")
            return not empty, empty

        # Rates need two scrapes of a counter after it first moved: poll until all have data.
        until(empty_ones, "dashboard queries with no data", 180, s, prom)

        # Every query, the expected-empty ones too, parses; those stay empty (a healthy run).
        for q in qs:
            result, error = prom.query(q.promql)
            assert error is None, f"{q}: {error}"
            if (q.dashboard, q.panel, q.ref) in EXPECTED_EMPTY:
                assert result == [], f"{q} returned data; drop it from EXPECTED_EMPTY"

        # The rules: loaded, evaluated without error, each one's expression accepted, and
        # every metric each reads exported by the running roles.
        loaded = {r["name"]: r for g in prom.api("rules")["groups"] for r in g["rules"]}
        assert set(loaded) == {r["alert"] for r in rules()}
        until(
            lambda: (
                all(
                    r["health"] == "ok"
                    for r in (x for g in prom.api("rules")["groups"] for x in g["rules"])
                ),
                {
                    x["name"]: (x["health"], x.get("lastError"))
                    for g in prom.api("rules")["groups"]
                    for x in g["rules"]
                },
            ),
            "every rule evaluated without error",
            30,
            s,
            prom,
        )
        for r in rules():
            _, error = prom.query(r["expr"])
            assert error is None, f"{r['alert']}: {error}"
            for name in rule_metrics(r["expr"]) - set(EXPECTED_EMPTY_METRICS):
                result, _ = prom.query(name)
                assert result, f"{r['alert']} reads {name}, which no role exports"

        # The alert this system should raise: every webhook notification failed (once the
        # failures counted grew between two scrapes: a rate needs that).
        failing = next(r["expr"] for r in rules() if r["alert"] == "IotmonNotificationsFailing")

        def notifications_failing() -> tuple[bool, Any]:
            result, _ = prom.query(failing)
            channels = [x["metric"].get("channel") for x in result]
            return channels == ["webhook"], channels

        until(notifications_failing, "IotmonNotificationsFailing's condition", 120, s, prom)
        # and the one it must not: every role is up.
        result, _ = prom.query(next(r["expr"] for r in rules() if r["alert"] == "IotmonRoleDown"))
        assert result == []
    finally:
        if watcher is not None:
            watcher.close()
        prom.close()

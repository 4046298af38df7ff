"""`iotmon up` with no configuration: embedded PostgreSQL and Redis, in-process bus, /health,
and readings flowing into the database. What `make run` gives a newcomer."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.helpers import free_port


def test_up_runs_embedded_and_stores_readings(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")}
    env |= {
        "IOTMON_DATA_DIR": str(tmp_path / "var"),
        "IOTMON_HTTP_PORT": str(port),
        "IOTMON_SIMULATOR_RATE": "10",
        "IOTMON_LOG_JSON": "true",
        # the simulator's control endpoint without a token: embedded mode only, when asked
        "IOTMON_SIMULATOR_CONTROL": "1",
        "IOTMON_MQTT_EMBEDDED_PORT": str(free_port()),
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "up"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        health: dict = {}  # type: ignore[type-arg]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"iotmon up exited with {proc.returncode}:\n{log.read_text()}")
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
                health = r.json()
                if r.status_code == 200 and health["roles"]["ingestion"]["stored"] >= 20:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail(f"no readings stored in 120 s; health={health}\n{log.read_text()}")

        assert health["status"] == "healthy"
        assert set(health["dependencies"]) == {"database", "redis", "kafka"}
        assert all(d["status"] == "healthy" for d in health["dependencies"].values())
        assert set(health["metrics"]) == {"uptime", "requestsPerMinute", "errorRate"}

        # The banner says where the database is; the readings are really in it.
        text = log.read_text()
        m = re.search(r"psql '([^']+)'", text)
        assert m, text

        # "stored" counts the MQTT devices' readings too: wait for 20 of the Kafka fleet's.
        def fleet() -> tuple[int, int] | None:
            with psycopg.connect(m.group(1)) as conn:
                row = conn.execute(
                    "SELECT count(*), count(DISTINCT device_id) FROM sensor_readings"
                    " WHERE device_id LIKE 'device-%'"  # the Kafka fleet (MQTT devices beside it)
                ).fetchone()
            assert row is not None
            return (row[0], row[1]) if row[0] >= 20 and row[1] == 5 else None

        count, devices = wait_for(proc, log, fleet, 30)
        assert count >= 20
        assert devices == 5
        deadline = time.monotonic() + 15
        while "readings/s stored" not in log.read_text():  # the live line, once a second
            assert time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.2)

        # Prometheus counters of the ingestion role.
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        ingested = re.search(r"^iotmon_readings_ingested_total (\S+)$", metrics, re.M)
        assert ingested
        assert float(ingested.group(1)) >= 20

        # A scenario drives device-003 past its 120 Hz threshold, into the database.
        base = f"http://127.0.0.1:{port}/simulator/scenarios"
        bad = httpx.post(base, json={"deviceId": "device-003", "kind": "boil"}, timeout=5)
        assert bad.status_code == 422
        assert "unknown scenario kind" in bad.text
        ok = httpx.post(
            base, json={"deviceId": "device-003", "kind": "high", "durationS": 30}, timeout=5
        )
        assert ok.status_code == 201, ok.text
        deadline = time.monotonic() + 30
        with psycopg.connect(m.group(1), autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute(
                    "SELECT max(value) FROM sensor_readings WHERE device_id = 'device-003'"
                ).fetchone()
                if row and row[0] and row[0] > 120:
                    break
                time.sleep(0.5)
            else:
                pytest.fail("the high scenario never took device-003 past 120")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert code == 0, log.read_text()[-3000:]
    # Embedded PostgreSQL was stopped with it.
    assert not (tmp_path / "var" / "pg" / "postmaster.pid").exists()


def start_up(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen[bytes], Path, int]:
    """``iotmon up`` with nothing configured (plus ``extra``), its output in a log file."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")}
    env |= {
        "IOTMON_DATA_DIR": str(tmp_path / "var"),
        "IOTMON_HTTP_PORT": str(port),
        "IOTMON_LOG_JSON": "true",
        **extra,
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "up"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return proc, log, port


def wait_for(proc: subprocess.Popen[bytes], log: Path, check: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"iotmon up exited with {proc.returncode}:\n{log.read_text()}")
        try:
            got = check()
        except (httpx.HTTPError, KeyError, psycopg.Error):
            got = None
        if got:
            return got
        time.sleep(0.5)
    pytest.fail(f"not within {within} s:\n{log.read_text()[-4000:]}")


def stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert code == 0, log.read_text()[-3000:]


def test_up_runs_an_mqtt_broker_a_real_client_publishes_to(tmp_path: Path) -> None:
    """No broker configured: ``iotmon up`` runs one on 127.0.0.1, says how to publish to it, and
    a message a real MQTT client publishes there becomes a reading, stored and listed by the
    API beside the simulator's MQTT devices."""
    mqtt_port = free_port()
    proc, log, port = start_up(tmp_path, IOTMON_MQTT_EMBEDDED_PORT=str(mqtt_port))
    api = f"http://127.0.0.1:{port}/api"
    try:
        health = wait_for(
            proc,
            log,
            lambda: (
                (h := httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json())
                and h["roles"]["mqtt-decoder"]["produced"] > 0
                and h
            ),
            120,
        )
        assert health["roles"]["mqtt-bridge"]["connected"] is True
        assert health["roles"]["simulator"]["transport"] == "both"
        text = log.read_text()
        assert f"embedded broker 127.0.0.1:{mqtt_port}" in text
        assert "anonymous" not in text
        assert "iotmon devices provision device-001" in text
        line = re.search(
            r"publish +(mosquitto_pub .*-u 'device-001' -P '<password>'.*)$", text, re.M
        )
        assert line, text
        assert f"-p {mqtt_port}" in line.group(1)
        # Loopback only: the machine's outward address has nothing on the port.
        outward = outward_address()
        if outward is not None:
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((outward, mqtt_port)) != 0

        # Anonymous clients are refused.
        refused: list[Any] = []
        anon = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-anon", protocol=mqtt.MQTTv311)
        anon.on_connect = lambda c, ud, flags, reason, props: refused.append(reason)
        anon.connect("127.0.0.1", mqtt_port)
        anon.loop_start()
        try:
            wait_for(proc, log, lambda: refused, 15)
            assert refused[0].is_failure, refused
        finally:
            anon.disconnect()
            anon.loop_stop()
        # Credentials from another shell, as the banner says: the CLI finds the database of
        # the running `iotmon up` (same data dir) and records them; the broker reads them.
        env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")}
        env |= {
            "IOTMON_DATA_DIR": str(tmp_path / "var"),
            "IOTMON_MQTT_EMBEDDED_PORT": str(mqtt_port),
        }
        done = subprocess.run(
            [sys.executable, "-m", "iotmon", "devices", "provision", "f2-e4fd45f654be"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        issued = dict(x.split(":", 1) for x in done.stdout.splitlines())
        assert f"-V mqttv311 -q 1 -h 127.0.0.1 -p {mqtt_port}" in issued["try"]

        # A real client with them: the seed's controller opens its door 2 at a time of its own
        # (2 s ago, microseconds as F2 controllers send them).
        t = datetime.now(UTC) - timedelta(seconds=2)
        stamp = t.replace(tzinfo=None).isoformat(timespec="microseconds")
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="t-embedded", protocol=mqtt.MQTTv311)
        c.username_pw_set(issued["username"].strip(), issued["password"].strip())
        c.connect("127.0.0.1", mqtt_port)
        c.loop_start()
        try:
            c.publish(
                "cmnd/f2-e4fd45f654be/access-control-mode/J7/door-sensors",
                orjson.dumps({"timestamp": stamp, "door-sensor-2": True}),
                qos=1,
            ).wait_for_publish(10)
        finally:
            c.disconnect()
            c.loop_stop()

        dsn = re.search(r"psql '([^']+)'", text)
        assert dsn, text

        def stored() -> Any:
            with psycopg.connect(dsn.group(1), autocommit=True) as conn:
                return conn.execute(
                    'SELECT value, sensor_type, metadata, "timestamp" FROM sensor_readings'
                    " WHERE device_id = 'f2-e4fd45f654be:door-sensor-2'"
                    " AND metadata->>'topic' LIKE '%%/J7/%%'",  # the simulator uses J1
                ).fetchone()

        value, sensor_type, metadata, at = wait_for(proc, log, stored, 30)
        assert (value, sensor_type, metadata["clock"]) == (1.0, "door", "device")
        assert abs((at - t).total_seconds()) < 0.001  # the controller's own time (to the ms)

        # Listed by the API like any device, the simulator's MQTT devices beside it.
        password = re.search(r"created user 'admin' with password '([^']+)'", text)
        assert password, text
        token = httpx.post(
            f"{api}/auth/token",
            json={"username": "admin", "password": password.group(1)},
            timeout=10,
        ).json()["data"]["accessToken"]
        auth = {"authorization": f"Bearer {token}"}
        devices = httpx.get(f"{api}/devices?limit=200", headers=auth, timeout=10).json()["data"][
            "devices"
        ]
        by_id = {d["deviceId"]: d for d in devices}
        door = by_id["f2-e4fd45f654be:door-sensor-2"]
        assert (door["type"], door["unit"], door["status"]) == ("door", "open", "active")
        assert door["lastReading"] is not None
        assert {"mqtt-001", "f2-e4fd45f654bf:temperature", "device-001"} <= set(by_id)
        page = httpx.get(
            f"{api}/devices/f2-e4fd45f654be:door-sensor-2/history", headers=auth, timeout=10
        )
        assert page.status_code == 200, page.text
        points = page.json()["data"]["points"]
        assert any(p["value"] == 1.0 and p["timestamp"].startswith(stamp[:19]) for p in points)
    finally:
        stop(proc, log)


def test_up_goes_on_without_mqtt_when_the_port_is_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        mqtt_port = taken.getsockname()[1]
        proc, log, port = start_up(tmp_path, IOTMON_MQTT_EMBEDDED_PORT=str(mqtt_port))
        try:
            health = wait_for(
                proc,
                log,
                lambda: (
                    (h := httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json())
                    and h["roles"]["ingestion"]["stored"] > 0
                    and h
                ),
                120,
            )
            assert "mqtt-bridge" not in health["roles"]
            assert health["roles"]["simulator"].get("transport") is None  # the Kafka fleet
            text = log.read_text()
            assert f"no embedded MQTT broker: 127.0.0.1:{mqtt_port} is already in use" in text
            assert "IOTMON_MQTT_EMBEDDED_PORT" in text
        finally:
            stop(proc, log)


def outward_address() -> str | None:
    """This machine's address on its way out (not loopback), to check nothing listens there;
    None without a route out."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent for a UDP connect
        except OSError:
            return None
        addr = str(s.getsockname()[0])
    return None if addr.startswith("127.") else addr

"""Every alert type fires from a simulator scenario: `iotmon up` on the real Kafka,
PostgreSQL and Redis (all roles in one process, the same code as the distributed roles)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from iotmon.config import Settings
from iotmon.users.service import create_user
from tests.integration.helpers import free_port, query

SCENARIOS = [
    ("device-001", "high", 20, "threshold_exceeded"),
    ("device-005", "low", 20, "threshold_below"),
    ("device-002", "offline", 8, "device_offline"),
    ("device-003", "drift", 30, "trend_warning"),
    ("device-004", "anomaly", 3, "data_anomaly"),
]


def test_every_alert_type_fires_from_a_scenario(
    settings: Settings, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    redis_url = settings.redis_url.get_secret_value().rsplit("/", 1)[0] + "/9"  # type: ignore[union-attr]
    redis.Redis.from_url(redis_url).flushdb()
    env = subprocess_env | {
        "IOTMON_HTTP_PORT": str(port),
        "IOTMON_REDIS_URL": redis_url,
        "IOTMON_SIMULATOR_RATE": "20",
        "IOTMON_SIMULATOR_ANOMALY_RATE": "0",
        "IOTMON_SIMULATOR_SEED": "7",
        "IOTMON_ALERT_OFFLINE_TIMEOUT_S": "3",
        "IOTMON_PROCESSING_GROUP": f"{settings.topic_prefix}processing",
        "IOTMON_ALERTS_GROUP": f"{settings.topic_prefix}alerts",
    }
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "up"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 60
        while True:  # warm up: every device has enough history for a z-score and a trend
            assert proc.poll() is None, log.read_text()[-3000:]
            n = query(
                url,
                "SELECT count(DISTINCT device_id), min(c) FROM (SELECT device_id,"
                " count(*) c FROM sensor_readings GROUP BY 1) x",
            )[0]
            if n[0] == 5 and n[1] >= 60:
                break
            assert time.monotonic() < deadline, f"no warm-up: {n}\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        # the control endpoint is for operators (a token from the web role of the same up)
        with psycopg.connect(url, autocommit=True) as conn:
            create_user(conn, "scenarios", "scenarios-password", "operator")
        login = httpx.post(
            f"http://127.0.0.1:{port}/api/auth/token",
            json={"username": "scenarios", "password": "scenarios-password"},
            timeout=10,
        )
        assert login.status_code == 200, login.text
        operator = {"Authorization": f"Bearer {login.json()['data']['accessToken']}"}
        for device, kind, duration, _ in SCENARIOS:
            r = httpx.post(
                f"http://127.0.0.1:{port}/simulator/scenarios",
                json={"deviceId": device, "kind": kind, "durationS": duration},
                headers=operator,
                timeout=5,
            )
            assert r.status_code == 201, r.text
        expected = {(d, t) for d, _, _, t in SCENARIOS}
        deadline = time.monotonic() + 90
        while True:
            fired = set(query(url, "SELECT device_id, alert_type FROM alerts"))
            if expected <= fired:
                break
            if time.monotonic() > deadline:
                pytest.fail(f"missing {expected - fired}; fired {fired}\n{log.read_text()[-4000:]}")
            time.sleep(0.5)
        # The offline device came back: its alert resolves by itself.
        deadline = time.monotonic() + 30
        while query(
            url,
            "SELECT status FROM alerts WHERE device_id = 'device-002'"
            " AND alert_type = 'device_offline'",
        ) != [("resolved",)]:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
        assert health["roles"]["alerts"]["triggered"] >= 5
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, log.read_text()[-3000:]

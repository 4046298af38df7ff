"""`iotmon up` with no configuration: embedded PostgreSQL and Redis, in-process bus, /health,
and readings flowing into the database. What `make run` gives a newcomer."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

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
        with psycopg.connect(m.group(1)) as conn:
            count, devices = conn.execute(
                "SELECT count(*), count(DISTINCT device_id) FROM sensor_readings"
            ).fetchone()  # type: ignore[misc]
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

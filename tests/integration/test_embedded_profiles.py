"""Embedded mode: while `iotmon up` runs on its embedded PostgreSQL, `iotmon profiles apply`
declares a sensor type, and the running ingestion takes it at its next reload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from iotmon.profiles.models import BUILTIN_RANGES
from tests.integration.helpers import free_port

AIR = {
    "name": "air-quality",
    "channels": [
        {
            "name": "co2",
            "topic": "air/{device}/telemetry",
            "path": "co2",
            "encoding": "json_number",
            "sensorType": "co2",
            "range": {"min": 0, "max": 5000},
            "unit": "ppm",
        }
    ],
}


def _ingestion(port: int) -> dict[str, Any] | None:
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        roles: dict[str, Any] = r.json().get("roles", {})
        return roles.get("ingestion")
    except (httpx.HTTPError, ValueError):
        return None


def test_a_profile_applied_from_the_cli_reaches_a_running_up(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")}
    env |= {
        "IOTMON_DATA_DIR": str(tmp_path / "var"),
        "IOTMON_HTTP_PORT": str(port),
        "IOTMON_SIMULATOR_RATE": "1",
        "IOTMON_LOG_JSON": "true",
        "IOTMON_MQTT_PROFILE_REFRESH_S": "0.5",
    }
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "up"], env=env, stdout=out, stderr=subprocess.STDOUT
        )

    def wait_for(check: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"iotmon up exited with {proc.returncode}:\n{log.read_text()}")
            got = _ingestion(port)
            if got is not None and check(got):
                return got
            time.sleep(0.3)
        pytest.fail(f"{what}: not within 120 s; ingestion={_ingestion(port)}\n{log.read_text()}")

    try:
        before = wait_for(lambda s: s.get("stored", 0) > 0, "readings stored")
        assert before["sensorTypes"] == len(BUILTIN_RANGES)
        profile = tmp_path / "air.json"
        profile.write_bytes(orjson.dumps(AIR))
        applied = subprocess.run(
            [sys.executable, "-m", "iotmon", "profiles", "apply", str(profile)],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert applied.returncode == 0, applied.stderr.decode()
        assert b"profile air-quality created" in applied.stderr
        wait_for(lambda s: s["sensorTypes"] == len(BUILTIN_RANGES) + 1, "the new type taken")
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()

"""The bridge outlives its broker: Mosquitto restarted under a running ``iotmon run
mqtt-bridge`` (the broker drops the connection from its side); the bridge reconnects by
itself, subscribes again, and what devices publish afterwards is stored once. What was
acknowledged before the restart is stored once too.

(The test broker runs with ``persistence false``: a message published while no bridge session
exists has no subscriber and is gone, as MQTT says; so the devices stop publishing across the
restart itself. With persistence on, the broker would keep the bridge's session.)"""

from __future__ import annotations

import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from iotmon.config import Settings
from tests.reliability.test_mqtt_kill import Fleet, Roles, roles, row_counts, wait_rows

pytestmark = pytest.mark.reliability
__all__ = ["roles"]  # the fixture, shared with test_mqtt_kill

REPO = Path(__file__).resolve().parents[2]


def bridge_connects(roles: Roles) -> tuple[bool, int]:
    r = httpx.get(f"http://127.0.0.1:{roles.ports['mqtt-bridge']}/health", timeout=5)
    st = r.json()["roles"]["mqtt-bridge"]
    return bool(st["connected"]), int(st["connects"])


def test_the_bridge_reconnects_after_the_broker_restarts(roles: Roles, settings: Settings) -> None:
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    prefix = f"mb{uuid.uuid4().hex[:4]}-"
    devices = [f"{prefix}{i:03d}" for i in range(4)]
    with psycopg.connect(url, autocommit=True) as conn:
        for d in devices:
            conn.execute(
                "INSERT INTO devices (device_id, device_type, location, profile)"
                " VALUES (%s, 'temperature', 'hall-b', 'spec-temperature')",
                (d,),
            )
    for name in ("ingestion", "mqtt-decoder", "mqtt-bridge"):
        roles.start(name)
    roles.wait_subscribed()
    root = roles.env["IOTMON_MQTT_TOPIC_ROOT"]

    before = Fleet(root, devices)
    before.start()
    time.sleep(2.0)
    before.stop()  # every publish acknowledged by the broker
    first = len(before.expected())
    before.close()
    wait_rows(url, prefix, first, roles)
    _, connects = bridge_connects(roles)

    subprocess.run([str(REPO / "scripts/infra.sh"), "restart", "mosquitto"], check=True)
    deadline = time.monotonic() + 90
    while True:
        roles.check_alive()
        try:
            connected, now = bridge_connects(roles)
            if connected and now > connects:
                break
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the bridge did not reconnect within 90 s\n{roles.tails()}")
        time.sleep(0.3)
    time.sleep(1.0)  # its SUBACK

    after = Fleet(root, devices)  # new connections, new credentials
    after.base = before.base + timedelta(seconds=10)  # device timestamps after the first's
    try:
        after.start()
        time.sleep(2.0)
        after.stop()
        second = len(after.expected())
        wait_rows(url, prefix, first + second, roles)
        time.sleep(2.0)  # anything doubled would land now
        roles.check_alive()
    finally:
        after.close()
        logs = roles.tails()
        roles.stop_all()
    total, distinct = row_counts(url, prefix)
    assert (total, distinct) == (first + second, first + second), (
        f"{total} rows, {distinct} distinct, {first + second} published\n{logs}"
    )

"""The simulator over MQTT on the real Mosquitto, bridge, decoder and ingestion: every payload
kind it publishes (seed 002's F2 controller: boolean maps, raw QR/NFC text, the hex RS-485
frame; the specification's devices: JSON numbers) ends as rows in PostgreSQL, from devices the
simulator registered with their profiles and provisioned on the broker (it refuses anonymous
clients)."""

from __future__ import annotations

import asyncio
import time
import uuid

import psycopg
import pytest
from pydantic import SecretStr

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.roles.ingestion import IngestionRole
from iotmon.roles.mqtt_bridge import MqttBridgeRole
from iotmon.roles.mqtt_decoder import MqttDecoderRole
from iotmon.roles.runtime import Services
from iotmon.roles.simulator import SimulatorRole
from iotmon.simulator.mqtt import F2_PROFILE, f2_ids
from tests.integration.helpers import query

F2 = f2_ids(1)[0]  # f2-e4fd45f654be, seed 002's controller
CHANNELS = {
    # channel: (sensor type, what the payload carried)
    "door-sensor-1": ("door", "boolean map"),
    "door-sensor-2": ("door", "boolean map"),
    "electric-strike": ("strike", "boolean map"),
    "exit-button-1": ("button", "boolean map"),
    "exit-button-2": ("button", "boolean map"),
    "motion": ("motion", "boolean map"),
    "siren": ("siren", "boolean map"),
    "qr-reader": ("access_read", "raw text"),
    "nfc-reader": ("access_read", "raw text"),
    "temperature": ("temperature", "hex register"),
    "humidity": ("humidity", "hex register"),
    "pressure": ("pressure", "hex register"),
}
SPEC = ["device-001", "device-002", "device-003", "device-004", "device-005"]


@pytest.fixture
def sim_settings(settings: Settings, infra: dict[str, str]) -> Settings:
    url = infra.get("IOTMON_MQTT_URL")
    if not url:
        pytest.fail("IOTMON_MQTT_URL not set: `scripts/infra.sh up` starts Mosquitto")
    admin = infra.get("IOTMON_MQTT_ADMIN_URL")
    tag = uuid.uuid4().hex[:8]
    return settings.model_copy(
        update={
            "mqtt_url": SecretStr(url),
            "mqtt_admin_url": SecretStr(admin) if admin else None,
            "mqtt_topic_root": f"t{tag}/",
            "mqtt_share_group": f"g{tag}",
            "mqtt_client_id": f"bridge-{tag}",
            "mqtt_decoder_group": f"{settings.topic_prefix}mqtt-decoder",
            "mqtt_profile_refresh_s": 0.5,
            "simulator_transport": "mqtt",
            "simulator_devices": 5,
            "simulator_f2_controllers": 1,
            "simulator_rate": 10.0,  # an access every ~2 s, the climate every 0.5 s
            "simulator_anomaly_rate": 0.3,  # forced doors, so the siren sounds
            "simulator_seed": 12,
        }
    )


def kinds_stored(url: str) -> set[str]:
    rows = query(url, "SELECT DISTINCT device_id FROM sensor_readings")
    return {r[0] for r in rows}


async def test_every_payload_kind_of_the_simulator_reaches_postgresql(
    sim_settings: Settings, kafka_bus: KafkaBus
) -> None:
    s = sim_settings
    url = s.database_url.get_secret_value()  # type: ignore[union-attr]
    services = Services(settings=s, bus=kafka_bus, database_url=url)
    bridge, decoder = MqttBridgeRole(services), MqttDecoderRole(services)
    ingestion, sim = IngestionRole(services), SimulatorRole(services)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in (bridge, decoder, ingestion)]
    deadline = time.monotonic() + 30
    while not bridge.bridge.stats.connected:
        assert time.monotonic() < deadline, "the bridge never connected"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # the SUBACK
    tasks.append(asyncio.create_task(sim.run(stop)))
    want = {f"{F2}:{c}" for c in CHANNELS} | set(SPEC)
    try:
        deadline = time.monotonic() + 90
        while not want <= (got := await asyncio.to_thread(kinds_stored, url)):
            assert time.monotonic() < deadline, (
                f"never stored: {sorted(want - got)}; simulator {sim.status()},"
                f" decoder {decoder.stats}"
            )
            assert not any(t.done() for t in tasks), [t for t in tasks if t.done()]
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)

    st = sim.status()
    assert st["mqtt"]["dropped"] == 0
    assert decoder.stats["deadLettered"] == 0  # every message the simulator sent decodes

    rows = query(
        url,
        'SELECT device_id, sensor_type, value, unit, metadata, "timestamp" FROM sensor_readings'
        " WHERE device_id LIKE %s",
        (f"{F2}:%",),
    )
    by: dict[str, list[tuple]] = {}  # type: ignore[type-arg]
    for r in rows:
        by.setdefault(r[0].split(":", 1)[1], []).append(r)
    for channel, (sensor_type, _) in CHANNELS.items():
        readings = by[channel]
        assert {r[1] for r in readings} == {sensor_type}, channel
        assert all(r[4]["topic"].startswith(f"{s.mqtt_topic_root}cmnd/{F2}/") for r in readings)
    # Boolean maps: 0/1, both states seen where the simulator toggles them.
    for channel in ("door-sensor-1", "door-sensor-2", "electric-strike", "motion"):
        assert {r[2] for r in by[channel]} <= {0.0, 1.0}
    assert {r[2] for r in by["electric-strike"]} == {0.0, 1.0}
    assert 1.0 in {r[2] for r in by["door-sensor-1"] + by["door-sensor-2"]}
    # Raw text: value 1 per read, the code kept; QR codes and NFC UIDs as the readers read them.
    assert all(r[2] == 1.0 and r[4]["clock"] == "bridge" for r in by["qr-reader"])
    assert all(r[4]["code"].startswith("ACME-EMP-") for r in by["qr-reader"])
    assert all(len(r[4]["code"]) == 14 for r in by["nfc-reader"])
    # Hex registers: decoded values in their physical ranges, the frame kept, device clock.
    for channel, (lo, hi) in {
        "temperature": (-10, 60),
        "humidity": (0, 100),
        "pressure": (800, 1200),
    }.items():
        for r in by[channel]:
            assert lo <= r[2] <= hi, r
            assert len(bytes.fromhex(r[4]["raw"])) == 8
            assert r[4]["clock"] == "device"
    # The spec's devices: JSON numbers on devices/<id>/telemetry, under their own ids.
    spec = query(
        url,
        "SELECT device_id, sensor_type, count(*) FROM sensor_readings"
        " WHERE device_id LIKE 'device-%%' GROUP BY 1, 2 ORDER BY 1",
    )
    assert [(d, t) for d, t, _ in spec] == [
        ("device-001", "temperature"),
        ("device-002", "pressure"),
        ("device-003", "vibration"),
        ("device-004", "production"),
        ("device-005", "quality"),
    ]

    # Registered with their profiles (idempotently: a second registration changes nothing).
    with psycopg.connect(url, autocommit=True) as conn:
        devices = dict(
            conn.execute(
                "SELECT device_id, profile FROM devices WHERE device_id = %s OR device_id LIKE %s",
                (F2, f"{F2}:%"),
            ).fetchall()
        )
        assert devices[F2] == F2_PROFILE
        assert set(devices) == {F2} | {f"{F2}:{c}" for c in CHANNELS}
        th = conn.execute(
            "SELECT normal_min, normal_max, alert_min, alert_max, status FROM devices"
            " WHERE device_id = %s",
            (f"{F2}:humidity",),
        ).fetchone()
        assert th == (30.0, 60.0, 20.0, 70.0, "active")
        before = conn.execute("SELECT count(*), max(updated_at) FROM devices").fetchone()
    await asyncio.to_thread(sim._register)
    with psycopg.connect(url, autocommit=True) as conn:
        after = conn.execute("SELECT count(*), max(updated_at) FROM devices").fetchone()
        assert after == before
        if s.mqtt_admin_url is not None:  # provisioned like any device, by the simulator
            creds = conn.execute(
                "SELECT device_id FROM mqtt_credential WHERE created_by = 'simulator'"
                " AND revoked_at IS NULL ORDER BY 1"
            ).fetchall()
            assert [c[0] for c in creds] == sorted([F2, *SPEC])

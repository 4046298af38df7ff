"""MQTT devices end to end on the real Mosquitto, Kafka and PostgreSQL: each payload kind from
an MQTT topic to a row, malformed messages to ``mqtt-raw.dlq`` with a reason, two bridges
sharing one subscription, a redelivered message stored once.

Each test publishes under a topic root of its own (``IOTMON_MQTT_TOPIC_ROOT``) with client ids
of its own, on its own database and Kafka topics (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from pydantic import SecretStr

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.mqtt.bridge import H_DUP, H_RECEIVED, H_TOPIC
from iotmon.roles.mqtt_bridge import MqttBridgeRole
from iotmon.roles.mqtt_decoder import MqttDecoderRole
from iotmon.roles.runtime import Services
from tests.integration.helpers import drain, query, read_topic
from tests.mqtt_support import close, device_client

F2 = "f2-t0000001"
CHANNELS = [  # existing sensor types, so ingestion stores them today (see the report)
    {
        "name": "door",
        "topic": "cmnd/{device}/access-control-mode/+/door-sensors",
        "path": "door-sensor-1",
        "timestampPath": "timestamp",
        "encoding": "json_boolean",
        "sensorType": "quality",
        "unit": "open",
    },
    {
        "name": "qr",
        "topic": "cmnd/{device}/access-control-mode/+/qr-reader",
        "encoding": "string",
        "sensorType": "production",
        "unit": "read",
    },
    {
        "name": "temp",
        "topic": "cmnd/{device}/rs485-mode/+/sensor-data",
        "path": "data",
        "timestampPath": "timestamp",
        "encoding": "hex_register",
        "register": {"byteOffset": 0, "length": 2, "signed": True, "scale": 0.1},
        "sensorType": "temperature",
        "unit": "celsius",
    },
]


@pytest.fixture
def mqtt_settings(settings: Settings, infra: dict[str, str]) -> Settings:
    url = infra.get("IOTMON_MQTT_URL")
    if not url:
        pytest.fail("IOTMON_MQTT_URL not set: `scripts/infra.sh up` starts Mosquitto")
    tag = uuid.uuid4().hex[:8]
    db = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO device_profiles (name, channels) VALUES ('t-f2', %s)",
            (orjson.dumps(CHANNELS).decode(),),
        )
        conn.execute(
            "INSERT INTO devices (device_id, device_type, location, profile)"
            " VALUES (%s, 't-f2', 'gate-1', 't-f2')",
            (F2,),
        )
    return settings.model_copy(
        update={
            "mqtt_url": SecretStr(url),
            "mqtt_topic_root": f"t{tag}/",
            "mqtt_share_group": f"g{tag}",
            "mqtt_client_id": f"bridge-{tag}",
            "mqtt_decoder_group": f"{settings.topic_prefix}mqtt-decoder",
            "mqtt_profile_refresh_s": 0.5,
        }
    )


class Devices:
    """One connection per device, each with the device's own credentials (the broker refuses
    anonymous clients, and a device may publish only under its own topics)."""

    def __init__(self, s: Settings) -> None:
        self.root = s.mqtt_topic_root
        self.clients: dict[str, mqtt.Client] = {}

    def publish(self, topic: str, payload: bytes | dict[str, Any]) -> mqtt.MQTTMessageInfo:
        device = topic.split("/")[1]
        if device not in self.clients:
            self.clients[device] = device_client(device, root=self.root)
        body = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        return self.clients[device].publish(f"{self.root}{topic}", body, qos=1)

    def close(self) -> None:
        for c in self.clients.values():
            close(c)


def publish(pub: Devices, topic: str, payload: bytes | dict[str, Any]) -> None:
    pub.publish(topic, payload).wait_for_publish(10)


async def until(check: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def stamp(seconds_ago: float) -> str:
    t = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def test_each_payload_kind_reaches_postgresql_and_bad_ones_the_dlq(
    mqtt_settings: Settings, kafka_bus: KafkaBus
) -> None:
    s = mqtt_settings
    services = Services(settings=s, bus=kafka_bus, database_url=s.database_url.get_secret_value())  # type: ignore[union-attr]
    bridge, decoder = MqttBridgeRole(services), MqttDecoderRole(services)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(bridge.run(stop)), asyncio.create_task(decoder.run(stop))]
    await until(lambda: bridge.bridge.stats.connected)
    await asyncio.sleep(0.3)  # the SUBACK
    pub = Devices(s)
    try:
        ts = stamp(5)
        publish(pub, "devices/device-001/telemetry", {"timestamp": ts, "value": 42.5})
        publish(
            pub,
            f"cmnd/{F2}/access-control-mode/J1/door-sensors",
            {"timestamp": ts, "door-sensor-1": True},
        )
        publish(pub, f"cmnd/{F2}/access-control-mode/J2/qr-reader", b"ACME-4711")
        publish(pub, f"cmnd/{F2}/rs485-mode/J3/sensor-data", {"timestamp": ts, "data": "00E7 01C8"})
        # Malformed: the wrong type for a boolean, an unknown device, hex that is not.
        publish(pub, f"cmnd/{F2}/access-control-mode/J1/door-sensors", {"door-sensor-1": "open"})
        publish(pub, "cmnd/nobody-01/access-control-mode/J1/door-sensors", {"door-sensor-1": True})
        publish(pub, f"cmnd/{F2}/rs485-mode/J3/sensor-data", {"data": "not hex"})
        await until(lambda: decoder.stats["produced"] == 4 and decoder.stats["deadLettered"] == 3)
    finally:
        pub.close()
        stop.set()
        await asyncio.gather(*tasks)
    assert bridge.bridge.stats.acked == 7

    raw = read_topic(kafka_bus, s.topic("mqtt-raw"), 7)
    assert len(raw) == 7
    headers = dict(raw[0].headers())
    assert headers[H_TOPIC].decode().startswith(s.mqtt_topic_root)
    assert datetime.fromisoformat(headers[H_RECEIVED].decode()).tzinfo is not None
    assert headers[H_DUP] == b"0"
    assert {m.value() for m in raw} >= {b"ACME-4711"}  # unchanged bytes

    dlq = read_topic(kafka_bus, s.topic("mqtt-raw.dlq"), 3)
    reasons = sorted(dict(m.headers())["x-iotmon-reason"].decode() for m in dlq)
    assert reasons == ["invalid_value", "invalid_value", "unknown_device"]

    # The decoder's records are transactional: the topic's end offsets count the commit
    # markers too, which a consumer never reaches; drain to past the last reading instead.
    out = read_topic(kafka_bus, s.topic("sensors-data"), 4)
    ends = [max((m.offset() + 1 for m in out if m.partition() == p), default=0) for p in range(3)]
    stats = await asyncio.to_thread(drain, s, kafka_bus, ends)
    assert (stats.stored, stats.rejected) == (4, 0)
    url = s.database_url.get_secret_value()  # type: ignore[union-attr]
    rows = query(
        url,
        'SELECT device_id, sensor_type, value, unit, location, metadata, "timestamp"'
        " FROM sensor_readings ORDER BY device_id",
    )
    got = {r[0]: r for r in rows}
    assert set(got) == {"device-001", f"{F2}:door", f"{F2}:qr", f"{F2}:temp"}
    assert got["device-001"][2] == 42.5
    assert got[f"{F2}:door"][2:5] == (1.0, "open", "gate-1")
    assert got[f"{F2}:qr"][2] == 1.0
    assert got[f"{F2}:qr"][5]["code"] == "ACME-4711"
    assert got[f"{F2}:temp"][2] == pytest.approx(23.1)
    device_ts = datetime.fromisoformat(ts)
    assert got["device-001"][6] == device_ts  # the device's own timestamp
    assert got[f"{F2}:temp"][6] == device_ts


async def test_two_bridges_share_the_subscription(
    mqtt_settings: Settings, kafka_bus: KafkaBus
) -> None:
    s = mqtt_settings
    roles = [
        MqttBridgeRole(
            Services(
                settings=s.model_copy(update={"mqtt_client_id": f"{s.mqtt_client_id}-{i}"}),
                bus=kafka_bus,
            )
        )
        for i in range(2)
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in roles]
    await until(lambda: all(r.bridge.stats.connected for r in roles))
    await asyncio.sleep(0.3)
    pub = Devices(s)
    n = 200
    try:
        for i in range(n):
            pub.publish(f"cmnd/dev-{i % 7}/alarm-mode/J4/siren", {"siren": bool(i % 2), "n": i})
        await until(lambda: sum(r.bridge.stats.acked for r in roles) == n)
    finally:
        pub.close()
        stop.set()
        await asyncio.gather(*tasks)
    counts = [r.bridge.stats.forwarded for r in roles]
    assert sum(counts) == n
    assert min(counts) > 0, counts  # both took a share
    assert sum(kafka_bus.end_offsets(s.topic("mqtt-raw"))) == n


async def test_a_redelivered_message_is_stored_once(
    mqtt_settings: Settings, kafka_bus: KafkaBus
) -> None:
    """What a bridge killed between Kafka's acknowledgement and its PUBACK leaves: the same
    message twice on the raw topic, the second flagged dup. The decoder produces it once."""
    s = mqtt_settings
    topic = s.topic("mqtt-raw")
    producer = kafka_bus.producer()
    received = stamp(1)
    key = F2.encode()
    cases = [  # (mqtt topic, payload)
        (
            f"cmnd/{F2}/rs485-mode/J3/sensor-data",
            orjson.dumps({"timestamp": stamp(2), "data": "00E7"}),
        ),
        (f"cmnd/{F2}/access-control-mode/J2/qr-reader", b"CODE-1"),
    ]
    for dup in (b"0", b"1"):
        for t, payload in cases:
            headers = [
                (H_TOPIC, f"{s.mqtt_topic_root}{t}".encode()),
                (H_RECEIVED, received.encode()),
                (H_DUP, dup),
            ]
            producer.produce(topic, payload, key=key, headers=headers)
    # The same code read again for real (not a redelivery): a second read.
    t, payload = cases[1]
    producer.produce(
        topic,
        payload,
        key=key,
        headers=[
            (H_TOPIC, f"{s.mqtt_topic_root}{t}".encode()),
            (H_RECEIVED, stamp(0.5).encode()),
            (H_DUP, b"0"),
        ],
    )
    producer.flush()
    decoder = MqttDecoderRole(
        Services(settings=s, bus=kafka_bus, database_url=s.database_url.get_secret_value())
    )  # type: ignore[union-attr]
    stop = asyncio.Event()
    task = asyncio.create_task(decoder.run(stop))
    try:
        await until(lambda: decoder.stats["consumed"] == 5)
    finally:
        stop.set()
        await task
    assert (decoder.stats["produced"], decoder.stats["duplicates"]) == (3, 2)
    out = read_topic(kafka_bus, s.topic("sensors-data"), 3)
    ids = sorted(orjson.loads(m.value())["deviceId"] for m in out)
    assert ids == [f"{F2}:qr", f"{F2}:qr", f"{F2}:temp"]

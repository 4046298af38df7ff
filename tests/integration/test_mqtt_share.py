"""Two bridges in one MQTT 5 share group split the load: devices publishing QoS 1 (each with
its own credentials) through both bridges, the decoder and ingestion into PostgreSQL; each
bridge forwards a real share, together exactly what was published, and every reading is
stored once."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import paho.mqtt.client as mqtt
import psycopg
from pydantic import SecretStr

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.roles.mqtt_bridge import MqttBridgeRole
from iotmon.roles.mqtt_decoder import MqttDecoderRole
from iotmon.roles.runtime import Services
from tests.integration.helpers import drain, read_topic
from tests.mqtt_support import bridge_url, close, device_client

DEVICES = 8
PER_DEVICE = 75


async def until(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_two_bridges_split_the_load_and_store_each_reading_once(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    tag = uuid.uuid4().hex[:8]
    s = settings.model_copy(
        update={
            "mqtt_url": SecretStr(bridge_url()),
            "mqtt_topic_root": f"s{tag}/",
            "mqtt_share_group": f"s{tag}",
            "mqtt_decoder_group": f"{settings.topic_prefix}mqtt-decoder",
            "mqtt_decoder_id": tag,
        }
    )
    url = s.database_url.get_secret_value()  # type: ignore[union-attr]
    devices = [f"sh{tag[:4]}-{i:02d}" for i in range(DEVICES)]
    with psycopg.connect(url, autocommit=True) as conn:
        for d in devices:
            conn.execute(
                "INSERT INTO devices (device_id, device_type, location, profile)"
                " VALUES (%s, 'temperature', 'hall-s', 'spec-temperature')",
                (d,),
            )
    services = Services(settings=s, bus=kafka_bus, database_url=url)
    bridges = [
        MqttBridgeRole(
            Services(
                settings=s.model_copy(update={"mqtt_client_id": f"bridge-{tag}-{i}"}),
                bus=kafka_bus,
            )
        )
        for i in range(2)
    ]
    decoder = MqttDecoderRole(services)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(r.run(stop)) for r in [*bridges, decoder]]
    clients: list[mqtt.Client] = []
    n = DEVICES * PER_DEVICE
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    try:
        await until(lambda: all(b.bridge.stats.connected for b in bridges), "both bridges")
        await asyncio.sleep(1.0)  # the SUBACKs: published before them, a message goes nowhere
        clients = [device_client(d, root=s.mqtt_topic_root) for d in devices]
        infos = []
        for k in range(PER_DEVICE):
            ts = (base + timedelta(milliseconds=k)).isoformat(timespec="milliseconds")
            body = orjson.dumps({"timestamp": ts.replace("+00:00", "Z"), "value": 20 + k / 100})
            for d, c in zip(devices, clients, strict=True):
                topic = f"{s.mqtt_topic_root}devices/{d}/telemetry"
                infos.append(c.publish(topic, body, qos=1))
        for info in infos:
            info.wait_for_publish(30)
        assert all(i.is_published() for i in infos)
        await until(lambda: sum(b.bridge.stats.acked for b in bridges) >= n, "the bridges")
        await until(lambda: decoder.stats["consumed"] >= n, "the decoder")
    finally:
        for c in clients:
            close(c)
        stop.set()
        await asyncio.gather(*tasks)

    shares = [b.bridge.stats.forwarded for b in bridges]
    assert sum(shares) == n, shares
    assert min(shares) >= n // 5, f"one bridge took almost nothing: {shares}"
    assert sum(kafka_bus.end_offsets(s.topic("mqtt-raw"))) == n  # nothing forwarded twice
    assert (decoder.stats["produced"], decoder.stats["duplicates"]) == (n, 0)

    out = read_topic(kafka_bus, s.topic("sensors-data"), n)
    assert len(out) == n
    ends = [max((m.offset() + 1 for m in out if m.partition() == p), default=0) for p in range(3)]
    stats = await asyncio.to_thread(drain, s, kafka_bus, ends)
    assert (stats.stored, stats.rejected) == (n, 0)
    with psycopg.connect(url) as conn:
        total, distinct = conn.execute(
            'SELECT count(*), count(DISTINCT (device_id, "timestamp")) FROM sensor_readings'
            " WHERE device_id LIKE %s",
            (f"sh{tag[:4]}-%",),
        ).fetchone()  # type: ignore[misc]
    assert (total, distinct) == (n, n)

"""Simulator -> Kafka -> ingestion -> PostgreSQL, on the real services."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.roles.runtime import Services
from iotmon.roles.simulator import SimulatorRole
from tests.integration.helpers import drain, produce_readings, query, read_topic


async def test_simulated_readings_are_stored_exactly_once(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    settings = settings.model_copy(
        update={"simulator_devices": 50, "simulator_rate": 20.0, "simulator_seed": 42}
    )
    role = SimulatorRole(Services(settings=settings, bus=kafka_bus))
    produced: list[dict[str, object]] = []
    send = role._send

    def capture(key: bytes, value: bytes) -> None:
        produced.append(orjson.loads(value))
        send(key, value)

    role.sim.send = capture
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    await asyncio.sleep(3)
    stop.set()
    await task
    assert len(produced) > 1000  # 50 devices at 20x for 3 s

    ends = kafka_bus.end_offsets(settings.topic("sensors-data"))
    assert sum(ends) == len(produced)
    stats = await asyncio.to_thread(drain, settings, kafka_bus, ends)
    assert stats.stored == len(produced)
    assert stats.rejected == 0

    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    rows = query(url, "SELECT device_id, count(*) FROM sensor_readings GROUP BY device_id")
    assert dict(rows) == dict(Counter(m["deviceId"] for m in produced))
    # Every value arrived intact, with its timestamp.
    stored = {
        (d, ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", v)
        for d, ts, v in query(url, 'SELECT device_id, "timestamp", value FROM sensor_readings')
    }
    assert stored == {(m["deviceId"], m["timestamp"], m["value"]) for m in produced}
    # Devices beyond the seeded five are registered as such, not lost.
    assert query(url, "SELECT count(*) FROM devices WHERE status = 'unregistered'") == [(45,)]
    # The stored offsets are where the topic ends.
    offsets = query(url, 'SELECT "partition", next_offset FROM ingest_offsets ORDER BY 1')
    assert [o for _, o in offsets] == ends
    # Which partition each device's readings came through, as Kafka has them: what a
    # processing member rebuilds its share of the fleet from.
    topic = settings.topic("sensors-data")
    taken = read_topic(kafka_bus, topic, len(produced))
    assert len(taken) == len(produced)
    mapped = query(url, 'SELECT device_id, "partition", topic, bus_id FROM device_partitions')
    assert {(d, p) for d, p, _, _ in mapped} == {(m.key().decode(), m.partition()) for m in taken}
    assert {(t, b) for _, _, t, b in mapped} == {(topic, kafka_bus.bus_id)}
    assert len({d for d, _, _, _ in mapped}) == 50  # keyed by device: one partition each


async def test_a_second_run_stores_nothing_twice(settings: Settings, kafka_bus: KafkaBus) -> None:
    topic = settings.topic("sensors-data")
    produce_readings(kafka_bus, topic, 300)
    ends = kafka_bus.end_offsets(topic)
    await asyncio.to_thread(drain, settings, kafka_bus, ends)
    # A new consumer of the same group (a restart) resumes from the stored offsets.
    second = await asyncio.to_thread(drain, settings, kafka_bus, ends)
    assert second.stored == 0
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    assert query(url, "SELECT count(*), count(DISTINCT value) FROM sensor_readings") == [(300, 300)]

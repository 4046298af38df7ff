"""Sensor types come from the profiles: a type no profile declares is dead-lettered by a running
ingestion; once a profile declaring it is applied, its readings are stored (after the role's
reload), within the declared range only; processing counts them too."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import psycopg

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.profiles import service
from iotmon.profiles.models import Profile
from iotmon.readings.models import Reason
from iotmon.roles.ingestion import IngestionRole
from iotmon.roles.processing import ProcessingRole
from iotmon.roles.runtime import Services
from tests.integration.helpers import query, read_topic

AIR = Profile.model_validate(
    {
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
)


async def until(check: Callable[[], bool], what: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def co2(value: float) -> bytes:
    ts = datetime.now(UTC) - timedelta(seconds=1)
    return orjson.dumps(
        {
            "deviceId": "air-001",
            "timestamp": ts.isoformat().replace("+00:00", "Z"),
            "sensorType": "co2",
            "value": value,
            "unit": "ppm",
        }
    )


def reasons(kafka_bus: KafkaBus, topic: str, count: int) -> list[str]:
    return [
        dict(m.headers())["x-iotmon-reason"].decode()
        for m in read_topic(kafka_bus, topic, count, timeout=5)
    ]


async def test_a_type_is_refused_until_a_profile_declares_it(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    s = settings.model_copy(update={"mqtt_profile_refresh_s": 0.3})
    url = s.database_url.get_secret_value()  # type: ignore[union-attr]
    services = Services(
        settings=s,
        bus=kafka_bus,
        database_url=url,
        redis_url=s.redis_url.get_secret_value(),  # type: ignore[union-attr]
    )
    ingestion = IngestionRole(services)
    processing = ProcessingRole(services)
    topic, dlq = s.topic("sensors-data"), s.topic("sensors-data.dlq")
    producer = kafka_bus.producer()

    def send(raw: bytes) -> None:
        producer.produce(topic, raw, key=b"air-001")
        assert producer.flush(10) == 0

    stop = asyncio.Event()
    task = asyncio.create_task(ingestion.run(stop))
    try:
        # Before: no profile declares co2.
        await until(lambda: ingestion.sensor_types.loaded, "the first load")
        send(co2(420.0))
        await until(lambda: ingestion.ingestor.stats.rejected == 1, "the rejection")
        assert await asyncio.to_thread(reasons, kafka_bus, dlq, 1) == [Reason.UNKNOWN_SENSOR_TYPE]
        rows, rejected = processing._decode([co2(420.0)], datetime.now(UTC))
        assert (len(rows), [r.reason for _, r in rejected]) == (0, [Reason.UNKNOWN_SENSOR_TYPE])

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            _, created = await service.apply_profile(conn, AIR)
        assert created

        # Processing catches up on the miss itself (at most once a second).
        await asyncio.sleep(1.0)
        rows, rejected = processing._decode([co2(420.0)], datetime.now(UTC))
        assert (len(rows), rejected) == (1, [])
        # Ingestion, at its next reload.
        await until(
            lambda: "co2" in ingestion.ingestor.config.limits.value_range, "ingestion's reload"
        )
        assert ingestion.ingestor.config.limits.value_range["co2"] == (0.0, 5000.0)
        send(co2(415.5))
        send(co2(9000.0))  # outside the declared range
        await until(lambda: ingestion.ingestor.stats.stored == 1, "the reading stored")
        await until(lambda: ingestion.ingestor.stats.rejected == 2, "the second rejection")
    finally:
        stop.set()
        await task
        processing.sensor_types.close()
        processing.redis.close()
    rows = query(url, "SELECT device_id, sensor_type, value, unit FROM sensor_readings")
    assert rows == [("air-001", "co2", 415.5, "ppm")]
    assert sorted(await asyncio.to_thread(reasons, kafka_bus, dlq, 2)) == [
        Reason.UNKNOWN_SENSOR_TYPE,
        Reason.VALUE_OUT_OF_RANGE,
    ]

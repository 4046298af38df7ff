"""Shared pieces of the integration tests."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from iotmon.bus import Bus
from iotmon.config import Settings
from iotmon.devices.models import SEEDED
from iotmon.readings.ingest import IngestConfig, Ingestor, IngestStats


def ingest_config(settings: Settings, **overrides: Any) -> IngestConfig:
    values: dict[str, Any] = {
        "topic": settings.topic("sensors-data"),
        "dlq_topic": settings.topic("sensors-data.dlq"),
        "group_id": settings.ingestion_group,
        "batch_size": 5_000,
        "batch_wait_s": 0.05,
    }
    values.update(overrides)
    return IngestConfig(**values)


def drain(settings: Settings, bus: Bus, end_offsets: list[int], **overrides: Any) -> IngestStats:
    """Run the real ingestor until every partition reached ``end_offsets``, with a deadline."""
    assert settings.database_url is not None
    ingestor = Ingestor(
        config=ingest_config(settings, **overrides),
        bus=bus,
        database_url=settings.database_url.get_secret_value(),
    )
    stop = threading.Event()
    timer = threading.Timer(120, stop.set)
    timer.start()
    try:
        until = {(settings.topic("sensors-data"), p): end for p, end in enumerate(end_offsets)}
        stats = ingestor.run(stop, until=until)
    finally:
        timer.cancel()
    assert not stop.is_set(), "ingestion did not drain within 120 s"
    return stats


def reading(i: int, *, device_count: int = 5, base: datetime | None = None) -> dict[str, Any]:
    """The i-th of a sequence of distinct, valid readings: value i / 10,000, unique, and for
    i below 10^6 inside the physical range of every sensor type (quality is 0-100 %)."""
    base = base or datetime.now(UTC) - timedelta(minutes=30)
    kind = SEEDED[i % len(SEEDED)]
    ts = base + timedelta(milliseconds=i)
    return {
        "deviceId": f"device-{i % device_count + 1:03d}"
        if device_count <= 5
        else f"device-{i % device_count + 1:04d}",
        "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sensorType": kind.sensor_type,
        "value": i / 10_000,
        "unit": kind.unit,
        "location": kind.location,
        "status": "active",
    }


def produce_readings(bus: Bus, topic: str, count: int, *, start: int = 0) -> None:
    producer = bus.producer()
    for i in range(start, start + count):
        msg = reading(i)
        producer.produce(topic, orjson.dumps(msg), key=str(msg["deviceId"]).encode())
    assert producer.flush(30) == 0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(url: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, tuple(params)).fetchall()  # type: ignore[arg-type]


def read_topic(bus: Bus, topic: str, count: int, timeout: float = 30) -> list[Any]:
    """Up to ``count`` messages of ``topic`` from its start (a fresh group), within ``timeout``."""
    consumer = bus.consumer(f"reader-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(consumer.consume(100, 0.5))
    consumer.close()
    return got

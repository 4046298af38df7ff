"""Every kind of bad input of DESIGN.md 4.2 reaches the DLQ with its reason; the good
readings around it are stored."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.readings.models import MAX_PAYLOAD_BYTES, Reason
from tests.integration.helpers import drain, query, reading


def bad_inputs() -> list[tuple[bytes, str]]:
    def variant(**changes: Any) -> bytes:
        msg = reading(10_000)
        msg.update(changes)
        return orjson.dumps({k: v for k, v in msg.items() if v is not ...})

    future = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 3600))
    return [
        (b'{"deviceId": "device-001", "value": ', Reason.INVALID_JSON),
        (b"[]", Reason.NOT_AN_OBJECT),
        (variant(value=...), Reason.MISSING_FIELD),
        (variant(value="hot"), Reason.INVALID_FIELD),
        (variant(timestamp="not a time"), Reason.INVALID_FIELD),
        (variant(value=1).replace(b'"value":1', b'"value":NaN'), Reason.NON_FINITE_VALUE),
        (variant(value=1).replace(b'"value":1', b'"value":Infinity'), Reason.NON_FINITE_VALUE),
        (variant(sensorType="plasma"), Reason.UNKNOWN_SENSOR_TYPE),
        (variant(timestamp=future), Reason.TIMESTAMP_IN_FUTURE),
        (variant(metadata={"pad": "x" * MAX_PAYLOAD_BYTES}), Reason.PAYLOAD_TOO_LARGE),
    ]


async def test_bad_input_goes_to_the_dlq_with_its_reason(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    topic = settings.topic("sensors-data")
    producer = kafka_bus.producer()
    bad = bad_inputs()
    good = []
    for i, (raw, _) in enumerate(bad):
        # good, bad, good ... all on one key so they share a partition and interleave
        g = reading(i)
        good.append(g)
        producer.produce(topic, orjson.dumps(g), key=b"mix")
        producer.produce(topic, raw, key=b"mix", headers=[("trace-id", f"t{i}".encode())])
    unknown = reading(99) | {"deviceId": "press-17"}
    producer.produce(topic, orjson.dumps(unknown), key=b"mix")
    assert producer.flush(10) == 0

    ends = kafka_bus.end_offsets(topic)
    stats = await asyncio.to_thread(drain, settings, kafka_bus, ends)
    assert stats.stored == len(good) + 1
    assert stats.rejected == len(bad)

    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    values = sorted(v for (v,) in query(url, "SELECT value FROM sensor_readings"))
    assert values == sorted([g["value"] for g in good] + [unknown["value"]])
    # A reading from an unknown device registers it rather than being lost.
    assert query(url, "SELECT device_type, status FROM devices WHERE device_id = 'press-17'") == [
        (unknown["sensorType"], "unregistered")
    ]

    consumer = kafka_bus.consumer("dlq-reader")
    consumer.subscribe([settings.topic("sensors-data.dlq")])
    dead = []
    deadline = time.monotonic() + 30
    while len(dead) < len(bad) and time.monotonic() < deadline:
        dead.extend(await asyncio.to_thread(consumer.consume, 100, 1.0))
    consumer.close()
    assert len(dead) == len(bad)
    for (raw, reason), msg in zip(bad, dead, strict=True):
        headers = dict(msg.headers())
        assert msg.value() == raw  # original bytes kept
        assert headers["x-iotmon-reason"].decode() == reason
        assert headers["x-iotmon-detail"]  # and why, for a person
        assert headers["trace-id"].startswith(b"t")  # original headers kept
        assert headers["x-iotmon-source"].decode().startswith(topic)

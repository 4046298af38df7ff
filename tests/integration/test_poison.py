"""Records no decoder foresaw cannot stop a consumer: a row PostgreSQL refuses is isolated
and dead-lettered while its batch is stored exactly once; processing starts on a database
holding a value that overflows its sums; the alerts role dead-letters hostile candidates and
keeps opening alerts."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import redis

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.roles.alerts import AlertsRole
from iotmon.roles.runtime import Services
from tests.corpus import hostile_readings
from tests.integration.helpers import drain, produce_readings, query, read_topic
from tests.integration.test_processing import Running


async def test_a_row_postgresql_refuses_is_dead_lettered_and_the_rest_stored_once(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    # Someone else's rule in the database, unknown to the decoder: 0.0077 (reading 77) is refused.
    with __import__("psycopg").connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse_77() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " IF NEW.value = 0.0077 THEN RAISE EXCEPTION 'no 77 here' USING ERRCODE = '22023';"
            " END IF; RETURN NEW; END $$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_77 BEFORE INSERT ON sensor_readings"
            " FOR EACH ROW EXECUTE FUNCTION refuse_77()"
        )
    topic = settings.topic("sensors-data")
    produce_readings(kafka_bus, topic, 500)
    ends = kafka_bus.end_offsets(topic)
    stats = await asyncio.to_thread(drain, settings, kafka_bus, ends)
    assert stats.stored == 499
    assert stats.rejected == 1
    assert query(url, "SELECT count(*), count(DISTINCT value), min(value) FROM sensor_readings")[0][
        :2
    ] == (499, 499)
    assert query(url, "SELECT count(*) FROM sensor_readings WHERE value = 0.0077") == [(0,)]
    assert [o for _, o in query(url, 'SELECT "partition", next_offset FROM ingest_offsets')] != []
    (dead,) = read_topic(kafka_bus, settings.topic("sensors-data.dlq"), 1)
    headers = dict(dead.headers())
    assert headers["x-iotmon-reason"] == b"write_rejected"
    assert b"no 77 here" in headers["x-iotmon-detail"]
    assert orjson.loads(dead.value())["value"] == 0.0077
    # A second run (a restart) stores nothing twice.
    again = await asyncio.to_thread(drain, settings, kafka_bus, ends)
    assert again.stored == 0
    assert query(url, "SELECT count(*) FROM sensor_readings") == [(499,)]


async def test_processing_starts_on_a_database_holding_1e308(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    settings = settings.model_copy(update={"stats_interval_s": 0.0})
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    device = f"huge-{uuid.uuid4().hex[:6]}"
    now = datetime.now(UTC)
    with __import__("psycopg").connect(url, autocommit=True) as conn:
        for k, v in enumerate([1e308, 1e308, 40.0, 42.0]):
            conn.execute(
                "INSERT INTO sensor_readings (device_id, timestamp, sensor_type, value, unit)"
                " VALUES (%s, %s, 'temperature', %s, 'celsius')",
                (device, now - timedelta(seconds=30 - k), v),
            )
    running = await asyncio.to_thread(Running, settings, kafka_bus)
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())  # type: ignore[union-attr]
    try:
        deadline = time.monotonic() + 30
        while not r.get(f"device:{device}:stats:1h"):
            assert time.monotonic() < deadline, "processing did not publish statistics"
            assert running.thread.is_alive(), "processing died"
            await asyncio.sleep(0.2)
        stats = orjson.loads(r.get(f"device:{device}:stats:1h"))  # type: ignore[arg-type]
        assert (stats["count"], stats["max"]) == (2, 42.0)
    finally:
        await asyncio.to_thread(running.close)
        r.delete(*[f"device:{device}:{k}" for k in ("current", "stats:1h", "stats:24h")])


async def test_the_alerts_role_dead_letters_hostile_candidates_and_keeps_alerting(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    services = Services(
        settings=settings,
        bus=kafka_bus,
        database_url=url,
        redis_url=settings.redis_url.get_secret_value(),  # type: ignore[union-attr]
    )
    role = AlertsRole(services)
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    topic = settings.topic("alerts")
    now = datetime.now(UTC)
    hostile = [
        b'{"deviceId":"device-001","type":"threshold_exceeded","value":"hot"}',
        b'{"deviceId":"device-001","type":"threshold_exceeded","timestamp":"0001-01-01T00:00:00+01:00"}',
        b'{"deviceId":"device-001","type":"threshold_exceeded","value":1e308,"threshold":-1e308}',
        b'{"deviceId":"device-001","type":"threshold_exceeded","unit":"\\u0000"}',
        b"{" * 5000,
        *(raw for _, raw in hostile_readings()[:10]),
    ]
    # Two breaching readings in a row: what a threshold alert waits for by default
    # (IOTMON_ALERT_MIN_READINGS=2); one before the hostile records, one after.
    good = [
        orjson.dumps(
            {
                "deviceId": "device-002",
                "type": "threshold_exceeded",
                "value": 60.0,
                "threshold": 55.0,
                "timestamp": (now + timedelta(seconds=i)).isoformat(),
                "unit": "psi",
                "state": "active",
            }
        )
        for i in range(2)
    ]
    producer = kafka_bus.producer()
    producer.produce(topic, good[0], key=b"device-001")
    for raw in hostile:
        producer.produce(topic, raw, key=b"device-001")
    producer.produce(topic, good[1], key=b"device-001")
    assert producer.flush(10) == 0
    try:
        deadline = time.monotonic() + 60
        while not query(url, "SELECT 1 FROM alerts WHERE device_id = 'device-002'"):
            assert not task.done(), f"the alerts role stopped: {task}"
            assert time.monotonic() < deadline, "the good candidate was not turned into an alert"
            await asyncio.sleep(0.2)
        dead = await asyncio.to_thread(
            read_topic, kafka_bus, settings.topic("alerts.dlq"), len(hostile)
        )
        assert sorted(m.value() for m in dead) == sorted(hostile)
        assert all(dict(m.headers())["x-iotmon-reason"] for m in dead)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)

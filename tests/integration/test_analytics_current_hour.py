"""Analytics agrees with the Overview: readings ingested through Kafka into PostgreSQL, the
processing role's live statistics in Redis, and the web role's answers. The Overview's key
figure "Readings, last hour" (/api/metrics/dashboard, from processing's sliding hour) equals
the analytics total (/api/analytics/summary) when every reading of the period lies in both
windows and none outside them does, right after a start (the current hour not rolled up) and
whether or not processing has rolled the previous hour up yet. Each device's hourly counts
(/api/analytics/trends) add up to its 1 h statistics (/api/devices/{id})."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import psycopg
import pytest
import redis
from pydantic import SecretStr

from iotmon.bus.kafka import KafkaBus
from iotmon.cache import keys
from iotmon.config import Settings
from iotmon.devices.models import SEEDED
from iotmon.roles.processing import ProcessingRole
from iotmon.roles.runtime import Services
from iotmon.simulator.signals import Signal
from iotmon.timefmt import iso_utc
from iotmon.users.service import create_user
from tests.integration.helpers import drain, query
from tests.integration.test_api import web_app

REDIS_DB = 8  # its own: system:metrics is one key per Redis database
PASSWORD = "analytics-password"  # noqa: S105 (test user)


def produce(bus: KafkaBus, topic: str, start: datetime, seconds: float, per_device: int) -> int:
    """``per_device`` readings of each seeded device spread over [start, start + seconds)."""
    producer = bus.producer()
    rng = random.Random(3)
    step = seconds / per_device
    for spec in SEEDED:
        signal = Signal(spec, anomaly_rate=0, rng=rng)
        for i in range(per_device):
            t = start + timedelta(seconds=i * step)
            message = {
                "deviceId": spec.device_id,
                "timestamp": iso_utc(t),
                "sensorType": spec.sensor_type,
                "value": round(signal.normal(t.timestamp()), 3),
                "unit": spec.unit,
                "location": spec.location,
            }
            producer.produce(topic, orjson.dumps(message), key=spec.device_id.encode())
    assert producer.flush(30) == 0
    return per_device * len(SEEDED)


class Processing:
    """The processing role's loop in a thread, as `iotmon run processing` runs it."""

    def __init__(self, settings: Settings, bus: KafkaBus) -> None:
        assert settings.database_url is not None
        assert settings.redis_url is not None
        self.role = ProcessingRole(
            Services(
                settings=settings,
                bus=bus,
                database_url=settings.database_url.get_secret_value(),
                redis_url=settings.redis_url.get_secret_value(),
            )
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.role.loop, args=(self.stop,))
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


@pytest.fixture
def private_settings(settings: Settings) -> Settings:
    url = settings.redis_url.get_secret_value()  # type: ignore[union-attr]
    redis_url = url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    return settings.model_copy(
        update={"redis_url": SecretStr(redis_url), "rate_limit_per_minute": 0}
    )


@pytest.fixture
async def client(private_settings: Settings, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_user(conn, "viewer", PASSWORD, "viewer")
    role, app = web_app(private_settings, database_url)
    stop = asyncio.Event()
    task = asyncio.create_task(role.run(stop))
    transport = httpx.ASGITransport(app=app, client=("10.8.0.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        r = await http.post("/api/auth/token", json={"username": "viewer", "password": PASSWORD})
        assert r.status_code == 200, r.text
        http.headers["Authorization"] = f"Bearer {r.json()['data']['accessToken']}"
        yield http
    stop.set()
    await task


async def get(http: httpx.AsyncClient, path: str, **params: Any) -> Any:
    r = await http.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


async def test_analytics_total_equals_the_key_figure(
    private_settings: Settings,
    kafka_bus: KafkaBus,
    database_url: str,
    client: httpx.AsyncClient,
) -> None:
    settings = private_settings
    topic = settings.topic("sensors-data")
    t0 = datetime.now(UTC)
    # In both windows: the last 50 minutes (the key figure's hour slides by the minute; the
    # analytics period of 3 clock hours starts at least 2 hours back). In neither: 5 hours ago.
    recent = produce(kafka_bus, topic, t0 - timedelta(minutes=50), 50 * 60 - 2, 120)
    produce(kafka_bus, topic, t0 - timedelta(hours=5), 600, 30)
    await asyncio.to_thread(drain, settings, kafka_bus, kafka_bus.end_offsets(topic))

    # Processing starts after the readings are stored, as after `make run` on a system that
    # has been receiving: it rebuilds its windows from PostgreSQL and rolls up the complete
    # hours (not the current one).
    current = t0.replace(minute=0, second=0, microsecond=0)
    previous = current - timedelta(hours=1)
    reaches_back = t0 - timedelta(minutes=50) < current  # into the previous hour
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())  # type: ignore[union-attr]
    stats = [f"device:{spec.device_id}:stats:1h" for spec in SEEDED]
    processing = await asyncio.to_thread(Processing, settings, kafka_bus)
    try:
        deadline = time.monotonic() + 60
        while not (
            r.get(keys.SYSTEM_METRICS)
            and r.exists(*stats) == len(stats)
            and (not reaches_back or rolled_up(database_url, previous) == len(SEEDED))
        ):
            assert time.monotonic() < deadline, "processing wrote no figures in 60 s"
            await asyncio.sleep(0.2)
    finally:
        await asyncio.to_thread(processing.close)

    figures = await get(client, "/api/metrics/dashboard")
    summary = await get(client, "/api/analytics/summary", hours=3)
    total = sum(d["readings"] for d in summary["devices"])
    assert figures["dataPointsLastHour"] == recent
    assert total == figures["dataPointsLastHour"]
    assert summary["heatmap"]["hours"][-1] == iso_utc(current)
    assert all(row[-1] is not None for row in summary["heatmap"]["values"])  # this hour's
    assert all(d["availability"] > 0 for d in summary["devices"] if d["deviceId"] < "device-006")

    for spec in SEEDED:
        device = await get(client, f"/api/devices/{spec.device_id}")
        trend = await get(client, f"/api/analytics/trends/{spec.device_id}", hours=3)
        assert sum(h["count"] for h in trend["hourly"]) == device["stats1h"]["count"] == 120

    # Without the previous hour's roll-up (processing not yet round to it after the hour
    # turned) the readings count the same: that hour comes from the readings then.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM device_stats_hourly")
    summary = await get(client, "/api/analytics/summary", hours=4)  # not the cached answer
    assert sum(d["readings"] for d in summary["devices"]) == recent


def rolled_up(url: str, hour: datetime) -> int:
    rows = query(url, "SELECT count(*) FROM device_stats_hourly WHERE hour_timestamp = %s", [hour])
    return int(rows[0][0])

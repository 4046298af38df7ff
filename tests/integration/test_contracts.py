"""Shared contracts have one home, and every part that uses one agrees when it changes: the
offline timeout (API badge and alert engine), a reading's status against its thresholds
(processing and the API), and the reading limits (ingestion and processing)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
import redis.asyncio as aioredis

from iotmon.alerts.config import rule_config
from iotmon.alerts.engine import AlertEngine
from iotmon.alerts.notify import Notifier, NotifyConfig
from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.readings.models import Reason, Rejection, parse
from iotmon.roles.ingestion import IngestionRole
from iotmon.roles.processing import ProcessingRole
from iotmon.roles.runtime import Services
from iotmon.stats.processor import DeviceConfig
from tests.integration.test_api import Api, api, load_readings, new_device, sql

__all__ = ["api"]  # the fixture, from test_api

OFFLINE_S = 1.0


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"alert_offline_timeout_s": OFFLINE_S})


async def engine_opens_offline(settings: Settings, database_url: str, device: str) -> bool:
    """Does the alert engine, on these settings, find ``device`` offline?"""
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    r = aioredis.Redis.from_url(settings.redis_url.get_secret_value())  # type: ignore[union-attr]
    engine = AlertEngine(
        conn=conn, redis=r, notifier=Notifier(NotifyConfig()), config=rule_config(settings)
    )
    try:
        await engine.start()
        await asyncio.sleep(OFFLINE_S + 0.3)  # silent for the timeout while it watches
        await engine.check_offline()
        return device in engine.offline
    finally:
        await conn.close()
        await r.aclose()


async def test_the_offline_timeout_is_one_setting_for_the_api_and_the_alert_engine(
    api: Api, settings: Settings
) -> None:
    quiet = new_device(api.db)  # no timeout of its own: IOTMON_ALERT_OFFLINE_TIMEOUT_S
    patient = new_device(api.db, offline_timeout_s=3600)  # its own
    await api.redis.zadd("devices:last_seen", {quiet: time.time() - 5, patient: time.time() - 5})
    try:
        badge = {
            d: (await api.get(f"/api/devices/{d}")).json()["data"]["connectivity"]
            for d in (quiet, patient)
        }
        assert badge == {quiet: "offline", patient: "online"}
        listed = {
            d["deviceId"]: d["connectivity"]
            for d in (await api.get("/api/devices", params={"limit": 1000})).json()["data"][
                "devices"
            ]
        }
        assert (listed[quiet], listed[patient]) == ("offline", "online")
        assert await engine_opens_offline(settings, api.db, quiet)
        assert not await engine_opens_offline(settings, api.db, patient)
    finally:
        await api.redis.zrem("devices:last_seen", quiet, patient)


@pytest.mark.parametrize(
    ("value", "status"),
    [(50.0, "normal"), (82.0, "warning"), (17.0, "warning"), (90.0, "critical")],
)
async def test_a_readings_status_is_the_same_in_processing_and_the_api(
    api: Api, value: float, status: str
) -> None:
    device = new_device(api.db)  # normal 20-80, alert 15-85
    load_readings(api.db, device, datetime.now(UTC) - timedelta(minutes=1), 1)
    sql(api.db, "UPDATE sensor_readings SET value = %s WHERE device_id = %s", value, device)
    # The API's answer from PostgreSQL (nothing in Redis for this device)...
    assert (await api.get(f"/api/devices/{device}/current")).json()["data"]["status"] == status
    # ... and processing's, from the same thresholds.
    assert DeviceConfig(device, "temperature", "celsius", 20, 80, 15, 85).status(value) == status


def test_ingestion_and_processing_judge_readings_by_the_same_limits(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    settings = settings.model_copy(update={"max_future_skew_s": 10.0, "retention_readings_days": 7})
    services = Services(
        settings=settings,
        bus=kafka_bus,
        database_url=settings.database_url.get_secret_value(),  # type: ignore[union-attr]
        redis_url=settings.redis_url.get_secret_value(),  # type: ignore[union-attr]
    )
    ingestion = IngestionRole(services).ingestor.config.limits
    processing = ProcessingRole(services).limits
    assert ingestion == processing
    assert ingestion.max_future == timedelta(seconds=10)
    assert ingestion.max_age == timedelta(days=7)
    now = datetime.now(UTC)
    for ahead, reason in (
        (timedelta(seconds=60), Reason.TIMESTAMP_IN_FUTURE),
        (-timedelta(days=8), Reason.TIMESTAMP_TOO_OLD),
    ):
        raw = orjson.dumps(
            {
                "deviceId": "device-001",
                "timestamp": (now + ahead).isoformat(),
                "sensorType": "temperature",
                "value": 50.0,
                "unit": "celsius",
            }
        )
        for limits in (ingestion, processing):
            with pytest.raises(Rejection) as info:
                parse(raw, now, limits)
            assert info.value.reason == reason

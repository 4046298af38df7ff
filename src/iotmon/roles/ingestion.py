"""Ingestion role: ``sensors-data`` -> PostgreSQL exactly once, bad input -> DLQ.

The pipeline is synchronous and runs in a worker thread (librdkafka and COPY both release the
GIL); partition upkeep (create ahead, drop expired) runs hourly beside it, and the sensor types
the profiles declare are reloaded every few seconds (``profiles/sensors.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

from fastapi import APIRouter

from iotmon import logging as log
from iotmon.db import partitions
from iotmon.db.pool import connect_retrying
from iotmon.profiles.sensors import Ranges, SensorTypes
from iotmon.readings.ingest import IngestConfig, Ingestor
from iotmon.readings.models import limits_from
from iotmon.roles import ROLES
from iotmon.roles.runtime import Services, run_in_thread, tune_gc

logger = log.get(__name__)

UPKEEP_INTERVAL_S = 3600.0


class IngestionRole:
    name = "ingestion"

    def __init__(self, services: Services) -> None:
        s = services.settings
        assert services.database_url is not None
        self.services = services
        endpoints = ROLES["ingestion"].endpoints(s)
        assert endpoints.dlq is not None
        self.ingestor = Ingestor(
            config=IngestConfig(
                topic=endpoints.topic,
                dlq_topic=endpoints.dlq,
                group_id=endpoints.group,
                batch_size=s.ingest_batch_size,
                batch_wait_s=s.ingest_batch_wait_ms / 1000,
                limits=limits_from(s),
            ),
            bus=services.bus,
            database_url=services.database_url,
        )
        self.sensor_types = SensorTypes(
            services.database_url, s.mqtt_profile_refresh_s, self._set_ranges
        )

    def _set_ranges(self, ranges: Ranges) -> None:
        # The reader takes config.limits once per batch: swapping the config is atomic, and
        # the check of each reading stays one lookup in a plain dict.
        config = self.ingestor.config
        self.ingestor.config = replace(config, limits=replace(config.limits, value_range=ranges))

    async def run(self, stop: asyncio.Event) -> None:
        tune_gc()
        if not await self.sensor_types.start(stop):
            return
        follow_task = asyncio.create_task(self.sensor_types.follow(stop))
        upkeep_task = asyncio.create_task(self._upkeep(stop))
        try:
            await run_in_thread(self.ingestor.run, stop)
        finally:
            upkeep_task.cancel()
            follow_task.cancel()

    async def _upkeep(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.upkeep)
            except Exception as exc:
                logger.error("partition upkeep failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), UPKEEP_INTERVAL_S)

    def upkeep(self) -> dict[str, int]:
        s = self.services.settings
        assert self.services.database_url is not None
        with connect_retrying(self.services.database_url, attempts=3) as conn:
            partitions.ensure_ahead(conn, ahead_days=s.partitions_ahead_days)
            return partitions.apply_retention(
                conn,
                readings_days=s.retention_readings_days,
                stats_days=s.retention_stats_days,
                alerts_days=s.retention_alerts_days,
                events_days=s.retention_events_days,
            )

    def status(self) -> dict[str, Any]:
        st = self.ingestor.stats
        return {
            "stored": st.stored,
            "rejected": st.rejected,
            "batches": st.batches,
            "registeredDevices": st.registered,
            "sensorTypes": len(self.sensor_types.ranges),
        }

    def routers(self) -> list[APIRouter]:
        return []


def build(services: Services) -> IngestionRole:
    return IngestionRole(services)

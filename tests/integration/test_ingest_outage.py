"""Ingestion outlives a database outage during a rebalance: when the stored offsets cannot be
read for ``OFFSETS_TIMEOUT_S``, the member leaves its group instead of ending the role, and
joins again (storing everything exactly once) when PostgreSQL answers."""

from __future__ import annotations

import threading
import time

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.readings import ingest
from iotmon.readings.ingest import Ingestor

from .helpers import Proxy, ingest_config, produce_readings, query


def test_ingestion_leaves_and_rejoins_its_group_across_a_database_outage(
    settings: Settings, kafka_bus: KafkaBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "OFFSETS_TIMEOUT_S", 1.0)
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    info = conninfo_to_dict(url)
    gate = Proxy((str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)))
    gated_url = make_conninfo(url, host="127.0.0.1", port=str(gate.port))

    topic = settings.topic("sensors-data")
    produce_readings(kafka_bus, topic, 500)
    ends = kafka_bus.end_offsets(topic)
    ingestor = Ingestor(config=ingest_config(settings), bus=kafka_bus, database_url=gated_url)
    stop = threading.Event()
    until = {(topic, p): end for p, end in enumerate(ends)}
    result: list[object] = []
    worker = threading.Thread(
        target=lambda: result.append(ingestor.run(stop, until=until)), daemon=True
    )
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while ingestor.stats.rejoins == 0 and time.monotonic() < deadline:
            assert worker.is_alive(), "ingestion ended while the database was down"
            time.sleep(0.2)
        assert ingestor.stats.rejoins >= 1, "ingestion never gave up on the unreadable offsets"
        assert worker.is_alive()
        gate.up()  # the database is back
        worker.join(90)
        assert not worker.is_alive(), "ingestion did not drain after the database came back"
    finally:
        stop.set()
        worker.join(30)
        gate.down()
    assert result, "ingestion ended with an exception"
    assert query(url, "SELECT count(*), count(DISTINCT value) FROM sensor_readings") == [(500, 500)]

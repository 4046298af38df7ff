"""The offset fence: a batch commits only where every partition's stored offset is still the
one the batch started from. A consumer that lost one of its partitions to another member (which
then stored more of it) must store nothing of the batch, in any partition."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import psycopg
import pytest

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.db import partitions
from iotmon.readings.ingest import FencedError, Ingestor, PreparedBatch
from iotmon.readings.models import parse

from .helpers import ingest_config, query, reading


def _batch(fence: dict[int, int | None], end: dict[int, int]) -> PreparedBatch:
    now = datetime.now(UTC)
    rows = [parse(orjson.dumps(reading(i)), now) for i in range(len(end))]
    return PreparedBatch(rows=rows, rejects=[], messages=[], fence=fence, end=end, started=0.0)


def test_a_batch_is_dropped_whole_when_one_of_its_partitions_moved(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    config = ingest_config(settings)
    ingestor = Ingestor(config=config, bus=kafka_bus, database_url=url)
    assert ingestor._load_offsets([0, 1, 2]) == {0: None, 1: None, 2: None}
    stored = (
        'SELECT "partition", next_offset FROM ingest_offsets'
        " WHERE bus_id = %s AND group_id = %s AND topic = %s ORDER BY 1"
    )
    key = (kafka_bus.bus_id, config.group_id, config.topic)
    # another member took partition 1 and stored up to offset 5
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "UPDATE ingest_offsets SET next_offset = 5 WHERE bus_id = %s AND group_id = %s"
            ' AND topic = %s AND "partition" = 1',
            key,
        )
    try:
        stale = _batch({0: None, 1: None, 2: None}, {0: 1, 1: 1, 2: 1})
        conn = ingestor.conn
        partitions.ensure(conn, {r[1].date() for r in stale.rows})
        with pytest.raises(FencedError):
            ingestor._commit(conn, stale, {}, set(), isolating=False)
        assert query(url, "SELECT count(*) FROM sensor_readings") == [(0,)]
        assert query(url, stored, key) == [(0, None), (1, 5), (2, None)]

        current = _batch({0: None, 1: 5, 2: None}, {0: 1, 1: 6, 2: 1})
        ingestor._commit(conn, current, {}, set(), isolating=False)
        assert query(url, "SELECT count(*) FROM sensor_readings") == [(3,)]
        assert query(url, stored, key) == [(0, 1), (1, 6), (2, 1)]
    finally:
        ingestor._close(ingestor._conn)
        ingestor._close(ingestor._offsets_conn)

"""Rebuild the live state from PostgreSQL after a restart, exactly.

Ingestion commits rows and their Kafka offsets together, so in one REPEATABLE READ snapshot
the readings table holds exactly the messages before ``ingest_offsets``. Rebuilding windows
from that snapshot and then consuming from those offsets counts every reading once.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from operator import itemgetter
from typing import Any

import psycopg

from iotmon import logging as log
from iotmon.readings.models import ABS_MAX_VALUE
from iotmon.stats.processor import DeviceConfig, Processor
from iotmon.stats.sketch import GAMMA_LN, key_from_parts
from iotmon.stats.windows import Bucket, Window

logger = log.get(__name__)

_BUCKETS_SQL = """
SELECT device_id, extract(epoch FROM b)::float8 AS start, count(*), sum(value),
       sum(value * value), min(value), max(value), sum(u), sum(u * u), sum(u * value)
FROM (SELECT device_id, value, date_bin(%(bucket)s, "timestamp", 'epoch') AS b,
             extract(epoch FROM "timestamp" - date_bin(%(bucket)s, "timestamp", 'epoch'))::float8
             AS u
            FROM sensor_readings WHERE "timestamp" >= to_timestamp(%(since)s)
       AND value BETWEEN -%(bound)s AND %(bound)s{owned}) r
GROUP BY device_id, b
ORDER BY device_id, b
"""

_BINS_SQL = """
SELECT device_id, extract(epoch FROM date_bin(%(bucket)s, "timestamp", 'epoch'))::float8,
       sign(value)::int AS sgn,
       CASE WHEN abs(value) > 1e-9 THEN ceil(ln(abs(value)) / %(gamma_ln)s)::int ELSE 0 END,
       count(*)
FROM sensor_readings WHERE "timestamp" >= to_timestamp(%(since)s)
 AND value BETWEEN -%(bound)s AND %(bound)s{owned}
GROUP BY 1, 2, 3, 4
ORDER BY 1, 2
"""

_OUT_OF_RANGE_SQL = """
SELECT count(*) FROM sensor_readings WHERE "timestamp" >= to_timestamp(%(since)s)
 AND NOT value BETWEEN -%(bound)s AND %(bound)s{owned}
"""

_LAST_SQL = """
SELECT DISTINCT ON (device_id) device_id, extract(epoch FROM "timestamp")::float8, value
FROM sensor_readings WHERE "timestamp" >= to_timestamp(%(since)s)
 AND value BETWEEN -%(bound)s AND %(bound)s{owned}
ORDER BY device_id, "timestamp" DESC
"""

# A member that does not own every partition ingestion has stored from rebuilds the devices
# whose readings came through its own (device_partitions, written by ingestion).
_OWNED = """
 AND device_id IN (SELECT device_id FROM device_partitions WHERE bus_id = %(bus_id)s
                   AND topic = %(topic)s AND "partition" = ANY(%(partitions)s))"""


# What a DeviceConfig is built from, in its field order: load_configs reads these and
# configs_fingerprint digests the same, so a change to one is a change to both.
_CONFIG_COLUMNS = (
    "device_id, device_type, coalesce(unit, ''), normal_min, normal_max, alert_min, alert_max"
)


def configs_fingerprint(conn: psycopg.Connection[Any]) -> str | None:
    """A digest of what ``load_configs`` reads, computed in PostgreSQL: processing reloads the
    configurations only when it changed (building 10,000 of them every 10 s was ~6 % of the
    role's time at 20,000 readings/s). Whoever wrote the rows (the API, a script, psql)."""
    digest = f"md5(string_agg(row({_CONFIG_COLUMNS})::text, ';' ORDER BY device_id))"
    row = conn.execute(f"SELECT {digest} FROM devices").fetchone()
    return None if row is None else row[0]


def load_configs(conn: psycopg.Connection[Any]) -> dict[str, DeviceConfig]:
    rows = conn.execute(f"SELECT {_CONFIG_COLUMNS} FROM devices").fetchall()
    return {r[0]: DeviceConfig(*r) for r in rows}


def ingestion_offsets(
    conn: psycopg.Connection[Any], *, bus_id: str, ingestion_group: str, topic: str
) -> dict[int, int | None]:
    """Where ingestion stands in each partition of ``topic`` (None: nothing stored yet)."""
    rows = conn.execute(
        'SELECT "partition", next_offset FROM ingest_offsets'
        " WHERE bus_id = %s AND group_id = %s AND topic = %s",
        (bus_id, ingestion_group, topic),
    ).fetchall()
    return {p: (o if o is None else int(o)) for p, o in rows}


def _by_device(
    conn: psycopg.Connection[Any], query: str, params: dict[str, Any], name: str
) -> Generator[tuple[str, list[tuple[Any, ...]]], None, None]:
    """The rows of ``query`` (ordered by device first) a device at a time, streamed from a
    server-side cursor."""
    with conn.cursor(name=name) as cur:
        cur.itersize = 10_000
        cur.execute(query, params)
        for device_id, rows in itertools.groupby(cur, key=itemgetter(0)):
            yield device_id, list(rows)


def rebuild(
    conn: psycopg.Connection[Any],
    processor: Processor,
    *,
    now: float,
    bus_id: str,
    ingestion_group: str,
    topic: str,
    partitions: Sequence[int] | None = None,
) -> dict[int, int | None]:
    """Fill ``processor`` from the database; return where ingestion stood in each partition
    (the offsets to consume from), in the same snapshot. With ``partitions`` (a member's
    assignment), only the devices whose readings came through them, unless they are every
    partition ingestion has stored from (then every device, as without)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        offsets = ingestion_offsets(
            conn, bus_id=bus_id, ingestion_group=ingestion_group, topic=topic
        )
        owned = "" if partitions is None or set(offsets) <= set(partitions) else _OWNED
        scope = {"bus_id": bus_id, "topic": topic, "partitions": sorted(partitions or [])}
        buckets_sql, bins_sql = _BUCKETS_SQL.format(owned=owned), _BINS_SQL.format(owned=owned)
        processor.reconfigure(load_configs(conn))
        for name, shape in processor.new_windows().items():
            params = {
                "bucket": f"{shape.bucket_s} seconds",
                "since": shape.start(now),
                "gamma_ln": GAMMA_LN,
                "bound": ABS_MAX_VALUE,
                **scope,
            }
            # Device by device, from two server-side cursors in the same order: a device's
            # buckets are built, frozen into its window and dropped before the next device's
            # are read. Fetching each query whole held every bucket of the fleet and the
            # bins' result at once (processing at ~810 MiB after rebuilding full windows of
            # 10,000 devices, kept after: the frozen buckets sat among the freed ones).
            bins = _by_device(conn, bins_sql, params, "iotmon_rebuild_bins")
            pending = next(bins, None)
            for device_id, rows in _by_device(conn, buckets_sql, params, "iotmon_rebuild"):
                buckets: dict[float, Bucket] = {}
                for _, start, n, s, ss, lo, hi, su, suu, suv in rows:
                    b = Bucket(start)
                    b.n, b.s, b.ss, b.min, b.max = n, s, ss, lo, hi
                    b.su, b.suu, b.suv = su, suu, suv
                    buckets[start] = b
                if pending is not None and pending[0] == device_id:
                    for _, start, sgn, k, n in pending[1]:
                        buckets[start].bins.add(key_from_parts(sgn, k), n)
                    pending = next(bins, None)
                window: Window = getattr(processor.state(device_id), name)
                for b in buckets.values():  # in time order (the query's)
                    window.add_bucket(b)
            bins.close()
            for st in processor.devices.values():
                getattr(st, name).recompute()
        day = {"since": now - 86400, "bound": ABS_MAX_VALUE, **scope}
        skipped = conn.execute(_OUT_OF_RANGE_SQL.format(owned=owned), day).fetchone()
        if skipped and skipped[0]:
            logger.warning(
                "stored readings out of range left out of the statistics",
                rows=skipped[0],
                bound=ABS_MAX_VALUE,
            )
        for device_id, t, v in conn.execute(_LAST_SQL.format(owned=owned), day):
            st = processor.state(device_id)
            st.value, st.timestamp, st.status = v, t, st.config.status(v)
            processor.dirty.add(device_id)
    return offsets

"""``device_stats_hourly``: one row per device and hour, recomputed idempotently."""

from __future__ import annotations

from typing import Any

import psycopg

_ROLLUP_SQL = """
INSERT INTO device_stats_hourly (device_id, hour_timestamp, avg_value, min_value, max_value,
                                 count_readings, std_deviation)
SELECT device_id, date_trunc('hour', "timestamp"), avg(value), min(value), max(value),
       count(*), stddev(value)
FROM sensor_readings
WHERE "timestamp" >= date_trunc('hour', now()) - make_interval(hours => %(hours)s)
  AND "timestamp" < date_trunc('hour', now())
GROUP BY 1, 2
ON CONFLICT (device_id, hour_timestamp) DO UPDATE SET
    avg_value = EXCLUDED.avg_value, min_value = EXCLUDED.min_value,
    max_value = EXCLUDED.max_value, count_readings = EXCLUDED.count_readings,
    std_deviation = EXCLUDED.std_deviation, created_at = now()
"""


def roll_up(conn: psycopg.Connection[Any], *, hours: int = 3) -> int:
    """Recompute the last ``hours`` complete hours (late readings land in them too). Running
    it again gives the same rows. Returns the rows written."""
    with conn.transaction():
        return conn.execute(_ROLLUP_SQL, {"hours": hours}).rowcount

"""Devices' figures by clock hour over a period ending with the current, running hour: the
complete hours from the hourly roll-up (``device_stats_hourly``, stats/rollup.py), the current
hour (and the one before, until processing has rolled it up: it does every few minutes) from
``sensor_readings`` itself, one indexed range scan per device. So the figures right after a
start, and of the current hour always, agree with the rest of the dashboard. Availability is
the share of the period's hours a device reported in, the current hour by its elapsed part."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Period:
    """``hours`` clock hours ending with the current one: [since, now)."""

    hours: int
    since: datetime  # the first hour's start
    current: datetime  # the current hour's start
    now: datetime

    @classmethod
    def ending_now(cls, hours: int, now: datetime | None = None) -> Period:
        now = now or datetime.now(UTC)
        current = now.replace(minute=0, second=0, microsecond=0)
        return cls(hours, current - (hours - 1) * HOUR, current, now)

    @property
    def elapsed(self) -> float:
        """The part of the current hour gone by, in hours (0 to 1; never 0: a division)."""
        return min(1.0, max((self.now - self.current) / HOUR, 1 / 3600))

    @property
    def span(self) -> float:
        """The period's length in hours: the complete ones and the current one's elapsed part."""
        return self.hours - 1 + self.elapsed

    def axis(self) -> list[datetime]:
        return [self.since + i * HOUR for i in range(self.hours)]

    def params(self, devices: list[str] | None = None) -> dict[str, Any]:
        return {
            "since": self.since,
            "current": self.current,
            "previous": self.current - HOUR,
            "next": self.current + HOUR,
            "devices": devices,
        }


# Every hour of the period per device and hour (device_id, hour, avg, min, max, n, std): the
# hours not rolled up yet from the readings, the others from the roll-up. In one statement,
# so an hour rolled up meanwhile is counted once. `fresh` scans, per device, from the current
# hour, or from the previous one while that has no roll-up row for the device (processing
# rolls up every few minutes), to the end of the current hour: one range of the
# (device_id, "timestamp") index. date_trunc as the roll-up does (stats/rollup.py).
_HOURLY_CTE = """
WITH fresh AS (
    SELECT d.device_id, r.hour, r.avg, r.min, r.max, r.n, r.std
    FROM devices d
    CROSS JOIN LATERAL (
        SELECT CASE WHEN %(previous)s < %(since)s OR EXISTS (
                   SELECT 1 FROM device_stats_hourly h
                   WHERE h.device_id = d.device_id AND h.hour_timestamp = %(previous)s)
               THEN %(current)s ELSE %(previous)s END AS lo
    ) b
    CROSS JOIN LATERAL (
        SELECT date_trunc('hour', s."timestamp") AS hour, avg(s.value) AS avg,
               min(s.value) AS min, max(s.value) AS max, count(*) AS n, stddev(s.value) AS std
        FROM sensor_readings s
        WHERE s.device_id = d.device_id AND s."timestamp" >= b.lo
          AND s."timestamp" < %(next)s
        GROUP BY 1
    ) r
    WHERE %(devices)s::text[] IS NULL OR d.device_id = ANY(%(devices)s::text[])
),
hourly AS (
    SELECT h.device_id, h.hour_timestamp AS hour, h.avg_value AS avg, h.min_value AS min,
           h.max_value AS max, h.count_readings AS n, h.std_deviation AS std
    FROM device_stats_hourly h
    WHERE h.hour_timestamp >= %(since)s AND h.hour_timestamp < %(current)s
      AND (%(devices)s::text[] IS NULL OR h.device_id = ANY(%(devices)s::text[]))
      AND NOT EXISTS (
          SELECT 1 FROM fresh f WHERE f.device_id = h.device_id AND f.hour = h.hour_timestamp)
    UNION ALL
    SELECT * FROM fresh WHERE hour >= %(since)s
)
"""


async def device_hours(
    conn: psycopg.AsyncConnection[Any], period: Period, device_id: str
) -> list[tuple[Any, ...]]:
    """One device's hours in the period, in time order: (hour, avg, min, max, n, std)."""
    cur = await conn.execute(
        _HOURLY_CTE + "SELECT hour, avg, min, max, n, std FROM hourly ORDER BY hour",
        period.params([device_id]),
    )
    return await cur.fetchall()


async def device_totals(
    conn: psycopg.AsyncConnection[Any], period: Period, limit: int = 1000
) -> list[dict[str, Any]]:
    """Per device over the period: readings, avg, min, max and availability (the share of the
    period's hours it reported in, the current hour by its elapsed part)."""
    cur = await conn.execute(
        _HOURLY_CTE + "SELECT d.device_id, d.device_type, d.unit, sum(h.n),"
        " sum(h.avg * h.n) / nullif(sum(h.n), 0), min(h.min), max(h.max),"
        " count(h.hour) FILTER (WHERE h.hour < %(current)s),"
        " coalesce(bool_or(h.hour >= %(current)s), false)"
        " FROM devices d LEFT JOIN hourly h ON h.device_id = d.device_id"
        " GROUP BY d.device_id, d.device_type, d.unit ORDER BY d.device_id LIMIT %(limit)s",
        period.params() | {"limit": limit},
    )
    return [
        {
            "deviceId": d,
            "type": t,
            "unit": u,
            "readings": int(n or 0),
            "avg": a,
            "min": lo,
            "max": hi,
            "availability": round(
                min(1.0, (int(done) + (period.elapsed if now else 0.0)) / period.span), 4
            ),
        }
        for d, t, u, n, a, lo, hi, done, now in await cur.fetchall()
    ]


async def hourly_averages(
    conn: psycopg.AsyncConnection[Any], period: Period, devices: list[str]
) -> dict[str, dict[datetime, float | None]]:
    """device -> hour -> average over the period, for ``devices`` (those with data only)."""
    cur = await conn.execute(
        _HOURLY_CTE + "SELECT device_id, hour, avg FROM hourly ORDER BY device_id, hour",
        period.params(devices),
    )
    heat: dict[str, dict[datetime, float | None]] = {}
    for d, h, a in await cur.fetchall():
        heat.setdefault(d, {})[h] = a
    return heat

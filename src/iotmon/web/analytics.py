"""``/api/analytics``: trends per device and a summary across devices, by clock hour, and the
live statistics; answers are cached in Redis for a few seconds (every web process shares them).

A period of ``hours`` hours is that many clock hours ending with the current one, which is
still running: the complete hours come from the hourly roll-up (``device_stats_hourly``), the
current hour (and the one before, until processing has rolled it up: it does every few
minutes) from ``sensor_readings`` itself, one indexed range scan per device. So the figures
right after a start, and of the current hour always, agree with the rest of the dashboard
(the Overview's readings in the last hour, the device pages). Availability is the share of the
period's hours a device reported in, the current hour counted by its elapsed part."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import psycopg
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from iotmon.timefmt import iso_utc
from iotmon.web.envelope import DeviceIdPath, Envelope, errors, ok
from iotmon.web.legacy import RouterApi as Api

CACHE_TTL_S = 5


class HourPoint(BaseModel):
    hour: str
    avg: float | None
    min: float | None
    max: float | None
    count: int
    std: float | None


class Trend(BaseModel):
    model_config = ConfigDict(extra="allow")
    deviceId: str
    hours: int
    unit: str | None
    trend1h: dict[str, Any] | None
    trend24h: dict[str, Any] | None
    hourly: list[HourPoint]
    slopePerHour: float | None
    change: float | None


class TrendEnvelope(Envelope):
    data: Trend


class SummaryEnvelope(Envelope):
    data: dict[str, Any]


async def cached(api: Api, request: Request, compute: Any) -> Response:
    """``compute()`` once per ``CACHE_TTL_S`` for this path and query, across processes."""
    key = f"cache:{api.namespace}:{request.url.path}?{request.url.query}"
    try:
        hit = await api.redis.get(key)
    except aioredis.RedisError:
        hit = None
    if hit:
        body = orjson.loads(hit)
        return ok(body["data"], body["meta"] | {"cached": True})
    data, meta = await compute()
    with contextlib.suppress(aioredis.RedisError):
        await api.redis.set(key, orjson.dumps({"data": data, "meta": meta}), ex=CACHE_TTL_S)
    return ok(data, meta | {"cached": False})


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


def router(api: Api) -> APIRouter:
    r = APIRouter(prefix="/api/analytics", tags=["analytics"], responses=errors())
    viewer = Depends(api.require("viewer"))

    @r.get(
        "/trends/{device_id}",
        response_model=TrendEnvelope,
        dependencies=[viewer],
        responses=errors({404: "no such device"}),
    )
    async def trends(
        request: Request,
        device_id: DeviceIdPath,
        hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
    ) -> Response:
        """Hourly avg/min/max over the last ``hours`` clock hours (the current one so far), the
        least-squares slope across them, and the live 1 h / 24 h trend."""

        async def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            period = Period.ending_now(hours)
            async with api.pool.connection() as conn:
                row = await api.device_row(conn, device_id)
                rows = await device_hours(conn, period, device_id)
            hourly = [
                {"hour": iso_utc(h), "avg": a, "min": lo, "max": hi, "count": int(n), "std": sd}
                for h, a, lo, hi, n, sd in rows
            ]
            slope = _slope_per_hour(
                [((h - period.since) / HOUR, a) for h, a, *_ in rows if a is not None]
            )
            state = (await api.live_state([device_id], windows=("1h", "24h")))[device_id]
            first = next((p["avg"] for p in hourly if p["avg"] is not None), None)
            last = next((p["avg"] for p in reversed(hourly) if p["avg"] is not None), None)
            return (
                {
                    "deviceId": device_id,
                    "hours": hours,
                    "unit": row["unit"],
                    "trend1h": _trend(state["stats1h"]),
                    "trend24h": _trend(state["stats24h"]),
                    "hourly": hourly,
                    "slopePerHour": slope,
                    "change": (last - first) if first is not None and last is not None else None,
                },
                {"points": len(hourly)},
            )

        return await cached(api, request, compute)

    @r.get("/summary", response_model=SummaryEnvelope, dependencies=[viewer])
    async def summary(
        request: Request, hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24
    ) -> Response:
        """Across devices over the last ``hours`` clock hours (the current one so far): per
        device avg/min/max and readings, a device x hour heatmap of averages, alerts by type and
        severity, and the share of the period each device reported in (availability, by hour;
        the current hour counted by its elapsed part)."""

        async def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            period = Period.ending_now(hours)
            since = period.since
            async with api.pool.connection() as conn, conn.transaction():
                # one snapshot: the table and the heatmap count the same readings
                await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                devices = await device_totals(conn, period)
                shown = [d["deviceId"] for d in devices[:100]]
                heat = await hourly_averages(conn, period, shown)
                cur = await conn.execute(
                    "SELECT alert_type, severity, count(*) FROM alerts WHERE triggered_at >= %s"
                    " GROUP BY alert_type, severity",
                    (since,),
                )
                by_type: dict[str, int] = {}
                by_severity: dict[str, int] = {}
                for t, s, n in await cur.fetchall():
                    by_type[t] = by_type.get(t, 0) + int(n)
                    by_severity[s] = by_severity.get(s, 0) + int(n)
            axis = period.axis()
            return (
                {
                    "hours": hours,
                    "from": iso_utc(since),
                    "to": iso_utc(period.now),
                    "devices": devices,
                    "heatmap": {
                        "hours": [iso_utc(h) for h in axis],
                        "devices": list(heat),
                        "values": [[heat[d].get(h) for h in axis] for d in heat],
                    },
                    "alerts": {
                        "total": sum(by_type.values()),
                        "byType": by_type,
                        "bySeverity": by_severity,
                    },
                },
                {"devices": len(devices)},
            )

        return await cached(api, request, compute)

    return r


def _trend(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    if not stats:
        return None
    return {"trend": stats.get("trend"), "slope": stats.get("slope"), "avg": stats.get("avg")}


def _slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (hours, value) points."""
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None

"""``/api/analytics``: trends per device and a summary across devices, from the hourly
roll-up (``device_stats_hourly``) and the live statistics; answers are cached in Redis for a
few seconds (every web process shares them)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from iotmon.timefmt import iso_utc
from iotmon.web.app import Api, DeviceIdPath, Envelope, errors, ok

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
        """Hourly avg/min/max over the last ``hours`` complete hours, the least-squares slope
        across them, and the live 1 h / 24 h trend."""

        async def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            since = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(
                hours=hours
            )
            async with api.pool.connection() as conn:
                row = await api.device_row(conn, device_id)
                cur = await conn.execute(
                    "SELECT hour_timestamp, avg_value, min_value, max_value, count_readings,"
                    " std_deviation FROM device_stats_hourly"
                    " WHERE device_id = %s AND hour_timestamp >= %s ORDER BY hour_timestamp",
                    (device_id, since),
                )
                rows = await cur.fetchall()
            hourly = [
                {"hour": iso_utc(h), "avg": a, "min": lo, "max": hi, "count": n, "std": sd}
                for h, a, lo, hi, n, sd in rows
            ]
            slope = _slope_per_hour(
                [((h - since).total_seconds() / 3600, a) for h, a, *_ in rows if a is not None]
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
        """Across devices over the last ``hours`` complete hours: per device avg/min/max and
        readings, a device x hour heatmap of averages, alerts by type and severity, and the
        share of hours each device reported (availability)."""

        async def compute() -> tuple[dict[str, Any], dict[str, Any]]:
            now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
            since = now - timedelta(hours=hours)
            async with api.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT d.device_id, d.device_type, d.unit, sum(h.count_readings),"
                    " sum(h.avg_value * h.count_readings) / nullif(sum(h.count_readings), 0),"
                    " min(h.min_value), max(h.max_value), count(h.hour_timestamp)"
                    " FROM devices d LEFT JOIN device_stats_hourly h"
                    " ON h.device_id = d.device_id AND h.hour_timestamp >= %s"
                    " GROUP BY d.device_id, d.device_type, d.unit ORDER BY d.device_id LIMIT 1000",
                    (since,),
                )
                devices = [
                    {
                        "deviceId": d,
                        "type": t,
                        "unit": u,
                        "readings": int(n or 0),
                        "avg": a,
                        "min": lo,
                        "max": hi,
                        "availability": round(int(hrs) / hours, 4),
                    }
                    for d, t, u, n, a, lo, hi, hrs in await cur.fetchall()
                ]
                cur = await conn.execute(
                    "SELECT device_id, hour_timestamp, avg_value FROM device_stats_hourly"
                    " WHERE hour_timestamp >= %s AND device_id = ANY(%s)"
                    " ORDER BY device_id, hour_timestamp",
                    (since, [d["deviceId"] for d in devices[:100]]),
                )
                heat: dict[str, dict[str, float | None]] = {}
                for d, h, a in await cur.fetchall():
                    heat.setdefault(d, {})[iso_utc(h)] = a
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
            hours_axis = [iso_utc(since + timedelta(hours=i)) for i in range(hours)]
            return (
                {
                    "hours": hours,
                    "from": iso_utc(since),
                    "to": iso_utc(now),
                    "devices": devices,
                    "heatmap": {
                        "hours": hours_axis,
                        "devices": list(heat),
                        "values": [[heat[d].get(h) for h in hours_axis] for d in heat],
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

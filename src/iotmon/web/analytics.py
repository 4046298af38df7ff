"""``/api/analytics``: trends per device and a summary across devices, by clock hour
(stats/hourly.py), and the live statistics. Answers are kept in Redis for a few seconds
(``SharedAnswers``: every web process shares them)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict

from iotmon.alerts import service as alerts
from iotmon.devices import service as devices
from iotmon.stats import hourly
from iotmon.stats.trend import slope
from iotmon.timefmt import iso_utc
from iotmon.web.deps import VIEWER, State
from iotmon.web.envelope import DeviceIdPath, Envelope, errors


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


router = APIRouter(prefix="/api/analytics", tags=["analytics"], responses=errors())


@router.get(
    "/trends/{device_id}",
    response_model=TrendEnvelope,
    dependencies=[VIEWER],
    responses=errors({404: "no such device"}),
)
async def trends(
    request: Request,
    device_id: DeviceIdPath,
    state: State,
    hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
) -> Response:
    """Hourly avg/min/max over the last ``hours`` clock hours (the current one so far), the
    least-squares slope across them, and the live 1 h / 24 h trend."""

    async def compute() -> tuple[dict[str, Any], dict[str, Any]]:
        period = hourly.Period.ending_now(hours)
        async with state.pool.connection() as conn:
            row = await devices.get_row(conn, device_id)
            rows = await hourly.device_hours(conn, period, device_id)
        points = [((h - period.since) / hourly.HOUR, a) for h, a, *_ in rows if a is not None]
        live = (await devices.live_state(state.redis, [device_id], ("1h", "24h")))[device_id]
        hourly_points = [
            {"hour": iso_utc(h), "avg": a, "min": lo, "max": hi, "count": int(n), "std": sd}
            for h, a, lo, hi, n, sd in rows
        ]
        first = next((p["avg"] for p in hourly_points if p["avg"] is not None), None)
        last = next((p["avg"] for p in reversed(hourly_points) if p["avg"] is not None), None)
        return (
            {
                "deviceId": device_id,
                "hours": hours,
                "unit": row["unit"],
                "trend1h": _trend(live["stats1h"]),
                "trend24h": _trend(live["stats24h"]),
                "hourly": hourly_points,
                "slopePerHour": _slope_per_hour(points),
                "change": (last - first) if first is not None and last is not None else None,
            },
            {"points": len(hourly_points)},
        )

    return await state.shared_answers.get(request, compute)


@router.get("/summary", response_model=SummaryEnvelope, dependencies=[VIEWER])
async def summary(
    request: Request, state: State, hours: Annotated[int, Query(ge=1, le=24 * 31)] = 24
) -> Response:
    """Across devices over the last ``hours`` clock hours (the current one so far): per
    device avg/min/max and readings, a device x hour heatmap of averages, alerts by type and
    severity, and the share of the period each device reported in (availability, by hour;
    the current hour counted by its elapsed part)."""

    async def compute() -> tuple[dict[str, Any], dict[str, Any]]:
        period = hourly.Period.ending_now(hours)
        async with state.pool.connection() as conn, conn.transaction():
            # one snapshot: the table and the heatmap count the same readings
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            totals = await hourly.device_totals(conn, period)
            shown = [d["deviceId"] for d in totals[:100]]
            heat = await hourly.hourly_averages(conn, period, shown)
            counted = await alerts.counts_since(conn, period.since)
        by_type: dict[str, int] = {}
        by_severity: dict[str, int] = {}
        for t, s, n in counted:
            by_type[t] = by_type.get(t, 0) + n
            by_severity[s] = by_severity.get(s, 0) + n
        axis = period.axis()
        return (
            {
                "hours": hours,
                "from": iso_utc(period.since),
                "to": iso_utc(period.now),
                "devices": totals,
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
            {"devices": len(totals)},
        )

    return await state.shared_answers.get(request, compute)


def _trend(stats: dict[str, Any] | None) -> dict[str, Any] | None:
    if not stats:
        return None
    return {"trend": stats.get("trend"), "slope": stats.get("slope"), "avg": stats.get("avg")}


def _slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (hours, value) points; None for fewer than two."""
    if len(points) < 2:
        return None
    return slope(
        len(points),
        sum(x for x, _ in points),
        sum(x * x for x, _ in points),
        sum(y for _, y in points),
        sum(x * y for x, y in points),
    )

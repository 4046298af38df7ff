"""Prometheus request metrics for the API (count and latency by route template), and
``/api/metrics/dashboard`` and ``/api/metrics/system``."""

from __future__ import annotations

import os
import resource
import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from fastapi import APIRouter, Request, Response
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, ConfigDict

from iotmon import __version__
from iotmon.alerts import service as alerts
from iotmon.alerts.models import SEVERITIES
from iotmon.cache import keys
from iotmon.devices import service as devices
from iotmon.web.deps import VIEWER, Pool, State
from iotmon.web.envelope import Envelope, errors, ok

REQUESTS = Counter("iotmon_http_requests_total", "API requests", ["method", "route", "status"])
LATENCY = Histogram(
    "iotmon_http_request_seconds",
    "API request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def observe(scope: Any, status: int, seconds: float) -> None:
    """Count and time a request by its route template (``/api/devices/{device_id}``), so the
    label set stays bounded whatever clients ask for."""
    route = scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    method = scope.get("method", "")
    LATENCY.labels(method, template).observe(seconds)
    REQUESTS.labels(method, template, str(status)).inc()


class Dashboard(BaseModel):
    model_config = ConfigDict(extra="allow")
    totalDevices: int
    activeDevices: int
    activeAlerts: int
    alertsBySeverity: dict[str, int]
    dataPointsLastHour: int
    systemHealth: str
    updatedAt: str | None


class DashboardEnvelope(Envelope):
    data: Dashboard


class SystemEnvelope(Envelope):
    data: dict[str, Any]


DATABASE_FIGURES = (
    "SELECT pg_database_size(current_database()),"
    " (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()),"
    " current_setting('server_version')"
)

router = APIRouter(prefix="/api/metrics", tags=["metrics"], responses=errors())


@router.get("/dashboard", response_model=DashboardEnvelope, dependencies=[VIEWER])
async def dashboard(request: Request, state: State) -> Response:
    """Key figures: devices, active devices, open alerts by severity, readings in the last
    hour (from processing's ``system:metrics``, written every second)."""

    async def figures() -> Response:
        system: dict[str, Any] = {}
        try:
            raw = await state.redis.get(keys.SYSTEM_METRICS)
            system = orjson.loads(raw) if raw else {}
        except aioredis.RedisError:
            pass
        async with state.pool.connection() as conn:
            by_severity = await alerts.open_by_severity(conn)
            if not system:
                system = {"totalDevices": await devices.count(conn)}
        return ok(
            {
                "totalDevices": int(system.get("totalDevices", 0)),
                "activeDevices": int(system.get("activeDevices", 0)),
                "activeAlerts": sum(by_severity.values()),
                "alertsBySeverity": {s: by_severity.get(s, 0) for s in SEVERITIES},
                "dataPointsLastHour": int(system.get("dataPointsLastHour", 0)),
                "systemHealth": system.get("systemHealth", "unknown"),
                "updatedAt": system.get("timestamp"),
            }
        )

    return await state.answers.get(request, "metrics:dashboard", figures, role="viewer")


@router.get("/system", response_model=SystemEnvelope, dependencies=[VIEWER])
async def system(state: State, pool: Pool) -> Response:
    """This web process, Redis and PostgreSQL: uptime, memory, load, connections, sizes."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out: dict[str, Any] = {
        "version": __version__,
        "process": {
            "pid": os.getpid(),
            "uptimeS": round(time.time() - state.services.started_at, 1),
            "maxRssMiB": round(usage.ru_maxrss / 1024, 1),
            "cpuUserS": round(usage.ru_utime, 2),
            "cpuSystemS": round(usage.ru_stime, 2),
        },
        "host": {"loadAverage": list(os.getloadavg()), "cpus": os.cpu_count()},
    }
    try:
        info = await state.redis.info()
        out["redis"] = {
            "usedMemoryMiB": round(int(info.get("used_memory", 0)) / 2**20, 1),
            "connectedClients": int(info.get("connected_clients", 0)),
            "opsPerSecond": int(info.get("instantaneous_ops_per_sec", 0)),
            "version": info.get("redis_version"),
        }
    except aioredis.RedisError as exc:
        out["redis"] = {"error": str(exc)}
    async with pool.connection() as conn:
        cur = await conn.execute(DATABASE_FIGURES)
        row = await cur.fetchone()
    assert row is not None
    out["database"] = {
        "sizeMiB": round(int(row[0]) / 2**20, 1),
        "connections": int(row[1]),
        "version": row[2],
    }
    return ok(out)

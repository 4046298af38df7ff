"""Health in the format of DESIGN.md 6, with real dependency checks and their response times."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

import psycopg
import redis.asyncio as aioredis

from iotmon import __version__
from iotmon.bus import Bus
from iotmon.timefmt import iso_utc

CHECK_TIMEOUT_S = 2.0


class RequestWindow:
    """Requests and errors over the last minute, for ``requestsPerMinute``/``errorRate``."""

    def __init__(self) -> None:
        self._events: deque[tuple[float, bool]] = deque()

    def record(self, error: bool) -> None:
        now = time.monotonic()
        self._events.append((now, error))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._events and self._events[0][0] < now - 60:
            self._events.popleft()

    def figures(self) -> tuple[int, float]:
        self._trim(time.monotonic())
        total = len(self._events)
        errors = sum(1 for _, e in self._events if e)
        return total, (errors / total if total else 0.0)


async def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        status, error = "healthy", None
    except Exception as exc:
        status, error = "unhealthy", f"{type(exc).__name__}: {exc}"[:300]
    out: dict[str, Any] = {
        "status": status,
        "responseTime": round((time.perf_counter() - started) * 1000, 2),
    }
    if error:
        out["error"] = error
    return out


async def check_database(url: str) -> None:
    async with await psycopg.AsyncConnection.connect(url, connect_timeout=2) as conn:
        await conn.execute("SELECT 1")


async def check_redis(url: str) -> None:
    client = aioredis.Redis.from_url(url, socket_timeout=CHECK_TIMEOUT_S)
    try:
        await client.ping()
    finally:
        await client.aclose()


async def check_bus(bus: Bus) -> None:
    await asyncio.to_thread(bus.ping, CHECK_TIMEOUT_S)


async def health(
    *,
    bus: Bus | None,
    database_url: str | None,
    redis_url: str | None,
    started_at: float,
    window: RequestWindow,
    roles: dict[str, dict[str, Any]] | None = None,
) -> tuple[int, dict[str, Any]]:
    checks: dict[str, Any] = {}
    if database_url:
        checks["database"] = lambda: check_database(database_url)
    if redis_url:
        checks["redis"] = lambda: check_redis(redis_url)
    if bus is not None:
        checks["kafka"] = lambda: check_bus(bus)
    results = await asyncio.gather(*(_timed(c) for c in checks.values()))
    deps = dict(zip(checks, results, strict=True))
    rpm, error_rate = window.figures()
    healthy = all(d["status"] == "healthy" for d in deps.values())
    body: dict[str, Any] = {
        "status": "healthy" if healthy else "unhealthy",
        "timestamp": iso_utc(),
        "version": __version__,
        "dependencies": deps,
        "metrics": {
            "uptime": round(time.time() - started_at, 1),
            "requestsPerMinute": rpm,
            "errorRate": round(error_rate, 4),
        },
    }
    if roles:
        body["roles"] = roles
    return (200 if healthy else 503), body

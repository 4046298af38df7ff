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
HEALTH_CACHE_S = 1.0


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


class Probes:
    """The dependency checks of a process, on connections kept for them (a small pool of its
    own for PostgreSQL, so a busy API pool does not read as an outage; one Redis client), and
    their result kept ``cache_s``: a flood of probes costs one check a second, done once
    however many wait for it."""

    def __init__(self, cache_s: float = HEALTH_CACHE_S) -> None:
        self.cache_s = cache_s
        self._pool: Any = None
        self._pool_url: str | None = None
        self._redis: aioredis.Redis | None = None
        self._redis_url: str | None = None
        self._kept: dict[tuple[str, ...], tuple[float, dict[str, Any]]] = {}
        self._locks: dict[tuple[str, ...], asyncio.Lock] = {}

    async def _database(self, url: str) -> None:
        from psycopg_pool import AsyncConnectionPool

        if self._pool is None or self._pool_url != url:
            self._pool = AsyncConnectionPool(
                url,
                min_size=1,
                max_size=2,
                open=False,
                timeout=CHECK_TIMEOUT_S,
                check=AsyncConnectionPool.check_connection,  # a broken one is replaced
                kwargs={
                    "autocommit": True,
                    "connect_timeout": 2,
                    "application_name": "iotmon-health",
                },
            )
            self._pool_url = url
            await self._pool.open(wait=False)
        async with self._pool.connection(timeout=CHECK_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")

    async def _ping_redis(self, url: str) -> None:
        if self._redis is None or self._redis_url != url:
            self._redis = aioredis.Redis.from_url(
                url, socket_timeout=CHECK_TIMEOUT_S, socket_connect_timeout=CHECK_TIMEOUT_S
            )
            self._redis_url = url
        await self._redis.ping()

    async def check(
        self, bus: Bus | None, database_url: str | None, redis_url: str | None
    ) -> dict[str, Any]:
        checks: dict[str, Any] = {}
        if database_url:
            checks["database"] = lambda: self._database(database_url)
        if redis_url:
            checks["redis"] = lambda: self._ping_redis(redis_url)
        if bus is not None:
            checks["kafka"] = lambda: check_bus(bus)
        key = tuple(checks)
        kept = self._kept.get(key)
        if kept is not None and time.monotonic() - kept[0] < self.cache_s:
            return kept[1]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            kept = self._kept.get(key)
            if kept is not None and time.monotonic() - kept[0] < self.cache_s:
                return kept[1]
            results = await asyncio.gather(*(_timed(c) for c in checks.values()))
            deps = dict(zip(checks, results, strict=True))
            self._kept[key] = (time.monotonic(), deps)
            return deps

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None


async def health(
    *,
    bus: Bus | None,
    database_url: str | None,
    redis_url: str | None,
    started_at: float,
    window: RequestWindow,
    roles: dict[str, dict[str, Any]] | None = None,
    probes: Probes | None = None,
) -> tuple[int, dict[str, Any]]:
    if probes is not None:
        deps = await probes.check(bus, database_url, redis_url)
    else:
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

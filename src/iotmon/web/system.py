"""``/api/health`` and ``/api/status``: is it up, and what runs."""

from __future__ import annotations

import time

import orjson
import redis.asyncio as aioredis
from fastapi import APIRouter, Response

from iotmon import __version__
from iotmon.web.deps import State, Viewer
from iotmon.web.envelope import Envelope, errors, ok
from iotmon.web.health import health

# tags: "auth" first, as the router these endpoints came from had it (the OpenAPI stays as it was)
router = APIRouter(prefix="/api", tags=["auth"], responses=errors())

STATUS = (
    "SELECT (SELECT count(*) FROM devices),"
    " (SELECT count(*) FROM alerts WHERE status <> 'resolved'),"
    " (SELECT count(*) FROM silences WHERE ends_at > now())"
)


@router.get("/health", tags=["system"], responses={503: {"description": "unhealthy, same body"}})
async def api_health(state: State) -> Response:
    """DESIGN.md 6: PostgreSQL and Redis checked with their response times; 503 when
    one is down."""
    services = state.services
    code, body = await health(
        bus=None,
        database_url=services.database_url,
        redis_url=services.redis_url,
        started_at=services.started_at,
        window=services.requests,
        probes=services.probes,
    )
    return Response(orjson.dumps(body), status_code=code, media_type="application/json")


@router.get("/status", tags=["system"], response_model=Envelope)
async def status(who: Viewer, state: State) -> Response:
    """What runs, what it holds: devices, open alerts, live event sequence, this
    process's Socket.IO clients."""
    async with state.pool.connection() as conn:
        cur = await conn.execute(STATUS)
        row = await cur.fetchone()
    assert row is not None
    try:
        seq = int(await state.redis.get("live:seq") or 0)
    except aioredis.RedisError:
        seq = None
    return ok(
        {
            "version": __version__,
            "uptimeS": round(time.time() - state.services.started_at, 1),
            "embedded": sorted(state.services.embedded),
            "devices": int(row[0]),
            "openAlerts": int(row[1]),
            "activeSilences": int(row[2]),
            "lastEventId": None if seq is None else str(seq),
            "user": {"username": who.username, "role": who.role},
        }
    )

"""Web role: the REST API (``/api``), the Socket.IO service (``/socket.io``) and the built
dashboard (``/``). Stateless: run as many as needed behind a load balancer; rooms are shared
through Redis, tokens through the signing key in PostgreSQL (or IOTMON_JWT_SECRET)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from fastapi import APIRouter, FastAPI
from psycopg_pool import AsyncConnectionPool

from iotmon import logging as log
from iotmon.metrics import watch_pool
from iotmon.realtime.server import LiveService
from iotmon.roles.runtime import Services, tune_gc
from iotmon.users import service as users
from iotmon.web import auth, metrics
from iotmon.web.answers import AnswerReplay
from iotmon.web.app import install
from iotmon.web.routers import ROUTERS
from iotmon.web.state import ApiState

logger = log.get(__name__)

DEVICES_REFRESH_S = 10.0


class WebRole:
    name = "web"

    def __init__(self, services: Services) -> None:
        assert services.database_url is not None
        assert services.redis_url is not None
        self.services = services
        s = services.settings
        with psycopg.connect(services.database_url, autocommit=True) as conn:
            key = auth.signing_key(conn, s.jwt_secret.get_secret_value() if s.jwt_secret else None)
            password = users.ensure_admin(conn) if services.embedded else None
        if password:
            # Embedded mode, first start: the one time this password is shown.
            print(
                f"\n  first start: created user 'admin' with password {password!r}\n"
                "  (change it with `iotmon users set-password admin`)\n",
                flush=True,
            )
        self.tokens = auth.Tokens(key, s.token_ttl_s)
        self.pool = AsyncConnectionPool(
            services.database_url,
            min_size=1,
            max_size=10,
            open=False,
            kwargs={"autocommit": True, "application_name": "iotmon-web"},
            # After a PostgreSQL restart the pool would hand out dead connections once each.
            check=AsyncConnectionPool.check_connection,
        )
        watch_pool("api", self.pool)
        self._devices: set[str] = set()
        self._devices_at = -1e18
        self.live = LiveService(
            services.redis_url,
            authenticate=self.tokens.verify,
            device_exists=self.device_exists,
            current=auth.session_current,
            cors_origins=s.cors_origins,
            watch_grace_s=s.live_watch_grace_s,
            max_payload_bytes=s.live_max_payload_bytes,
            connect_timeout_s=s.live_connect_timeout_s,
            replays_per_minute=s.live_replays_per_minute,
        )
        self.api = ApiState(services, self.pool, self.tokens)
        tune_gc()

    async def device_exists(self, device_id: str) -> bool:
        """From a cached list of device ids, re-read when stale or on a miss (at most once a
        second), so a device registered a moment ago is found."""
        now = time.monotonic()
        fresh = now - self._devices_at < DEVICES_REFRESH_S
        if device_id in self._devices and fresh:
            return True
        if now - self._devices_at >= 1.0:
            async with self.pool.connection() as conn:
                cur = await conn.execute("SELECT device_id FROM devices")
                self._devices = {r[0] for r in await cur.fetchall()}
            self._devices_at = now
        return device_id in self._devices

    async def run(self, stop: asyncio.Event) -> None:
        await self.pool.open()
        await self.live.start()
        await self.api.start()
        try:
            await stop.wait()
        finally:
            await self.api.close()
            await self.live.close()
            await self.pool.close()

    def status(self) -> dict[str, Any]:
        return {"socketClients": self.live.connected}

    def routers(self) -> list[APIRouter]:
        return list(ROUTERS)

    def wrap(self, app: FastAPI) -> Any:
        """The process's ASGI app: Socket.IO at /socket.io, everything else to ``app``."""
        install(app, self.api)
        from iotmon.roles.http import counter

        self.live.app.other_asgi_app = AnswerReplay(
            app,
            lifetime_s=self.api.answers.lifetime_s,
            authorize=self.api.may_read,
            gate=self.api.rate_limit.admit,
            # What the stack's own observers would have seen of these requests.
            observers=[metrics.observe, counter(self.services)],
        )
        return self.live.app


def build(services: Services) -> WebRole:
    return WebRole(services)

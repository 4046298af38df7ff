"""For the routers still built by a factory over a shared object (``router(api)``: alerts,
readings, analytics): that object, on the process's ``ApiState``. The others are
module-level and use web/deps.py."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
from fastapi import Request, Response

from iotmon.alerts.engine import AlertEngine
from iotmon.devices import service as devices
from iotmon.users.models import Principal
from iotmon.web import deps
from iotmon.web.state import ApiState


class RouterApi:
    def __init__(self, state: ApiState | None) -> None:
        self._state = state

    @property
    def state(self) -> ApiState:
        assert self._state is not None, "routes only run with the web role's state"
        return self._state

    def require(self, role: str) -> Callable[..., Awaitable[Principal]]:
        return deps.require(role)

    @property
    def pool(self) -> Any:
        return self.state.pool

    @property
    def redis(self) -> Any:
        return self.state.redis

    @property
    def settings(self) -> Any:
        return self.state.settings

    @property
    def log(self) -> Any:
        return self.state.log

    @property
    def namespace(self) -> str:
        return self.state.namespace

    async def cached(
        self, request: Request, key: str, compute: Callable[[], Awaitable[Response]], *, role: str
    ) -> Response:
        return await self.state.answers.get(request, key, compute, role=role)

    async def device_row(
        self, conn: psycopg.AsyncConnection[Any], device_id: str
    ) -> dict[str, Any]:
        return await devices.get_row(conn, device_id)

    async def live_state(
        self, device_ids: list[str], windows: tuple[str, ...] = ("24h",)
    ) -> dict[str, dict[str, Any]]:
        return await devices.live_state(self.state.redis, device_ids, windows)

    @contextlib.asynccontextmanager
    async def alert_engine(self) -> AsyncIterator[AlertEngine]:
        async with deps.alert_engine(self.state) as engine:
            yield engine

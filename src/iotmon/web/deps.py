"""FastAPI dependencies of the API's endpoints: the process's ``ApiState`` and its parts (the
database pool, Redis, the settings), the caller (``require(role)``), and the alert engine for
operators' actions. Endpoints declare what they need::

    @router.get("/things", dependencies=[VIEWER])
    async def things(pool: Pool) -> Response: ...
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

import psycopg
import redis.asyncio as aioredis
from fastapi import Depends, Request
from psycopg_pool import AsyncConnectionPool

from iotmon.alerts.config import rule_config
from iotmon.alerts.engine import AlertEngine
from iotmon.config import Settings
from iotmon.metrics import REDIS_ERRORS
from iotmon.users.models import ROLES, AuthError, Principal
from iotmon.web import auth
from iotmon.web.envelope import ApiError
from iotmon.web.state import ApiState


async def get_state(request: Request) -> ApiState:  # async: no thread pool hop
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]


# Each reads the state itself rather than depending on get_state: one dependency to solve
# per request instead of two (the uncached endpoints' whole stack is a few of them).
async def get_pool(request: Request) -> AsyncConnectionPool[Any]:
    pool: AsyncConnectionPool[Any] = request.app.state.api.pool
    return pool


async def get_redis(request: Request) -> aioredis.Redis:
    redis: aioredis.Redis = request.app.state.api.redis
    return redis


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.api.settings
    return settings


Pool = Annotated[AsyncConnectionPool[Any], Depends(get_pool)]
Redis = Annotated[aioredis.Redis, Depends(get_redis)]
ApiSettings = Annotated[Settings, Depends(get_settings)]


async def principal(request: Request) -> Principal:
    """The caller: a valid bearer token of a current session."""
    state: ApiState = request.app.state.api
    token = auth.bearer(request.headers.get("authorization"))
    try:
        who = state.tokens.verify(token)
    except AuthError as exc:
        raise ApiError(401, "unauthorized", str(exc), WWW_Authenticate="Bearer") from None
    if not await state.sessions.current(who):
        raise ApiError(
            401,
            "unauthorized",
            "the session has ended (logged out, or the user was changed): log in again",
            WWW_Authenticate="Bearer",
        )
    return who


def _check(role: str) -> Callable[..., Awaitable[Principal]]:
    async def check(request: Request) -> Principal:
        who = await principal(request)
        if not who.can(role):
            raise ApiError(
                403, "forbidden", f"this needs the {role} role; {who.username} is {who.role}"
            )
        return who

    return check


_CHECKS = {role: _check(role) for role in ROLES}


def require(role: str) -> Callable[..., Awaitable[Principal]]:
    """The dependency that lets in callers with ``role`` or above (403 otherwise)."""
    return _CHECKS[role]


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]
VIEWER = Depends(require("viewer"))  # for ``dependencies=[...]``
OPERATOR = Depends(require("operator"))
ADMIN = Depends(require("admin"))


@contextlib.asynccontextmanager
async def alert_engine(state: ApiState) -> AsyncIterator[AlertEngine]:
    """The alert engine on a pooled connection, for operator actions: the change is stored,
    mirrored, announced and notified as the alerts role's own are."""

    async def emit(event: str, payload: dict[str, Any], room: str) -> None:
        assert state.publisher is not None
        try:
            await state.publisher.emit(event, payload, room)
        except aioredis.RedisError as exc:  # live events are best effort
            REDIS_ERRORS.labels("web").inc()
            state.log.warning("socket.io emit failed", socket_event=event, error=str(exc))

    assert state.notifier is not None, "ApiState.start() makes the notifier"
    conn: psycopg.AsyncConnection[Any]
    async with state.pool.connection() as conn:
        yield AlertEngine(
            conn=conn,
            redis=state.redis,
            notifier=state.notifier,
            config=rule_config(state.settings),
            emit=emit,
        )

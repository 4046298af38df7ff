"""The REST API's frame: envelope and errors (DESIGN.md 4.7), bearer-token auth with roles,
the rate limit shared through Redis, security headers, CORS; and ``POST /api/auth/token``.
The endpoints themselves live beside their domain (devices/, readings/, alerts/, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, Literal

import orjson
import psycopg
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from iotmon import __version__
from iotmon import logging as log
from iotmon.readings.models import DEVICE_ID
from iotmon.roles.runtime import Services
from iotmon.timefmt import iso_utc
from iotmon.web import auth
from iotmon.web.asgi import SHAREABLE, Observe
from iotmon.web.health import health

DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID.pattern, description="e.g. device-001")]
DeviceIdQuery = Annotated[str | None, Query(alias="deviceId", pattern=DEVICE_ID.pattern)]

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    "Content-Security-Policy": (
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
        "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'"
    ),
}
_SECURITY_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
# Swagger UI loads its script and styles from a CDN: its page gets a looser policy.
DOCS_PATHS = ("/api/docs", "/api/redoc")
IMMUTABLE = "public, max-age=31536000, immutable"


class ApiError(Exception):
    """An error answered in the envelope of DESIGN.md 4.7."""

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, **headers: str
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details
        self.headers = headers


HOT_CACHE_S = 1.0
_LIMITED = "iotmon.limited"  # a 429 decided by Api.admit, answered by the gate


def _copy(response: Response) -> Response:
    return Response(
        response.body,
        status_code=response.status_code,
        media_type=response.media_type,
        headers={"X-Cache": "hit"},
    )


def ok(data: Any, meta: dict[str, Any] | None = None, status: int = 200) -> Response:
    body: dict[str, Any] = {"success": True, "data": data}
    body["meta"] = {"timestamp": iso_utc(), **(meta or {})}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    body = {
        "success": False,
        "error": {"code": exc.code, "message": exc.message, "details": exc.details},
    }
    try:
        content = orjson.dumps(body)
    except orjson.JSONEncodeError:  # e.g. a lone surrogate echoed from the request
        content = json.dumps(body, ensure_ascii=True, default=str).encode()
    return Response(
        content,
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers or None,
    )


class Envelope(BaseModel):
    """``{"success", "data", "meta"}``; each endpoint's model narrows ``data``."""

    success: bool
    data: Any
    meta: dict[str, Any]


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorEnvelope(BaseModel):
    success: bool
    error: ErrorBody


COMMON_ERRORS = {
    401: "no token, or an invalid or expired one",
    403: "the user's role does not allow this",
    422: "invalid parameters or body (the message names each field)",
    429: "more requests than the rate limit allows; see Retry-After",
}


def errors(described: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for error codes, each with the error envelope as its schema."""
    return {
        code: {"model": ErrorEnvelope, "description": text}
        for code, text in (COMMON_ERRORS | (described or {})).items()
    }


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class NewUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(pattern=auth.USERNAME.pattern)
    password: str = Field(min_length=8, max_length=256)
    role: Literal["viewer", "operator", "admin"] = "viewer"


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["viewer", "operator", "admin"]


class TokenOut(BaseModel):
    accessToken: str
    tokenType: str
    expiresAt: str
    username: str
    role: str


class TokenEnvelope(BaseModel):
    success: bool
    data: TokenOut
    meta: dict[str, Any]


class Api:
    """What every endpoint shares; built once per web process."""

    def __init__(
        self, services: Services, pool: AsyncConnectionPool[Any], tokens: auth.Tokens
    ) -> None:
        assert services.redis_url is not None
        self.services = services
        self.settings = services.settings
        self.pool = pool
        self.tokens = tokens
        self.redis = aioredis.Redis.from_url(services.redis_url)
        self.log = log.get("iotmon.web")
        # Caches are per deployment, and a deployment is its database: two sharing a Redis
        # (or two test runs) never read each other's cached answers.
        self.namespace = hashlib.sha256((services.database_url or "").encode()).hexdigest()[:12]
        self._hot: dict[str, tuple[float, Response]] = {}
        self._inflight: dict[str, asyncio.Future[Response]] = {}
        self.notifier: Any = None
        self.publisher: Any = None

    async def start(self) -> None:
        from iotmon.alerts.notify import Notifier
        from iotmon.realtime.publish import AsyncLivePublisher, Encoder
        from iotmon.roles.alerts import notify_config

        s = self.settings
        self.notifier = Notifier(notify_config(s), resolutions_always=True)
        self.publisher = AsyncLivePublisher(
            self.redis, Encoder(replay_size=s.live_replay_size, replay_ttl_s=s.live_replay_ttl_s)
        )

    @contextlib.asynccontextmanager
    async def alert_engine(self) -> AsyncIterator[Any]:
        """The alert engine on a pooled connection, for operator actions: the change is
        stored, mirrored, announced and notified as the alerts role's own are."""
        from iotmon.alerts.engine import AlertEngine
        from iotmon.roles.alerts import rule_config

        async def emit(event: str, payload: dict[str, Any], room: str) -> None:
            try:
                await self.publisher.emit(event, payload, room)
            except aioredis.RedisError as exc:  # live events are best effort
                self.log.warning("socket.io emit failed", socket_event=event, error=str(exc))

        async with self.pool.connection() as conn:
            yield AlertEngine(
                conn=conn,
                redis=self.redis,
                notifier=self.notifier,
                config=rule_config(self.settings),
                emit=emit,
            )

    # --- a one-second answer cache for the hottest reads ---
    async def cached(
        self,
        request: Request,
        key: str,
        compute: Callable[[], Awaitable[Response]],
        *,
        role: str,
    ) -> Response:
        """The same answer for ``HOT_CACHE_S`` to every caller asking ``key`` in this process,
        computed once even when many ask at the same moment (one database round for a wall
        of dashboards). Live values reach clients through Socket.IO; these answers are the
        starting point, a second old at most. Only 200 answers are kept. ``role`` is the
        least role that may read the answer: it is marked shareable, so that ``Replay``
        (web/asgi.py) answers repeats of the same request without the framework."""
        now = time.monotonic()
        hit = self._hot.get(key)
        if hit is not None and now - hit[0] < HOT_CACHE_S:
            request.scope[SHAREABLE] = (role, hit[0])
            return _copy(hit[1])
        pending = self._inflight.get(key)
        if pending is None:
            pending = asyncio.ensure_future(compute())
            self._inflight[key] = pending
            try:
                response = await pending
            finally:
                self._inflight.pop(key, None)
            if response.status_code == 200:
                if len(self._hot) >= 256:  # drop what has expired; a flood: all
                    self._hot = {k: v for k, v in self._hot.items() if now - v[0] < HOT_CACHE_S}
                    if len(self._hot) >= 1000:
                        self._hot.clear()
                born = time.monotonic()
                self._hot[key] = (born, response)
                request.scope[SHAREABLE] = (role, born)
            return response
        response = _copy(await asyncio.shield(pending))
        if response.status_code == 200:
            request.scope[SHAREABLE] = (role, now)
        return response

    def may_read(self, authorization: str | None, role: str) -> bool:
        """Whether the ``Authorization`` header's token is valid and has ``role``."""
        try:
            return self.tokens.verify(auth.bearer(authorization)).can(role)
        except auth.AuthError:
            return False

    async def admit(self, scope: Any) -> bool:
        """The rate limit for a request ``Replay`` would answer: True when within it. Over
        it, the 429 is kept in the scope for the gate in the full stack, which answers it
        (the request is counted once)."""
        answer = await self._rate_limit(scope)
        if answer is None:
            return True
        scope[_LIMITED] = answer
        return False

    # --- shared lookups ---
    async def device_row(
        self, conn: psycopg.AsyncConnection[Any], device_id: str
    ) -> dict[str, Any]:
        from iotmon.devices import service

        try:
            return await service.get_row(conn, device_id)
        except service.DeviceNotFound as exc:
            raise ApiError(404, "not_found", str(exc)) from None

    async def live_state(
        self, device_ids: list[str], windows: tuple[str, ...] = ("24h",)
    ) -> dict[str, dict[str, Any]]:
        """Live state from Redis; when Redis is down, the API still answers from
        PostgreSQL, without live values."""
        from iotmon.devices import service

        try:
            return await service.live(self.redis, device_ids, windows=windows)
        except aioredis.RedisError as exc:
            self.log.warning("redis unavailable: answering without live state", error=str(exc))
            empty = {"current": None, "lastSeen": None} | {f"stats{w}": None for w in windows}
            return {d: dict(empty) for d in device_ids}

    async def close(self) -> None:
        if self.notifier is not None:
            await self.notifier.close()
        await self.redis.aclose()

    # --- dependencies ---
    def principal(self, request: Request) -> auth.Principal:
        token = auth.bearer(request.headers.get("authorization"))
        try:
            return self.tokens.verify(token)
        except auth.AuthError as exc:
            raise ApiError(401, "unauthorized", str(exc), WWW_Authenticate="Bearer") from None

    def require(self, role: str) -> Callable[[Request], Awaitable[auth.Principal]]:
        async def check(request: Request) -> auth.Principal:  # async: no thread pool hop
            who = self.principal(request)
            if not who.can(role):
                raise ApiError(
                    403,
                    "forbidden",
                    f"this needs the {role} role; {who.username} is {who.role}",
                )
            return who

        return check

    # --- the app ---
    def install(self, app: FastAPI) -> None:
        settings = self.settings
        # JSON answers, CSV exports and the dashboard's files compress 3-5x (the Overview's
        # code: 501 KiB -> 160 KiB). Socket.IO is outside this app: not affected.
        app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=5)
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
        )

        from iotmon.web import metrics

        def headers(scope: Any) -> list[tuple[bytes, bytes]]:
            return [] if scope["path"].startswith(DOCS_PATHS) else _SECURITY_HEADERS

        app.add_middleware(
            Observe,
            observers=[metrics.observe],
            gate=self._rate_limit,
            headers=headers,
        )
        self._serve_dashboard(app)

        @app.exception_handler(ApiError)
        async def api_error(request: Request, exc: ApiError) -> Response:
            return error_response(exc)

        @app.exception_handler(RequestValidationError)
        async def invalid(request: Request, exc: RequestValidationError) -> Response:
            problems = [
                {
                    "field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"),
                    "message": e.get("msg", "invalid"),
                }
                for e in exc.errors()
            ]
            summary = "; ".join(f"{p['field']}: {p['message']}" for p in problems)
            return error_response(
                ApiError(422, "validation_error", f"invalid request: {summary}", problems)
            )

        @app.exception_handler(UnicodeEncodeError)
        async def not_unicode(request: Request, exc: UnicodeEncodeError) -> Response:
            # JSON allows "\udaf4" (half a character); text stored or sent on must not.
            return error_response(
                ApiError(422, "validation_error", "text must be valid Unicode (no lone surrogates)")
            )

        @app.exception_handler(psycopg.DataError)
        async def bad_data(request: Request, exc: psycopg.DataError) -> Response:
            # What PostgreSQL cannot hold (a NUL character, a number out of its range) is the
            # request's fault, not the server's.
            return error_response(ApiError(422, "validation_error", f"invalid value: {exc}"))

        @app.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
            message = (
                f"no such endpoint: {request.method} {request.url.path}"
                if exc.status_code in (404, 405)
                else str(exc.detail)
            )
            return error_response(ApiError(exc.status_code, code, message))

    def _serve_dashboard(self, app: FastAPI) -> None:
        """The built dashboard (``dashboard/dist``) at ``/``; client-side routes
        (``/devices/device-001``) get ``index.html``."""
        dist = self.settings.dashboard_dir
        if dist is None or not (dist / "index.html").is_file():
            return
        from fastapi.staticfiles import StaticFiles

        class Assets(StaticFiles):
            """Vite names each file by its content's hash: a name never changes content, so
            browsers keep them for a year; ``index.html`` (which names them) is revalidated."""

            def file_response(self, *args: Any, **kwargs: Any) -> Response:
                response = super().file_response(*args, **kwargs)
                if response.status_code == 200:
                    response.headers["Cache-Control"] = IMMUTABLE
                return response

        app.mount("/assets", Assets(directory=dist / "assets", check_dir=False), "assets")
        index = (dist / "index.html").read_bytes()

        @app.get("/{path:path}", include_in_schema=False)
        async def spa(path: str) -> Response:
            if path.startswith(("api/", "socket.io")):
                raise StarletteHTTPException(404)
            candidate = (dist / path).resolve()
            if path and candidate.is_file() and candidate.is_relative_to(dist.resolve()):
                from fastapi.responses import FileResponse

                return FileResponse(candidate)
            return Response(index, media_type="text/html", headers={"Cache-Control": "no-cache"})

    async def _rate_limit(self, scope: Any) -> Response | None:
        """A fixed one-minute window per client address, counted in Redis so every web
        process shares it. Health, metrics and Socket.IO are not limited."""
        limited = scope.pop(_LIMITED, None)
        if limited is not None:  # counted already, by admit()
            return limited  # type: ignore[no-any-return]
        limit = self.settings.rate_limit_per_minute
        path = scope["path"]
        if not limit or not path.startswith("/api/") or path == "/api/health":
            return None
        client = scope["client"][0] if scope.get("client") else "unknown"
        now = time.time()
        window = int(now // 60)
        key = f"ratelimit:{client}:{window}"
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 61)
            count, _ = await pipe.execute()
        except aioredis.RedisError:
            return None  # the limiter fails open: Redis down must not take the API down
        if int(count) > limit:
            retry = max(1, int((window + 1) * 60 - now) + 1)
            return error_response(
                ApiError(
                    429,
                    "rate_limited",
                    f"more than {limit} requests a minute from {client}: retry in {retry} s",
                    {"limit": limit, "retryAfterS": retry},
                    **{"Retry-After": str(retry), "X-RateLimit-Limit": str(limit)},
                )
            )
        return None

    def routers(self) -> list[APIRouter]:
        router = APIRouter(prefix="/api", tags=["auth"], responses=errors())

        @router.post(
            "/auth/token",
            response_model=TokenEnvelope,
            responses=errors({401: "wrong user name or password"}),
        )
        async def token(body: Credentials) -> Response:
            """Log in with ``{"username", "password"}``; the token goes in
            ``Authorization: Bearer <token>`` and in the Socket.IO ``auth`` payload."""
            async with self.pool.connection() as conn:
                try:
                    who = await _authenticate(conn, body.username, body.password)
                except auth.AuthError as exc:
                    raise ApiError(401, "unauthorized", str(exc)) from None
            access, exp = self.tokens.issue(who)
            return ok(
                {
                    "accessToken": access,
                    "tokenType": "bearer",
                    "expiresAt": iso_utc(exp),
                    "username": who.username,
                    "role": who.role,
                }
            )

        admin = Depends(self.require("admin"))

        @router.get(
            "/health", tags=["system"], responses={503: {"description": "unhealthy, same body"}}
        )
        async def api_health() -> Response:
            """DESIGN.md 6: PostgreSQL and Redis checked with their response times; 503 when
            one is down."""
            code, body = await health(
                bus=None,
                database_url=self.services.database_url,
                redis_url=self.services.redis_url,
                started_at=self.services.started_at,
                window=self.services.requests,
            )
            return Response(orjson.dumps(body), status_code=code, media_type="application/json")

        @router.get("/status", tags=["system"], response_model=Envelope)
        async def status(who: auth.Principal = Depends(self.require("viewer"))) -> Response:  # noqa: B008
            """What runs, what it holds: devices, open alerts, live event sequence, this
            process's Socket.IO clients."""
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT (SELECT count(*) FROM devices),"
                    " (SELECT count(*) FROM alerts WHERE status <> 'resolved'),"
                    " (SELECT count(*) FROM silences WHERE ends_at > now())"
                )
                row = await cur.fetchone()
            assert row is not None
            try:
                seq = int(await self.redis.get("live:seq") or 0)
            except aioredis.RedisError:
                seq = None
            return ok(
                {
                    "version": __version__,
                    "uptimeS": round(time.time() - self.services.started_at, 1),
                    "embedded": sorted(self.services.embedded),
                    "devices": int(row[0]),
                    "openAlerts": int(row[1]),
                    "activeSilences": int(row[2]),
                    "lastEventId": None if seq is None else str(seq),
                    "user": {"username": who.username, "role": who.role},
                }
            )

        @router.get("/users", tags=["users"], response_model=Envelope, dependencies=[admin])
        async def list_users() -> Response:
            """Users and their roles (admin)."""
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT username, role, created_at FROM users ORDER BY username"
                )
                rows = await cur.fetchall()
            return ok(
                {"users": [{"username": u, "role": r, "createdAt": iso_utc(c)} for u, r, c in rows]}
            )

        @router.post(
            "/users", tags=["users"], response_model=Envelope, status_code=201, dependencies=[admin]
        )
        async def create_user(body: NewUser) -> Response:
            """Create a user (admin)."""
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT 1 FROM users WHERE username = %s", (body.username,)
                )
                if await cur.fetchone():
                    raise ApiError(409, "conflict", f"user {body.username!r} exists already")
                hashed = await asyncio.to_thread(auth.hash_password, body.password)
                await conn.execute(
                    "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)"
                    " ON CONFLICT (username) DO NOTHING",
                    (body.username, hashed, body.role),
                )
            return ok({"username": body.username, "role": body.role}, status=201)

        @router.put("/users/{username}/role", tags=["users"], response_model=Envelope)
        async def set_user_role(
            username: Annotated[str, Path(pattern=auth.USERNAME.pattern)],
            body: RoleChange,
            who: auth.Principal = admin,
        ) -> Response:
            """Change a user's role (admin); it applies to tokens issued from now on."""
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "UPDATE users SET role = %s, updated_at = now() WHERE username = %s",
                    (body.role, username),
                )
            if cur.rowcount == 0:
                raise ApiError(404, "not_found", f"user {username!r} does not exist")
            return ok({"username": username, "role": body.role})

        from iotmon.alerts import routes as alert_routes
        from iotmon.devices import routes as device_routes
        from iotmon.readings import routes as reading_routes
        from iotmon.web import analytics, metrics

        return [
            router,
            device_routes.router(self),
            reading_routes.router(self),
            alert_routes.router(self),
            metrics.router(self),
            analytics.router(self),
        ]

    def dependency(self, role: str) -> Any:
        return Depends(self.require(role))


async def _authenticate(
    conn: psycopg.AsyncConnection[Any], username: str, password: str
) -> auth.Principal:
    """argon2 takes ~50 ms of CPU on purpose: off the event loop."""
    cur = await conn.execute(
        "SELECT password_hash, role FROM users WHERE username = %s", (username,)
    )
    row = await cur.fetchone()
    return await asyncio.to_thread(auth.verify_password, username, row, password)

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
from iotmon.metrics import REDIS_ERRORS
from iotmon.readings.models import DEVICE_ID
from iotmon.roles.runtime import Services
from iotmon.timefmt import iso_utc
from iotmon.web import auth, login
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
# Swagger UI and ReDoc load pinned scripts (with integrity) from a CDN: their pages set a
# policy of their own (web/docs.py).
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


class ApiCors(CORSMiddleware):
    """CORS for the REST API only: nothing else of the process (the simulator's control
    endpoint, /health, /metrics) is ever approved for another origin."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


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


class PasswordChange(BaseModel):
    """A new password; ``currentPassword`` is needed when changing one's own (an admin
    setting another user's does not give it)."""

    model_config = ConfigDict(extra="forbid")
    password: str = Field(min_length=8, max_length=256)
    currentPassword: str | None = Field(default=None, max_length=256)


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
        self.trusted_proxies = login.parse_networks(self.settings.trusted_proxies)
        self.hashing = login.Hashing()
        self.backoff = login.Backoff(self.redis, self.namespace)
        self.sessions = auth.Sessions(pool)
        auth.use_sessions(self.sessions)

    def client(self, scope: Any) -> str:
        """The client's address (X-Forwarded-For only from IOTMON_TRUSTED_PROXIES)."""
        return login.client_address(scope, self.trusted_proxies)

    async def revoked(self, username: str) -> None:
        """After a change that ended ``username``'s sessions: forget what this process knew of
        them, and tell every Socket.IO server to disconnect that user's sockets."""
        self.sessions.forget(username)
        try:
            await self.redis.publish(auth.REVOKED_CHANNEL, auth.revoked_message(username))
        except aioredis.RedisError as exc:
            self.log.warning("revocation not published", user=username, error=str(exc))

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
                REDIS_ERRORS.labels("web").inc()
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

    async def may_read(self, authorization: str | None, role: str) -> bool:
        """Whether the ``Authorization`` header's token is valid, current and has ``role``."""
        try:
            who = self.tokens.verify(auth.bearer(authorization))
        except auth.AuthError:
            return False
        return who.can(role) and await self.sessions.current(who)

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
            REDIS_ERRORS.labels("web").inc()
            self.log.warning("redis unavailable: answering without live state", error=str(exc))
            empty = {"current": None, "lastSeen": None} | {f"stats{w}": None for w in windows}
            return {d: dict(empty) for d in device_ids}

    async def close(self) -> None:
        if self.notifier is not None:
            await self.notifier.close()
        self.hashing.close()
        await self.redis.aclose()

    # --- dependencies ---
    async def principal(self, request: Request) -> auth.Principal:
        token = auth.bearer(request.headers.get("authorization"))
        try:
            who = self.tokens.verify(token)
        except auth.AuthError as exc:
            raise ApiError(401, "unauthorized", str(exc), WWW_Authenticate="Bearer") from None
        if not await self.sessions.current(who):
            raise ApiError(
                401,
                "unauthorized",
                "the session has ended (logged out, or the user was changed): log in again",
                WWW_Authenticate="Bearer",
            )
        return who

    def require(self, role: str) -> Callable[[Request], Awaitable[auth.Principal]]:
        async def check(request: Request) -> auth.Principal:  # async: no thread pool hop
            who = await self.principal(request)
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
            ApiCors,
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

        @app.exception_handler(OverflowError)
        async def overflow(request: Request, exc: OverflowError) -> Response:
            # A date at the edge of the calendar (0001-01-01 minus a day, 9999-12-31 plus
            # an offset) is out of range: the request's fault.
            return error_response(
                ApiError(422, "validation_error", "a value is out of range (a date too far?)")
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
            if path.startswith(("api/", "socket.io")) or "\x00" in path:
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
        client = self.client(scope)
        now = time.time()
        window = int(now // 60)
        key = f"ratelimit:{client}:{window}"
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.incr(key)
            pipe.expire(key, 61)
            count, _ = await pipe.execute()
        except aioredis.RedisError:
            REDIS_ERRORS.labels("web").inc()
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
        async def token(body: Credentials, request: Request) -> Response:
            """Log in with ``{"username", "password"}``; the token goes in
            ``Authorization: Bearer <token>`` and in the Socket.IO ``auth`` payload.
            Repeated failures lock the account, and the client address, out for a while
            (429 with Retry-After); too many logins at once are answered 503."""
            address = self.client(request.scope)
            wait = await self.backoff.wait_s(body.username, address)
            if wait:
                raise _locked(wait)
            # The row is read on a pooled connection given back at once: argon2 runs on no
            # connection, in a thread pool of its own (web/login.py).
            async with self.pool.connection() as conn:
                cur = await conn.execute(auth.USER_ROW, (body.username,))
                row = await cur.fetchone()
            try:
                who = await self.hashing.run(
                    auth.verify_password, body.username, row, body.password
                )
            except login.Busy:
                raise ApiError(
                    503,
                    "busy",
                    "too many logins at once: retry in a second",
                    **{"Retry-After": "1"},
                ) from None
            except auth.AuthError as exc:
                lock = await self.backoff.failed(body.username, address)
                if lock:
                    self.log.warning(
                        "login locked out", user=body.username, address=address, s=lock
                    )
                raise ApiError(401, "unauthorized", str(exc)) from None
            await self.backoff.succeeded(body.username, address)
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

        @router.post("/auth/logout", response_model=Envelope)
        async def logout(
            who: auth.Principal = Depends(self.require("viewer")),  # noqa: B008
        ) -> Response:
            """End every session of the caller: this token and any other of the same user stop
            working (REST at once, Socket.IO sockets are disconnected)."""
            async with self.pool.connection() as conn:
                await conn.execute(auth.REVOKE, (who.username,))
            await self.revoked(who.username)
            return ok({"username": who.username, "loggedOut": True})

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
                probes=self.services.probes,
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
            hashed = await self._hash(body.password)  # on no connection
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "INSERT INTO users (username, password_hash, role) VALUES (%s, %s, %s)"
                    " ON CONFLICT (username) DO NOTHING",
                    (body.username, hashed, body.role),
                )
            if cur.rowcount == 0:
                raise ApiError(409, "conflict", f"user {body.username!r} exists already")
            return ok({"username": body.username, "role": body.role}, status=201)

        @router.put("/users/{username}/role", tags=["users"], response_model=Envelope)
        async def set_user_role(
            username: Annotated[str, Path(pattern=auth.USERNAME.pattern)],
            body: RoleChange,
            who: auth.Principal = admin,
        ) -> Response:
            """Change a user's role (admin); the user's sessions end (log in again)."""
            async with self.pool.connection() as conn:
                cur = await conn.execute(auth.SET_ROLE, (body.role, body.role, username))
            if cur.rowcount == 0:
                raise ApiError(404, "not_found", f"user {username!r} does not exist")
            await self.revoked(username)
            return ok({"username": username, "role": body.role})

        @router.delete(
            "/users/{username}",
            tags=["users"],
            response_model=Envelope,
            responses=errors({404: "no such user", 409: "deleting oneself"}),
        )
        async def delete_user(
            username: Annotated[str, Path(pattern=auth.USERNAME.pattern)],
            who: auth.Principal = admin,
        ) -> Response:
            """Delete a user (admin); the user's sessions end at once."""
            if username == who.username:
                raise ApiError(409, "conflict", "an admin cannot delete their own user")
            async with self.pool.connection() as conn:
                cur = await conn.execute(auth.DELETE, (username,))
            if cur.rowcount == 0:
                raise ApiError(404, "not_found", f"user {username!r} does not exist")
            await self.revoked(username)
            return ok({"deleted": username})

        @router.put(
            "/users/{username}/password",
            tags=["users"],
            response_model=Envelope,
            responses=errors({404: "no such user", 503: "too many password hashes at once"}),
        )
        async def set_password(
            username: Annotated[str, Path(pattern=auth.USERNAME.pattern)],
            body: PasswordChange,
            request: Request,
            who: auth.Principal = Depends(self.require("viewer")),  # noqa: B008
        ) -> Response:
            """Change a password: one's own (with ``currentPassword``), or anyone's (admin).
            Every session of that user ends."""
            if username != who.username and not who.can("admin"):
                raise ApiError(403, "forbidden", "only an admin changes another user's password")
            if username == who.username and not who.can("admin"):
                if body.currentPassword is None:
                    raise ApiError(422, "validation_error", "currentPassword is required")
                address = self.client(request.scope)
                wait = await self.backoff.wait_s(username, address)
                if wait:
                    raise _locked(wait)
                async with self.pool.connection() as conn:
                    cur = await conn.execute(auth.USER_ROW, (username,))
                    row = await cur.fetchone()
                try:
                    await self.hashing.run(
                        auth.verify_password, username, row, body.currentPassword
                    )
                except login.Busy:
                    raise ApiError(
                        503, "busy", "retry in a second", **{"Retry-After": "1"}
                    ) from None
                except auth.AuthError:
                    await self.backoff.failed(username, address)
                    raise ApiError(403, "forbidden", "currentPassword is wrong") from None
            hashed = await self._hash(body.password)
            async with self.pool.connection() as conn:
                cur = await conn.execute(auth.SET_HASH, (hashed, username))
            if cur.rowcount == 0:
                raise ApiError(404, "not_found", f"user {username!r} does not exist")
            await self.revoked(username)
            return ok({"username": username, "passwordChanged": True})

        from iotmon.alerts import routes as alert_routes
        from iotmon.devices import routes as device_routes
        from iotmon.mqtt import routes as mqtt_routes
        from iotmon.profiles import routes as profile_routes
        from iotmon.readings import routes as reading_routes
        from iotmon.web import analytics, metrics

        return [
            router,
            device_routes.router(self),
            reading_routes.router(self),
            alert_routes.router(self),
            metrics.router(self),
            analytics.router(self),
            profile_routes.router(self),
            profile_routes.device_router(self),
            mqtt_routes.router(self),
        ]

    def dependency(self, role: str) -> Any:
        return Depends(self.require(role))

    async def _hash(self, password: str) -> str:
        try:
            return await self.hashing.run(auth.hash_password, password)
        except login.Busy:
            raise ApiError(
                503,
                "busy",
                "too many password hashes at once: retry in a second",
                **{"Retry-After": "1"},
            ) from None


def _locked(wait: int) -> ApiError:
    return ApiError(
        429,
        "locked_out",
        f"too many failed logins: retry in {wait} s",
        {"retryAfterS": wait},
        **{"Retry-After": str(wait)},
    )

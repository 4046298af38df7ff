"""The REST API's frame: envelope and errors (DESIGN.md 4.7), bearer-token auth with roles,
the rate limit shared through Redis, security headers, CORS; and ``POST /api/auth/token``.
The endpoints themselves live beside their domain (devices/, readings/, alerts/, ...)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import psycopg
import redis.asyncio as aioredis
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from iotmon.roles.runtime import Services
from iotmon.timefmt import iso_utc
from iotmon.web import auth

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
# Swagger UI loads its script and styles from a CDN: its page gets a looser policy.
DOCS_PATHS = ("/api/docs", "/api/redoc")


class ApiError(Exception):
    """An error answered in the envelope of DESIGN.md 4.7."""

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, **headers: str
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details
        self.headers = headers


def ok(data: Any, meta: dict[str, Any] | None = None, status: int = 200) -> Response:
    body: dict[str, Any] = {"success": True, "data": data}
    body["meta"] = {"timestamp": iso_utc(), **(meta or {})}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def error_response(exc: ApiError) -> Response:
    body = {
        "success": False,
        "error": {"code": exc.code, "message": exc.message, "details": exc.details},
    }
    return Response(
        orjson.dumps(body),
        status_code=exc.status,
        media_type="application/json",
        headers=exc.headers or None,
    )


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


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

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.redis.aclose()

    # --- dependencies ---
    def principal(self, request: Request) -> auth.Principal:
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else None
        try:
            return self.tokens.verify(token)
        except auth.AuthError as exc:
            raise ApiError(401, "unauthorized", str(exc), WWW_Authenticate="Bearer") from None

    def require(self, role: str) -> Callable[[Request], auth.Principal]:
        def check(request: Request) -> auth.Principal:
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
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            expose_headers=["Retry-After", "X-RateLimit-Limit", "X-RateLimit-Remaining"],
        )

        @app.middleware("http")
        async def frame(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            limited = await self._rate_limit(request)
            if limited is not None:
                return limited
            response = await call_next(request)
            if not request.url.path.startswith(DOCS_PATHS):
                for name, value in SECURITY_HEADERS.items():
                    response.headers.setdefault(name, value)
            return response

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

        @app.exception_handler(StarletteHTTPException)
        async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
            message = (
                f"no such endpoint: {request.method} {request.url.path}"
                if exc.status_code in (404, 405)
                else str(exc.detail)
            )
            return error_response(ApiError(exc.status_code, code, message))

    async def _rate_limit(self, request: Request) -> Response | None:
        """A fixed one-minute window per client address, counted in Redis so every web
        process shares it. Health, metrics and Socket.IO are not limited."""
        limit = self.settings.rate_limit_per_minute
        path = request.url.path
        if not limit or not path.startswith("/api/") or path == "/api/health":
            return None
        client = request.client.host if request.client else "unknown"
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
        router = APIRouter(prefix="/api", tags=["auth"])

        @router.post(
            "/auth/token",
            response_model=TokenEnvelope,
            responses={401: {"description": "wrong user name or password"}},
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

        return [router]

    def dependency(self, role: str) -> Any:
        return Depends(self.require(role))


async def _authenticate(
    conn: psycopg.AsyncConnection[Any], username: str, password: str
) -> auth.Principal:
    """argon2 takes ~50 ms of CPU on purpose: off the event loop."""
    import asyncio

    cur = await conn.execute(
        "SELECT password_hash, role FROM users WHERE username = %s", (username,)
    )
    row = await cur.fetchone()
    return await asyncio.to_thread(auth.verify_password, username, row, password)

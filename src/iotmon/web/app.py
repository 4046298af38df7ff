"""The REST API assembled: its routers (web/routers.py) with the middleware every answer
passes through (compression, CORS for ``/api`` only, security headers, the rate limit,
request metrics), the error answers (web/errors.py) and the built dashboard.

Where things are: the envelope and ``ApiError`` in web/envelope.py; what endpoints depend
on (pool, Redis, ``require(role)``) in web/deps.py; the per-process state in web/state.py;
the endpoints beside their domain (``devices/routes.py``, ``users/routes.py``, ...), their
SQL in the domain's ``service.py``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware

from iotmon import __version__
from iotmon.web import dashboard, errors, metrics
from iotmon.web.asgi import Observe
from iotmon.web.docs import OPENAPI_URL
from iotmon.web.routers import ROUTERS
from iotmon.web.state import ApiState

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


class ApiCors(CORSMiddleware):
    """CORS for the REST API only: nothing else of the process (the simulator's control
    endpoint, /health, /metrics) is ever approved for another origin."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/api/"):
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


def _headers(scope: Any) -> list[tuple[bytes, bytes]]:
    return [] if scope["path"].startswith(DOCS_PATHS) else _SECURITY_HEADERS


def install(app: FastAPI, state: ApiState) -> None:
    """The API's middleware, error answers and the dashboard on ``app``, whose routes are
    in already (web/routers.py); ``state`` is what its endpoints share."""
    settings = state.settings
    app.state.api = state
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
    app.add_middleware(
        Observe,
        observers=[metrics.observe],
        gate=state.rate_limit.gate,
        headers=_headers,
    )
    dashboard.install(app, settings.dashboard_dir)
    errors.install(app)


def openapi() -> dict[str, Any]:
    """The API's OpenAPI document, without a server or a database (``npm run gen:api``)."""
    app = FastAPI(title="iotmon", version=__version__, openapi_url=OPENAPI_URL)
    for router in ROUTERS:
        app.include_router(router)
    return app.openapi()


if __name__ == "__main__":  # python -m iotmon.web.app: the OpenAPI document on stdout
    import json

    print(json.dumps(openapi(), indent=2, sort_keys=True))

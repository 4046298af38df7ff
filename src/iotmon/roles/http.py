"""The small HTTP app every role process serves: /health, /metrics, and role routes."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from typing import Any

import orjson
import uvicorn
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from iotmon import __version__
from iotmon.metrics import dependencies
from iotmon.roles import Role
from iotmon.roles.runtime import Services
from iotmon.web.asgi import BodyLimit, Observe, Observer
from iotmon.web.health import health

MAX_HEADER_BYTES = 64 << 10


def make_app(services: Services, roles: Sequence[Role], needs: set[str]) -> Any:
    """The process's ASGI app: FastAPI, wrapped by roles that serve more (Socket.IO)."""
    app = FastAPI(
        title="iotmon",
        version=__version__,
        docs_url=None,  # web/docs.py: pinned, with integrity, under a policy of their own
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    from iotmon.web import docs

    docs.install(app)

    app.add_middleware(Observe, observers=[counter(services)])

    @app.get("/health")
    async def get_health() -> Response:
        code, body = await health(
            bus=services.bus if "bus" in needs else None,
            database_url=services.database_url if "database" in needs else None,
            redis_url=services.redis_url if "redis" in needs else None,
            started_at=services.started_at,
            window=services.requests,
            roles={r.name: r.status() for r in roles},
            probes=services.probes,
        )
        return Response(orjson.dumps(body), status_code=code, media_type="application/json")

    @app.get("/metrics", include_in_schema=False)  # Prometheus text, not part of the API
    async def metrics() -> Response:
        # The dependencies as /health sees them (the same probes, kept a second), so a
        # database or Redis away is a series Prometheus can alert on.
        dependencies(
            await services.probes.check(
                services.bus if "bus" in needs else None,
                services.database_url if "database" in needs else None,
                services.redis_url if "redis" in needs else None,
            )
        )
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for role in roles:
        for router in role.routers():
            app.include_router(router)
    asgi: Any = app
    for role in roles:
        wrap = getattr(role, "wrap", None)
        if wrap is not None:
            asgi = wrap(asgi)
    return BodyLimit(asgi, services.settings.max_body_bytes)


def counter(services: Services) -> Observer:
    """The observer that counts requests (and 5xx) into the process's request window, which
    /health and /api/health report; the probes themselves are not counted."""

    def count(scope: Any, status: int, seconds: float) -> None:
        if scope["path"] not in ("/health", "/metrics", "/api/health"):
            services.requests.record(status >= 500)

    return count


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process's stop event rules."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(host: str, port: int) -> socket.socket:
    """Bind now, so a busy port is a clear error at start rather than a log line later."""
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # proto says TCP, and accepted sockets inherit ours. With proto 0, every answer on a
    # kept-alive connection waited 40 ms for the client's delayed ACK (44 ms instead of 3).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(
            f"cannot listen on http://{host}:{port}: {exc.strerror}. "
            f"Is another iotmon running? Set IOTMON_HTTP_PORT to use another port."
        ) from exc
    sock.listen(2048)
    return sock


def _limited_httptools(max_header_bytes: int) -> type[Any]:
    """uvicorn's httptools protocol with a bound on a request's line and headers: the parser
    keeps a header whole until it ends, so a 64 MB header was 64 MB in memory. Past the bound:
    431 and the connection is closed."""
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class Limited(HttpToolsProtocol):
        _head_bytes = 0
        _in_body = False

        def data_received(self, data: bytes) -> None:
            if self._in_body:
                super().data_received(data)
                return
            # Counted until the headers end; what one read brings (256 KiB at most) is parsed
            # first, as it may hold the end of the headers and the start of the body.
            self._head_bytes += len(data)
            super().data_received(data)
            if not self._in_body and self._head_bytes > max_header_bytes:
                self._refuse()

        def on_headers_complete(self) -> None:
            self._in_body = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            self._head_bytes = 0
            super().on_message_complete()

        def _refuse(self) -> None:
            if self.transport.is_closing():
                return
            msg = b"request headers too large"
            self.transport.write(
                b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
                b"content-length: "
                + str(len(msg)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + msg
            )
            self.transport.close()

    return Limited


async def serve(
    app: Any, sock: socket.socket, stop: Any, *, max_header_bytes: int = MAX_HEADER_BYTES
) -> None:
    try:
        import httptools  # noqa: F401

        http: Any = _limited_httptools(max_header_bytes)
    except ImportError:  # pragma: no cover
        http = "h11"
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        http=http,
        h11_max_incomplete_event_size=max_header_bytes,
        # X-Forwarded-For is for the app to weigh (IOTMON_TRUSTED_PROXIES, web/login.py):
        # uvicorn would believe it from any loopback peer.
        proxy_headers=False,
        server_header=False,
    )
    server = _Server(config)

    async def watch() -> None:
        await stop.wait()
        server.should_exit = True

    import asyncio

    watcher = asyncio.create_task(watch())
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()

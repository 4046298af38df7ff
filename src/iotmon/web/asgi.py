"""Plain ASGI middleware for what every request passes through. Starlette's
``@app.middleware("http")`` (BaseHTTPMiddleware) costs a task and a body stream per request:
three of them were most of a cached answer's 2 ms of CPU."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any, NamedTuple

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# (scope after the app ran: "route" is set; status; seconds)
Observer = Callable[[Scope, int, float], None]
# None to go on; else an ASGI app that answers instead (a 429, say)
Gate = Callable[[Scope], Awaitable[ASGIApp | None]]


class Observe:
    """Tell ``observers`` each HTTP request's status and duration; optionally ``gate`` it
    first and add ``headers`` (those the answer does not set itself) to every answer."""

    def __init__(
        self,
        app: ASGIApp,
        observers: list[Observer],
        *,
        gate: Gate | None = None,
        headers: Callable[[Scope], list[tuple[bytes, bytes]]] | None = None,
    ) -> None:
        self.app = app
        self.observers = observers
        self.gate = gate
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        extra = self.headers(scope) if self.headers else []

        async def observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if extra:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    message["headers"] = [
                        *message.get("headers", []),
                        *((n, v) for n, v in extra if n not in present),
                    ]
            await send(message)

        try:
            answer = await self.gate(scope) if self.gate else None
            await (answer or self.app)(scope, receive, observed)
        finally:
            seconds = time.perf_counter() - started
            for observer in self.observers:
                observer(scope, status, seconds)


# What an endpoint puts in the scope when its answer may be served again as it is:
# (the least role that may read it, time.monotonic() when its content was computed).
SHAREABLE = "iotmon.shareable"


class _Kept(NamedTuple):
    born: float  # time.monotonic() when the content was computed
    role: str  # the least role that may read it
    route: Any  # for the observers (the route template)
    start: Message
    body: Sequence[Message]
    size: int  # bytes of the body


class Replay:
    """Serve a shareable answer again, whole, for its last fraction of a second.

    The API's hottest reads (device list, dashboard figures, a fixed history range) are the
    same answer for a second to every caller (``Api.cached``). Still, each request went
    through routing, parameter validation, dependency injection, CORS and gzip to fetch it:
    ~250 us of CPU for an answer already known. This layer, outside the framework, keeps
    each such answer as it was sent (status, headers, body: after CORS and gzip), keyed by
    path, query, Origin and whether gzip is accepted, and answers a repeat within the
    answer's lifetime itself. What still happens on a repeat: the bearer token is checked
    against the role the endpoint needs (``authorize``), the rate limit is counted (``gate``;
    over the limit, the request goes through the whole stack, which answers 429), and the
    request is observed. Anything else, or any doubt, goes through the whole stack.

    When an answer expires, the next request computes it anew through the whole stack;
    while it does (at most ``stale_s``), the others still get the expired one."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        lifetime_s: float,
        authorize: Callable[[str | None, str], bool | Awaitable[bool]],
        gate: Callable[[Scope], Awaitable[bool]],
        observers: list[Observer],
        stale_s: float = 1.0,
        prefix: str = "/api/",
        max_kept: int = 1000,
        max_bytes: int = 64 << 20,
    ) -> None:
        self.app = app
        self.lifetime_s = lifetime_s
        self.authorize = authorize
        self.gate = gate
        self.observers = observers
        self.prefix = prefix
        self.max_kept = max_kept
        self.max_bytes = max_bytes
        self.size = 0  # bytes of the kept bodies
        self.stale_s = stale_s
        self.kept: dict[tuple[str, bytes, bool, bytes | None], _Kept] = {}
        self.refreshing: set[tuple[str, bytes, bool, bytes | None]] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not scope["path"].startswith(self.prefix)
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        authorization: str | None = None
        gzip = False
        origin: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"accept-encoding":
                gzip = b"gzip" in value
            elif name == b"origin":
                origin = value
        key = (scope["path"], scope["query_string"], gzip, origin)
        kept = self.kept.get(key)
        # Expired: one request goes through to compute the answer anew; until it has, the
        # others get the one before (stale-while-revalidate, RFC 5861), rather than all
        # queueing behind the computation once a second.
        age = time.monotonic() - kept.born if kept is not None else math.inf
        usable = age < self.lifetime_s or (
            key in self.refreshing and age < self.lifetime_s + self.stale_s
        )
        if kept is not None and usable and await self._authorized(authorization, kept.role):
            usable = await self.gate(scope)
        else:
            usable = False
        if kept is not None and usable:
            await send(kept.start)
            for message in kept.body:
                await send(message)
            scope["route"] = kept.route
            seconds = time.perf_counter() - started
            for observer in self.observers:
                observer(scope, 200, seconds)
            return

        sent: list[Message] = []

        async def keep(message: Message) -> None:
            sent.append(message)
            await send(message)

        refreshing = kept is not None and key not in self.refreshing
        if refreshing:
            self.refreshing.add(key)
        try:
            await self.app(scope, receive, keep)
        finally:
            if refreshing:
                self.refreshing.discard(key)
        shareable = scope.get(SHAREABLE)
        if (
            shareable is None
            or len(sent) < 2
            or sent[0].get("status") != 200
            or sent[-1].get("more_body", False)  # not the whole answer
        ):
            return
        start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                *((n, v) for n, v in sent[0].get("headers", []) if n.lower() != b"x-cache"),
                (b"x-cache", b"hit"),
            ],
        }
        body = [
            {"type": m["type"], "body": m.get("body", b""), "more_body": m.get("more_body", False)}
            for m in sent[1:]
        ]
        role, born = shareable
        size = sum(len(m["body"]) for m in body)
        answer = _Kept(born, role, scope.get("route"), start, body, size)
        self._make_room(key, answer.size)
        self.kept[key] = answer

    async def _authorized(self, authorization: str | None, role: str) -> bool:
        allowed = self.authorize(authorization, role)
        if inspect.isawaitable(allowed):
            allowed = await allowed
        return bool(allowed)

    def _make_room(self, key: tuple[str, bytes, bool, bytes | None], size: int) -> None:
        """At most ``max_kept`` answers and ``max_bytes`` of bodies: expired answers go
        first, and if that is not enough, all of them (they are a second's worth)."""
        old = self.kept.pop(key, None)
        if old is not None:
            self.size -= old.size
        if len(self.kept) < self.max_kept and self.size + size <= self.max_bytes:
            self.size += size
            return
        now = time.monotonic()
        for k, kept in list(self.kept.items()):
            if now - kept.born >= self.lifetime_s + self.stale_s:
                del self.kept[k]
                self.size -= kept.size
        if len(self.kept) >= self.max_kept or self.size + size > self.max_bytes:
            self.kept.clear()
            self.size = 0
        self.size += size


class BodyLimit:
    """At most ``max_bytes`` of request body: a larger ``Content-Length`` is answered 413
    before anything is read; a body that grows past it while read (chunked) ends with 413
    too, without being kept. Every role's HTTP server has it, outermost."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0 or declared > self.max_bytes:
                    await self._refuse(send)
                    return
        seen = 0
        over = False  # the body grew past the limit
        answered = False  # a response has begun (the app's, or the 413)

        async def limited() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal answered
            if over:  # whatever the app made of the error (a 400, say): the answer is 413
                if not answered:
                    answered = True
                    await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                answered = True
            await send(message)

        try:
            await self.app(scope, limited, watched)
        except Exception:
            if not over:
                raise
        if over and not answered:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = (
            b'{"success":false,"error":{"code":"payload_too_large","message":"the request body'
            b" is larger than " + str(self.max_bytes).encode() + b' bytes","details":null}}'
        )
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass

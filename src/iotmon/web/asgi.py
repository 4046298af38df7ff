"""Plain ASGI middleware for what every request passes through. Starlette's
``@app.middleware("http")`` (BaseHTTPMiddleware) costs a task and a body stream per request:
three of them were most of a cached answer's 2 ms of CPU."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

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

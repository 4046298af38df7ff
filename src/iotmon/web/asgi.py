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

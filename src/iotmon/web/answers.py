"""The API's answer cache, for its hottest reads (the device list, the dashboard figures, a
fixed history range): one answer per second and process, whoever asks.

One cache in two layers:

* ``AnswerCache.get``, inside the framework: an endpoint's answer for a key is computed once
  per ``LIFETIME_S`` (once even when many ask at the same moment) and marked shareable in the
  request's scope, with the least role that may read it;
* ``AnswerReplay``, in front of the framework: a shareable answer is kept as it was sent and
  served again, whole, to repeats of the same request within its lifetime, with the token,
  the rate limit and the metrics still checked per request.

``SharedAnswers`` is the other cache, for the analytics: answers that take tens of
milliseconds of queries, kept a few seconds in Redis so that every web process shares them
(README, design notes: why two)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import orjson
import redis.asyncio as aioredis
from fastapi import Request, Response

from iotmon.web.asgi import ASGIApp, Message, Observer, Receive, Scope, Send
from iotmon.web.envelope import ok

LIFETIME_S = 1.0


def _copy(response: Response) -> Response:
    return Response(
        response.body,
        status_code=response.status_code,
        media_type=response.media_type,
        headers={"X-Cache": "hit"},
    )


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


class AnswerReplay:
    """Serve a shareable answer again, whole, for its last fraction of a second.

    The API's hottest reads (device list, dashboard figures, a fixed history range) are the
    same answer for a second to every caller (``AnswerCache``). Still, each request went
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


class AnswerCache:
    """The same answer for ``LIFETIME_S`` to every caller asking a key in this process,
    computed once even when many ask at the same moment (one database round for a wall of
    dashboards). Live values reach clients through Socket.IO; these answers are the starting
    point, a second old at most. Only 200 answers are kept."""

    def __init__(self, lifetime_s: float = LIFETIME_S) -> None:
        self.lifetime_s = lifetime_s
        self._hot: dict[str, tuple[float, Response]] = {}
        self._inflight: dict[str, asyncio.Future[Response]] = {}

    async def get(
        self,
        request: Request,
        key: str,
        compute: Callable[[], Awaitable[Response]],
        *,
        role: str,
    ) -> Response:
        """``key``'s answer, computed by ``compute()`` when there is none. ``role`` is the
        least role that may read it: it is marked shareable, so that ``AnswerReplay`` answers
        repeats of the same request without the framework."""
        now = time.monotonic()
        hit = self._hot.get(key)
        if hit is not None and now - hit[0] < self.lifetime_s:
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
                    self._hot = {k: v for k, v in self._hot.items() if now - v[0] < self.lifetime_s}
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


class SharedAnswers:
    """An answer's ``(data, meta)`` computed once per ``ttl_s`` for a path and query across
    every web process of the deployment (``namespace``), kept in Redis; ``meta.cached`` says
    whether this one was. Redis away: computed every time."""

    def __init__(self, redis: aioredis.Redis, namespace: str, ttl_s: float = 5) -> None:
        self.redis = redis
        self.namespace = namespace
        self.ttl_s = ttl_s

    async def get(
        self,
        request: Request,
        compute: Callable[[], Awaitable[tuple[dict[str, Any], dict[str, Any]]]],
    ) -> Response:
        key = f"cache:{self.namespace}:{request.url.path}?{request.url.query}"
        try:
            hit = await self.redis.get(key)
        except aioredis.RedisError:
            hit = None
        if hit:
            body = orjson.loads(hit)
            return ok(body["data"], body["meta"] | {"cached": True})
        data, meta = await compute()
        with contextlib.suppress(aioredis.RedisError):
            await self.redis.set(
                key, orjson.dumps({"data": data, "meta": meta}), px=int(self.ttl_s * 1000)
            )
        return ok(data, meta | {"cached": False})

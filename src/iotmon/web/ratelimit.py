"""The API's rate limit: a fixed one-minute window per client address, counted in Redis so
every web process shares it. Health, metrics and Socket.IO are not limited."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from fastapi import Response

from iotmon.config import Settings
from iotmon.metrics import REDIS_ERRORS
from iotmon.web import login
from iotmon.web.envelope import ApiError, error_response

_LIMITED = "iotmon.limited"  # a 429 decided by RateLimit.admit, answered by the gate


class RateLimit:
    def __init__(self, redis: aioredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.trusted_proxies = login.parse_networks(settings.trusted_proxies)

    def client(self, scope: Any) -> str:
        """The client's address (X-Forwarded-For only from IOTMON_TRUSTED_PROXIES)."""
        return login.client_address(scope, self.trusted_proxies)

    async def admit(self, scope: Any) -> bool:
        """For a request ``AnswerReplay`` would answer: True when within the limit. Over it,
        the 429 is kept in the scope for the gate in the full stack, which answers it (the
        request is counted once)."""
        answer = await self.gate(scope)
        if answer is None:
            return True
        scope[_LIMITED] = answer
        return False

    async def gate(self, scope: Any) -> Response | None:
        """None within the limit, else the 429 to answer (``Observe``'s gate)."""
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

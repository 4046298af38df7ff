"""What the API's endpoints share in one web process: the database pool, Redis, the token
keys and sessions, login hashing and backoff, the answer cache, the rate limit, and the
notifier and live publisher of operators' alert actions. Built once by the web role and kept
in the app's ``state``; endpoints reach its parts through the dependencies of web/deps.py."""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import redis.asyncio as aioredis
from psycopg_pool import AsyncConnectionPool

from iotmon import logging as log
from iotmon.alerts.config import notify_config
from iotmon.alerts.notify import Notifier
from iotmon.config import Settings
from iotmon.realtime.publish import AsyncLivePublisher, Encoder
from iotmon.users.models import AuthError
from iotmon.web import auth, login
from iotmon.web.answers import AnswerCache, SharedAnswers
from iotmon.web.health import Probes, RequestWindow
from iotmon.web.ratelimit import RateLimit


class Services(Protocol):
    """The process's services as the API uses them (``roles.runtime.Services``)."""

    settings: Settings
    database_url: str | None
    redis_url: str | None
    started_at: float
    embedded: dict[str, str]
    requests: RequestWindow
    probes: Probes


class ApiState:
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
        self.answers = AnswerCache()  # the hottest reads, a second, this process
        self.shared_answers = SharedAnswers(self.redis, self.namespace)  # analytics, Redis
        self.rate_limit = RateLimit(self.redis, self.settings)
        self.hashing = login.Hashing()
        self.backoff = login.Backoff(self.redis, self.namespace)
        self.sessions = auth.Sessions(pool)
        auth.use_sessions(self.sessions)
        self.notifier: Notifier | None = None
        self.publisher: AsyncLivePublisher | None = None

    async def start(self) -> None:
        s = self.settings
        self.notifier = Notifier(notify_config(s), resolutions_always=True)
        self.publisher = AsyncLivePublisher(
            self.redis, Encoder(replay_size=s.live_replay_size, replay_ttl_s=s.live_replay_ttl_s)
        )

    async def close(self) -> None:
        if self.notifier is not None:
            await self.notifier.close()
        self.hashing.close()
        await self.redis.aclose()

    async def may_read(self, authorization: str | None, role: str) -> bool:
        """Whether the ``Authorization`` header's token is valid, current and has ``role``
        (``AnswerReplay``'s check)."""
        try:
            who = self.tokens.verify(auth.bearer(authorization))
        except AuthError:
            return False
        return who.can(role) and await self.sessions.current(who)

    async def revoked(self, username: str) -> None:
        """After a change that ended ``username``'s sessions: forget what this process knew of
        them, and tell every Socket.IO server to disconnect that user's sockets."""
        self.sessions.forget(username)
        try:
            await self.redis.publish(auth.REVOKED_CHANNEL, auth.revoked_message(username))
        except aioredis.RedisError as exc:
            self.log.warning("revocation not published", user=username, error=str(exc))

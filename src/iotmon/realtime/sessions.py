"""Who each Socket.IO connection is, and until when.

A connection's session ends (the server sends an ``error`` event, then disconnects it) when its
token's ``exp`` passes, unless the client sent a newer token of the same user first
(``refresh-token``); and when its user's sessions are revoked: any web process (or the CLI)
publishes ``{"username": ...}`` on ``REVOKED_CHANNEL`` on demotion, deletion, a password change
or logout, and every web process ends that user's connections. Replays (a subscription with a
last event id) are limited per connection: each costs a Redis read and up to a buffer's worth
of events sent, for a request of a few bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson
import redis.asyncio as aioredis

from iotmon.web.auth import REVOKED_CHANNEL

REPLAY_WINDOW_S = 60.0

End = Callable[[str, str, str], None]  # (sid, code, message)


@dataclass(slots=True)
class _Socket:
    user: str
    role: str
    exp: float
    timer: asyncio.TimerHandle | None = None
    replays: deque[float] = field(default_factory=deque)


class SocketSessions:
    def __init__(self, end: End, replays_per_minute: int = 30) -> None:
        self._end = end
        self.replays_per_minute = replays_per_minute
        self._sockets: dict[str, _Socket] = {}
        self._users: dict[str, set[str]] = {}

    def __len__(self) -> int:
        return len(self._sockets)

    def __contains__(self, sid: object) -> bool:
        return sid in self._sockets

    def add(self, sid: str, user: str, role: str, exp: float) -> None:
        self.remove(sid)
        self._sockets[sid] = _Socket(user, role, exp)
        self._users.setdefault(user, set()).add(sid)
        self._schedule(sid)

    def refresh(self, sid: str, user: str, role: str, exp: float) -> str | None:
        """A newer token for the connection: None when taken, else why not."""
        socket = self._sockets.get(sid)
        if socket is None:
            return "not connected"
        if user != socket.user:
            return "the token is another user's"
        if exp < socket.exp:
            return "the token expires before the one in use"
        socket.role, socket.exp = role, exp
        self._schedule(sid)
        return None

    def remove(self, sid: str) -> None:
        socket = self._sockets.pop(sid, None)
        if socket is None:
            return
        if socket.timer is not None:
            socket.timer.cancel()
        sids = self._users.get(socket.user)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self._users[socket.user]

    def of_user(self, user: str) -> list[str]:
        return list(self._users.get(user, ()))

    def replay_allowed(self, sid: str) -> float | None:
        """None when this connection may have one more replay now (and counts it), else in
        how many seconds it may."""
        socket = self._sockets.get(sid)
        if socket is None:
            return None
        now = time.monotonic()
        replays = socket.replays
        while replays and now - replays[0] >= REPLAY_WINDOW_S:
            replays.popleft()
        if len(replays) >= self.replays_per_minute:
            return REPLAY_WINDOW_S - (now - replays[0])
        replays.append(now)
        return None

    def _schedule(self, sid: str) -> None:
        socket = self._sockets[sid]
        if socket.timer is not None:
            socket.timer.cancel()
        socket.timer = asyncio.get_running_loop().call_later(
            max(0.0, socket.exp - time.time()), self._expired, sid
        )

    def _expired(self, sid: str) -> None:
        socket = self._sockets.get(sid)
        if socket is None:
            return
        if socket.exp > time.time():  # refreshed meanwhile; cannot happen, but cheap
            self._schedule(sid)
            return
        socket.timer = None
        self._end(sid, "token_expired", "the token has expired: log in again")

    def revoked(self, user: str) -> int:
        sids = self.of_user(user)
        for sid in sids:
            self._end(sid, "session_revoked", "the session has ended: log in again")
        return len(sids)


def parse_revocation(data: bytes | str) -> str | None:
    """The user name of a revocation message, or None when it is not one."""
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    user = message.get("username") if isinstance(message, dict) else None
    return user if isinstance(user, str) and user else None


async def listen_revocations(
    redis_url: str,
    on_user: Callable[[str], object],
    subscribed: asyncio.Event,
    warn: Callable[[str, str], None],
) -> None:
    """Call ``on_user`` for each revocation published, for ever; resubscribe after a Redis
    failure (with a growing pause). Sets ``subscribed`` once listening."""
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=5)
    delay = 0.5
    try:
        while True:
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(REVOKED_CHANNEL)
                subscribed.set()
                delay = 0.5
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    user = parse_revocation(message["data"])
                    if user is None:
                        warn("revocation", f"ignored a message on {REVOKED_CHANNEL}")
                        continue
                    on_user(user)
            except (aioredis.RedisError, OSError) as exc:
                warn("revocation", f"{REVOKED_CHANNEL}: {type(exc).__name__}: {exc}; resubscribing")
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)
    finally:
        await client.aclose()

"""Publish Socket.IO events in python-socketio's Redis-manager format, each with a replay id.

Any Socket.IO server using ``(Async)RedisManager`` on the same Redis and channel delivers what
is published here to its rooms (tests/integration/test_processing.py checks the messages
against the manager's own). On top of that format, every event gets an ``eventId``: one
sequence for the whole system (``live:seq``), assigned in Redis by a script that also appends
the message to its room's bounded replay buffer (``live:replay:<room>``, a stream) and
publishes it, atomically. A client that reconnects with the last id it saw gets the rest from
the buffers of the rooms it joins (realtime/replay.py).

``socketio.RedisManager.emit`` makes one Redis round trip per event (~80 us measured here): at
10,000 devices x 1 Hz that is most of a core; ``LivePublisher.emit_many`` sends a batch in one.

Rooms nobody watches are not published at all: web processes keep ``live:watched`` (room ->
until when) up to date for the rooms their clients are in, plus a grace period so a client
that reconnects finds what it missed; ``WatchedRooms`` reads it once a second. With 10,000
devices and a dashboard on a few of them, processing publishes a few events a second, not
10,000, and no web process decodes events nobody will receive.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable
from typing import Any

import orjson
import redis
import redis.asyncio as aioredis

from iotmon.metrics import REDIS_ERRORS

CHANNEL = "socketio"  # python-socketio's default
SEQ_KEY = "live:seq"
WATCHED_KEY = "live:watched"
REPLAY_PREFIX = "live:replay:"
PLACEHOLDER = "\x00"  # where the id goes; orjson writes it as \u0000

# KEYS: sequence, replay stream. ARGV: message head, message tail, channel, buffer size,
# buffer ttl. The id is a decimal string, also the stream entry's id (<id>-0): ids grow in
# every stream, so XRANGE (<last>-0 + is exactly "after the last one seen". A sequence that
# starts over (Redis restarted without its data) starts at the time in milliseconds, so ids
# still grow past every id a client saw before: a reconnecting client is not told "nothing
# missed" by ids that went backwards. Milliseconds, not microseconds: Lua 5.1 prints numbers
# with 14 significant digits.
_SCRIPT = """
local id = redis.call('INCR', KEYS[1])
if id == 1 then
  local t = redis.call('TIME')
  id = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', KEYS[1], id)
end
local msg = ARGV[1] .. id .. ARGV[2]
if tonumber(ARGV[4]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], id .. '-0', 'm', msg)
  redis.call('EXPIRE', KEYS[2], ARGV[5])
end
redis.call('PUBLISH', ARGV[3], msg)
return id
"""


_SHA = hashlib.sha1(_SCRIPT.encode(), usedforsecurity=False).hexdigest()  # Redis names them so


def replay_key(room: str) -> str:
    return REPLAY_PREFIX + room


def channel_for(db: int) -> str:
    """The Socket.IO channel of a Redis database. Redis pub/sub channels are server-wide, not
    per database: deployments (or test runs, benchmarks) sharing a Redis server in different
    databases would deliver each other's live events. Database 0 keeps python-socketio's
    default name."""
    return CHANNEL if not db else f"{CHANNEL}:db{db}"


def db_of(client: redis.Redis | aioredis.Redis) -> int:
    return int(client.connection_pool.connection_kwargs.get("db") or 0)


class Encoder:
    """Messages exactly as ``socketio.AsyncRedisManager.emit`` writes them, split where the
    event id goes. The channel, unless given, is that of the publisher's Redis database."""

    def __init__(
        self, channel: str | None = None, replay_size: int = 100, replay_ttl_s: int = 3600
    ):
        self.channel = channel
        self.replay_size = replay_size
        self.replay_ttl_s = replay_ttl_s
        self.host_id = uuid.uuid4().hex

    def message(self, event: str, data: Any, room: str | None) -> bytes:
        return orjson.dumps(
            {
                "method": "emit",
                "event": event,
                "data": [data],
                "binary": False,
                "namespace": "/",
                "room": room,
                "skip_sid": None,
                "callback": None,
                "host_id": self.host_id,
            }
        )

    def args(self, event: str, data: dict[str, Any], room: str) -> tuple[Any, ...]:
        """EVALSHA arguments publishing one event with a fresh id."""
        msg = self.message(event, {"eventId": PLACEHOLDER, **data}, room)
        head, tail = msg.split(b"\\u0000", 1)
        return (
            _SHA,
            2,
            SEQ_KEY,
            replay_key(room),
            head,
            tail,
            CHANNEL if self.channel is None else self.channel,
            self.replay_size,
            self.replay_ttl_s,
        )


class LivePublisher:
    """For threads (the processing role)."""

    def __init__(self, client: redis.Redis, encoder: Encoder | None = None) -> None:
        self.client = client
        self.encoder = encoder or Encoder()
        if self.encoder.channel is None:
            self.encoder.channel = channel_for(db_of(client))
        self._loaded = False

    def emit_many(self, events: Iterable[tuple[str, dict[str, Any], str]]) -> list[int]:
        """Publish (event, data, room) triples in one round trip; return their ids."""
        batch = [self.encoder.args(event, data, room) for event, data, room in events]
        if not batch:
            return []
        if not self._loaded:
            self.client.script_load(_SCRIPT)
            self._loaded = True
        try:
            return self._send(batch)
        except redis.exceptions.NoScriptError:  # Redis restarted or was flushed
            self.client.script_load(_SCRIPT)
            return self._send(batch)

    def _send(self, batch: list[tuple[Any, ...]]) -> list[int]:
        pipe = self.client.pipeline(transaction=False)
        for args in batch:
            pipe.execute_command("EVALSHA", *args)  # type: ignore[no-untyped-call]
        return [int(i) for i in pipe.execute()]


class AsyncLivePublisher:
    """For event loops (the alerts role)."""

    def __init__(self, client: aioredis.Redis, encoder: Encoder | None = None) -> None:
        self.client = client
        self.encoder = encoder or Encoder()
        if self.encoder.channel is None:
            self.encoder.channel = channel_for(db_of(client))
        self._loaded = False

    async def emit(self, event: str, data: dict[str, Any], room: str) -> int:
        args = self.encoder.args(event, data, room)
        for attempt in (1, 2):
            if not self._loaded:
                await self.client.script_load(_SCRIPT)
                self._loaded = True
            try:
                return int(await self.client.execute_command("EVALSHA", *args))  # type: ignore[no-untyped-call]
            except redis.exceptions.NoScriptError:
                self._loaded = False
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


class WatchedRooms:
    """Which rooms some client watches (or watched within the grace period), read at most
    once per ``refresh_s``. On a Redis error the last answer stands."""

    def __init__(self, client: redis.Redis, refresh_s: float = 1.0) -> None:
        self.client = client
        self.refresh_s = refresh_s
        self._rooms: set[str] = set()
        self._at = -1e18

    def rooms(self) -> set[str]:
        mono = time.monotonic()
        if mono - self._at >= self.refresh_s:
            self._at = mono
            now = time.time()
            try:
                pipe = self.client.pipeline(transaction=False)
                pipe.zremrangebyscore(WATCHED_KEY, "-inf", f"({now}")
                pipe.zrange(WATCHED_KEY, 0, -1)
                _, rooms = pipe.execute()
                self._rooms = {r.decode() for r in rooms}
            except redis.RedisError:
                REDIS_ERRORS.labels("processing").inc()
        return self._rooms

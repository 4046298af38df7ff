"""Reading a room's replay buffer (written by realtime/publish.py): the events a client missed
since the last id it saw, oldest first."""

from __future__ import annotations

from typing import Any

import orjson
import redis.asyncio as aioredis

from iotmon.realtime.publish import SEQ_KEY, replay_key

# Ids come from INCR (a signed 64-bit integer); a larger one is no stream id Redis accepts.
MAX_EVENT_ID = 2**63


def parse_event_id(value: Any) -> int | None:
    """A client's last event id (a decimal string or an int), or None when absent or bad."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isascii() and value.isdecimal() and len(value) <= 19:
        value = int(value)
    if isinstance(value, int) and 0 <= value < MAX_EVENT_ID:
        return value
    return None


async def missed(
    client: aioredis.Redis, room: str, after: int, limit: int = 1000
) -> list[tuple[str, Any]]:
    """(event, data) of the room's buffered events with an id above ``after``."""
    entries = await client.xrange(replay_key(room), f"({after}-0", "+", count=limit)
    out = []
    for _, fields in entries or []:
        if not fields:
            continue
        message = orjson.loads(fields[b"m"])
        data = message.get("data") or [None]
        out.append((message["event"], data[0]))
    return out


async def last_id(client: aioredis.Redis) -> int:
    value = await client.get(SEQ_KEY)
    return int(value) if value else 0

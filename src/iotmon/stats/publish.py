"""What the processing role writes to Redis (DESIGN.md 4.5), as plain functions over a
pipeline. The keys (device:{id}:current, device:{id}:stats:1h and :24h, system:metrics,
devices:last_seen) are named in cache/keys.py, where their readers find them too."""

from __future__ import annotations

from typing import Any

import orjson

from iotmon.cache.keys import CURRENT_TTL_S, LAST_SEEN, STATS_TTL_S, SYSTEM_METRICS
from iotmon.cache.keys import current as current_key
from iotmon.cache.keys import stats as stats_key

# The writes below go through ``execute_command``: redis-py's typed helpers (``set``, ``zadd``)
# re-inspect their arguments on every call, which at 10,000 devices a second cost more than
# the commands themselves. The per-device keys of a flush go as a few scripts of up to
# SET_CHUNK SETs each, not one command per key: redis-py's per-command packing and reply
# handling was most of a flush's Redis cost (27 -> 11 us of client CPU per device, formatting
# included). The keys, values and TTLs are those of one SET each.
SET_CHUNK = 1000
_SET_MANY = """
local ttl = ARGV[1]
for i, key in ipairs(KEYS) do
    redis.call('SET', key, ARGV[i + 1], 'EX', ttl)
end
return #KEYS
"""


def set_many(pipe: Any, items: list[tuple[str, bytes]], ttl_s: int) -> None:
    """``SET key value EX ttl_s`` for each of ``items``, SET_CHUNK to a script call."""
    for i in range(0, len(items), SET_CHUNK):
        part = items[i : i + SET_CHUNK]
        pipe.execute_command(
            "EVAL", _SET_MANY, len(part), *(k for k, _ in part), ttl_s, *(v for _, v in part)
        )


def write_currents(pipe: Any, currents: dict[str, dict[str, Any]]) -> None:
    """``write_current`` of each device, in a few commands."""
    set_many(
        pipe,
        [(current_key(d), orjson.dumps(c)) for d, c in currents.items()],
        CURRENT_TTL_S,
    )


def write_stats_many(pipe: Any, stats: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    """``write_stats`` of each (device, 1 h, 24 h), in a few commands."""
    items = []
    for device_id, s1, s24 in stats:
        items.append((stats_key(device_id, "1h"), orjson.dumps(s1)))
        items.append((stats_key(device_id, "24h"), orjson.dumps(s24)))
    set_many(pipe, items, STATS_TTL_S)


def write_current(pipe: Any, device_id: str, current: dict[str, Any]) -> None:
    pipe.execute_command("SET", current_key(device_id), orjson.dumps(current), "EX", CURRENT_TTL_S)


def write_last_seen(pipe: Any, last_seen: dict[str, float]) -> None:
    """One ZADD for every device heard since the last flush."""
    if last_seen:
        pipe.execute_command("ZADD", LAST_SEEN, *(x for d, t in last_seen.items() for x in (t, d)))


def write_stats(
    pipe: Any, device_id: str, stats_1h: dict[str, Any], stats_24h: dict[str, Any]
) -> None:
    for window, stats in (("1h", stats_1h), ("24h", stats_24h)):
        pipe.execute_command(
            "SET", stats_key(device_id, window), orjson.dumps(stats), "EX", STATS_TTL_S
        )


def write_system(pipe: Any, metrics: dict[str, Any]) -> None:
    pipe.execute_command("SET", SYSTEM_METRICS, orjson.dumps(metrics), "EX", CURRENT_TTL_S)

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
# the commands themselves.


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

"""What the processing role writes to Redis (DESIGN.md 4.5), as plain functions over a
pipeline. Keys: device:{id}:current (1 h), device:{id}:stats:1h and :24h (24 h),
system:metrics, and devices:last_seen (a sorted set the offline detector reads)."""

from __future__ import annotations

from typing import Any

import orjson

CURRENT_TTL_S = 3600
STATS_TTL_S = 86400
LAST_SEEN_KEY = "devices:last_seen"
SYSTEM_METRICS_KEY = "system:metrics"
ACTIVE_ALERTS_KEY = "alerts:active"


def current_key(device_id: str) -> str:
    return f"device:{device_id}:current"


def stats_key(device_id: str, window: str) -> str:
    return f"device:{device_id}:stats:{window}"


# The writes below go through ``execute_command``: redis-py's typed helpers (``set``, ``zadd``)
# re-inspect their arguments on every call, which at 10,000 devices a second cost more than
# the commands themselves.


def write_current(pipe: Any, device_id: str, current: dict[str, Any]) -> None:
    pipe.execute_command("SET", current_key(device_id), orjson.dumps(current), "EX", CURRENT_TTL_S)


def write_last_seen(pipe: Any, last_seen: dict[str, float]) -> None:
    """One ZADD for every device heard since the last flush."""
    if last_seen:
        pipe.execute_command(
            "ZADD", LAST_SEEN_KEY, *(x for d, t in last_seen.items() for x in (t, d))
        )


def write_stats(
    pipe: Any, device_id: str, stats_1h: dict[str, Any], stats_24h: dict[str, Any]
) -> None:
    for window, stats in (("1h", stats_1h), ("24h", stats_24h)):
        pipe.execute_command(
            "SET", stats_key(device_id, window), orjson.dumps(stats), "EX", STATS_TTL_S
        )


def write_system(pipe: Any, metrics: dict[str, Any]) -> None:
    pipe.execute_command("SET", SYSTEM_METRICS_KEY, orjson.dumps(metrics), "EX", CURRENT_TTL_S)

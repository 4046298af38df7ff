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


def write_current(pipe: Any, device_id: str, current: dict[str, Any], last_seen: float) -> None:
    pipe.set(current_key(device_id), orjson.dumps(current), ex=CURRENT_TTL_S)
    pipe.zadd(LAST_SEEN_KEY, {device_id: last_seen})


def write_stats(
    pipe: Any, device_id: str, stats_1h: dict[str, Any], stats_24h: dict[str, Any]
) -> None:
    pipe.set(stats_key(device_id, "1h"), orjson.dumps(stats_1h), ex=STATS_TTL_S)
    pipe.set(stats_key(device_id, "24h"), orjson.dumps(stats_24h), ex=STATS_TTL_S)


def write_system(pipe: Any, metrics: dict[str, Any]) -> None:
    pipe.set(SYSTEM_METRICS_KEY, orjson.dumps(metrics), ex=CURRENT_TTL_S)

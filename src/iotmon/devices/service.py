"""Devices as the API shows them: configuration from PostgreSQL, live state from Redis (the
keys processing writes, DESIGN.md 4.5), open alerts from PostgreSQL."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import orjson
import psycopg
import redis.asyncio as aioredis
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from iotmon import logging as log
from iotmon.alerts.models import SEVERITIES
from iotmon.cache import keys
from iotmon.devices.models import offline_timeout
from iotmon.metrics import REDIS_ERRORS
from iotmon.timefmt import iso_utc

logger = log.get("iotmon.web")

COLUMNS = (
    "device_id, device_type, location, unit, normal_min, normal_max, alert_min, alert_max,"
    " interval_ms, status, offline_timeout_s, metadata, created_at, updated_at, state_alert"
)

# The fields PUT /api/devices/{id}/config may change: API name -> column.
EDITABLE = {
    "location": "location",
    "unit": "unit",
    "normalMin": "normal_min",
    "normalMax": "normal_max",
    "alertMin": "alert_min",
    "alertMax": "alert_max",
    "intervalMs": "interval_ms",
    "status": "status",
    "offlineTimeoutS": "offline_timeout_s",
    "stateAlert": "state_alert",  # null: the profile's; false: none; an object: this one
}


class DeviceNotFound(LookupError):
    pass


class ConfigError(ValueError):
    """A configuration that cannot be (the message says why, for a person; ``details``: the
    changes asked for)."""

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.details = details


@dataclass(frozen=True, slots=True)
class Page:
    limit: int
    offset: int


def config_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "deviceId": row["device_id"],
        "type": row["device_type"],
        "location": row["location"],
        "unit": row["unit"],
        "status": row["status"],
        "normalMin": row["normal_min"],
        "normalMax": row["normal_max"],
        "alertMin": row["alert_min"],
        "alertMax": row["alert_max"],
        "intervalMs": row["interval_ms"],
        "offlineTimeoutS": row["offline_timeout_s"],
        "stateAlert": row["state_alert"],
        "metadata": row["metadata"],
        "createdAt": iso_utc(row["created_at"]),
        "updatedAt": iso_utc(row["updated_at"]),
    }


async def list_rows(
    conn: psycopg.AsyncConnection[Any],
    page: Page,
    *,
    status: str | None = None,
    device_type: str | None = None,
    location: str | None = None,
    search: str | None = None,
) -> tuple[list[dict[str, Any]], int]:
    """A page of devices by id; ``search``: part of the id, type or location, any case."""
    where: list[str] = []
    params: list[Any] = []
    for column, value in (("status", status), ("device_type", device_type), ("location", location)):
        if value is not None:
            where.append(f"{column} = %s")
            params.append(value)
    if search:
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", search) + "%"
        where.append("(device_id ILIKE %s OR device_type ILIKE %s OR location ILIKE %s)")
        params += [pattern] * 3
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {COLUMNS}, count(*) OVER () AS total FROM devices{clause}"
            " ORDER BY device_id LIMIT %s OFFSET %s",
            [*params, page.limit, page.offset],
        )
        rows = await cur.fetchall()
    if rows:
        return rows, int(rows[0]["total"])
    async with conn.cursor() as cur:  # past the last page: still say how many there are
        await cur.execute(f"SELECT count(*) FROM devices{clause}", params)
        total = await cur.fetchone()
    return [], int(total[0]) if total else 0


async def count(conn: psycopg.AsyncConnection[Any]) -> int:
    cur = await conn.execute("SELECT count(*) FROM devices")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def get_row(conn: psycopg.AsyncConnection[Any], device_id: str) -> dict[str, Any]:
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {COLUMNS} FROM devices WHERE device_id = %s", (device_id,))
        row = await cur.fetchone()
    if row is None:
        raise DeviceNotFound(f"device {device_id!r} does not exist")
    return row


async def alert_levels(
    conn: psycopg.AsyncConnection[Any], device_ids: list[str] | None = None
) -> dict[str, tuple[str, int]]:
    """Per device with open alerts: (worst severity, how many)."""
    rank = "array_position(ARRAY['low','medium','high','critical'], severity)"
    sql = (
        f"SELECT device_id, max({rank}), count(*) FROM alerts WHERE status <> 'resolved'"
        + (" AND device_id = ANY(%s)" if device_ids is not None else "")
        + " GROUP BY device_id"
    )
    cur = await conn.execute(sql, (device_ids,) if device_ids is not None else ())
    return {d: (SEVERITIES[int(r) - 1], int(n)) for d, r, n in await cur.fetchall()}


async def live(
    r: aioredis.Redis, device_ids: list[str], *, windows: tuple[str, ...] = ("24h",)
) -> dict[str, dict[str, Any]]:
    """Current value, statistics and last-seen time of each device, in one round trip."""
    if not device_ids:
        return {}
    pipe = r.pipeline(transaction=False)
    pipe.mget([keys.current(d) for d in device_ids])
    for w in windows:
        pipe.mget([keys.stats(d, w) for d in device_ids])
    pipe.zmscore(keys.LAST_SEEN, device_ids)
    answers = await pipe.execute()
    current, stats, seen = answers[0], answers[1:-1], answers[-1]
    out: dict[str, dict[str, Any]] = {}
    for i, d in enumerate(device_ids):
        out[d] = {
            "current": orjson.loads(current[i]) if current[i] else None,
            "lastSeen": seen[i],
            **{
                f"stats{w}": orjson.loads(stats[k][i]) if stats[k][i] else None
                for k, w in enumerate(windows)
            },
        }
    return out


async def live_state(
    r: aioredis.Redis, device_ids: list[str], windows: tuple[str, ...] = ("24h",)
) -> dict[str, dict[str, Any]]:
    """``live``, but when Redis is down the API still answers from PostgreSQL, without live
    values."""
    try:
        return await live(r, device_ids, windows=windows)
    except aioredis.RedisError as exc:
        REDIS_ERRORS.labels("web").inc()
        logger.warning("redis unavailable: answering without live state", error=str(exc))
        empty = {"current": None, "lastSeen": None} | {f"stats{w}": None for w in windows}
        return {d: dict(empty) for d in device_ids}


async def latest_reading(
    conn: psycopg.AsyncConnection[Any], device_id: str
) -> tuple[Any, ...] | None:
    """The newest stored reading: (timestamp, value, unit, sensor_type), or None."""
    cur = await conn.execute(
        'SELECT "timestamp", value, unit, sensor_type FROM sensor_readings'
        ' WHERE device_id = %s ORDER BY "timestamp" DESC LIMIT 1',
        (device_id,),
    )
    return await cur.fetchone()


def connectivity(
    row: dict[str, Any],
    last_seen: float | None,
    default_timeout_s: float,
    now: float | None = None,
) -> str:
    """``online`` while the device's last reading is within its offline timeout (the same
    one the alert engine uses for ``device_offline``)."""
    if last_seen is None:
        return "unknown"
    timeout = offline_timeout(row["offline_timeout_s"], default_timeout_s)
    now = time.time() if now is None else now
    return "online" if now - last_seen <= timeout else "offline"


def summary(
    row: dict[str, Any],
    state: dict[str, Any],
    alert: tuple[str, int] | None,
    default_timeout_s: float,
) -> dict[str, Any]:
    """One device of ``GET /api/devices`` (the specification's shape, plus what the
    dashboard needs beside it)."""
    current = state.get("current")
    stats = state.get("stats24h")
    return {
        "deviceId": row["device_id"],
        "type": row["device_type"],
        "location": row["location"],
        "unit": row["unit"],
        "status": row["status"],
        "intervalMs": row["interval_ms"],
        "connectivity": connectivity(row, state.get("lastSeen"), default_timeout_s),
        "lastReading": {
            "value": current["value"],
            "timestamp": current["timestamp"],
            "status": current["status"],
        }
        if current
        else None,
        "alertStatus": alert[0] if alert else "normal",
        "openAlerts": alert[1] if alert else 0,
        "stats": {
            "avg24h": stats.get("avg") if stats else None,
            "min24h": stats.get("min") if stats else None,
            "max24h": stats.get("max") if stats else None,
            "trend": stats.get("trend") if stats else None,
        },
        "thresholds": {
            "normalMin": row["normal_min"],
            "normalMax": row["normal_max"],
            "alertMin": row["alert_min"],
            "alertMax": row["alert_max"],
        },
    }


def check_config(current: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """The device's configuration after ``changes`` (API names), or ConfigError."""
    merged = {api: current[col] for api, col in EDITABLE.items()} | changes
    # alertMin <= normalMin < normalMax <= alertMax, between every two that are set (a gap
    # left by a null must not let normalMin pass alertMax).
    order = ("alertMin", "normalMin", "normalMax", "alertMax")
    strict = {("normalMin", "normalMax"), ("alertMin", "alertMax")}
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            va, vb = merged[a], merged[b]
            if va is None or vb is None:
                continue
            if va > vb or ((a, b) in strict and va == vb):
                relation = "must be below" if (a, b) in strict else "must not be above"
                raise ConfigError(f"{a} ({va}) {relation} {b} ({vb})")
    return merged


async def update_config(
    conn: psycopg.AsyncConnection[Any], device_id: str, changes: dict[str, Any]
) -> dict[str, Any]:
    """Apply validated changes; processing and alerts pick them up within 10 s."""
    async with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {COLUMNS} FROM devices WHERE device_id = %s FOR UPDATE", (device_id,)
        )
        row = await cur.fetchone()
        if row is None:
            raise DeviceNotFound(f"device {device_id!r} does not exist")
        try:
            check_config(row, changes)
        except ConfigError as exc:
            raise ConfigError(str(exc), {"changes": changes}) from None
        if changes:
            sets = ", ".join(f"{EDITABLE[k]} = %({k})s" for k in changes)
            params = {**changes, "id": device_id}
            if params.get("stateAlert") is not None:
                params["stateAlert"] = Jsonb(params["stateAlert"])
            await cur.execute(
                f"UPDATE devices SET {sets}, updated_at = now() WHERE device_id = %(id)s"
                f" RETURNING {COLUMNS}",
                params,
            )
            row = await cur.fetchone()
            assert row is not None
    return row

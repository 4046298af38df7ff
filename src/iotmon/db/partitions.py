"""Daily partitions of ``sensor_readings``: created ahead, dropped whole past retention."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from iotmon import logging as log

logger = log.get(__name__)

_NAME = re.compile(r"^sensor_readings_p(\d{8})$")


def partition_name(day: date) -> str:
    return f"sensor_readings_p{day:%Y%m%d}"


def existing(conn: psycopg.Connection[Any]) -> set[date]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'sensor_readings'::regclass"
    ).fetchall()
    days = set()
    for (name,) in rows:
        m = _NAME.match(name)
        if m:
            days.add(datetime.strptime(m.group(1), "%Y%m%d").date())
    return days


def ensure(conn: psycopg.Connection[Any], days: Iterable[date]) -> list[date]:
    """Create the partitions of ``days`` that are missing (idempotent, safe to race)."""
    created = []
    for day in sorted(set(days)):
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        with conn.transaction():
            cur = conn.execute("SELECT 1 FROM pg_class WHERE relname = %s", (partition_name(day),))
            if cur.fetchone():
                continue
            # Serialise concurrent creators (two ingestion instances meeting a new day).
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('sensor_readings_partitions'))")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {partition_name(day)} PARTITION OF sensor_readings"
                f" FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
        created.append(day)
    if created:
        logger.info("partitions created", days=[d.isoformat() for d in created])
    return created


def ensure_ahead(
    conn: psycopg.Connection[Any],
    *,
    ahead_days: int,
    today: date | None = None,
    behind_days: int = 1,
) -> list[date]:
    today = today or datetime.now(UTC).date()
    return ensure(conn, (today + timedelta(days=d) for d in range(-behind_days, ahead_days + 1)))


def drop_expired(
    conn: psycopg.Connection[Any], *, retention_days: int, today: date | None = None
) -> list[date]:
    """Drop every partition whose whole day is older than the retention period."""
    today = today or datetime.now(UTC).date()
    cutoff = today - timedelta(days=retention_days)
    dropped = []
    for day in sorted(existing(conn)):
        if day < cutoff:
            with conn.transaction():
                conn.execute(f"DROP TABLE IF EXISTS {partition_name(day)}")
            dropped.append(day)
    if dropped:
        logger.info("partitions dropped", days=[d.isoformat() for d in dropped])
    return dropped


def apply_retention(
    conn: psycopg.Connection[Any],
    *,
    readings_days: int,
    stats_days: int,
    alerts_days: int,
    events_days: int,
) -> dict[str, int]:
    """Retention for every table: whole partitions for readings, DELETE for the small tables
    (resolved alerts only: an open alert is never dropped)."""
    counts = {"sensor_readings_partitions": len(drop_expired(conn, retention_days=readings_days))}
    with conn.transaction():
        counts["device_stats_hourly"] = conn.execute(
            "DELETE FROM device_stats_hourly"
            " WHERE hour_timestamp < now() - make_interval(days => %s)",
            (stats_days,),
        ).rowcount
        counts["alerts"] = conn.execute(
            "DELETE FROM alerts WHERE status = 'resolved'"
            " AND triggered_at < now() - make_interval(days => %s)",
            (alerts_days,),
        ).rowcount
        counts["system_events"] = conn.execute(
            'DELETE FROM system_events WHERE "timestamp" < now() - make_interval(days => %s)',
            (events_days,),
        ).rowcount
    return counts

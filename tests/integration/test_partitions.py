from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from iotmon.db import partitions


def test_partitions_ahead_and_retention_drop_whole_days(database_url: str) -> None:
    today = datetime.now(UTC).date()
    with psycopg.connect(database_url, autocommit=True) as conn:
        old = today - timedelta(days=100)
        partitions.ensure(conn, [old, old + timedelta(days=1)])
        created = partitions.ensure_ahead(conn, ahead_days=5)
        assert today + timedelta(days=5) in partitions.existing(conn)
        assert partitions.ensure_ahead(conn, ahead_days=5) == []  # idempotent
        assert set(created) <= partitions.existing(conn)
        conn.execute(
            'INSERT INTO sensor_readings (device_id, "timestamp", sensor_type, value, unit)'
            " VALUES ('device-001', %s, 'temperature', 1, 'celsius'),"
            "        ('device-001', %s, 'temperature', 2, 'celsius')",
            (datetime(old.year, old.month, old.day, 12, tzinfo=UTC), datetime.now(UTC)),
        )
        dropped = partitions.drop_expired(conn, retention_days=90)
        assert dropped == [old, old + timedelta(days=1)]
        assert old not in partitions.existing(conn)
        # Only the old day's reading went, with its partition.
        assert conn.execute("SELECT value FROM sensor_readings").fetchall() == [(2.0,)]


def test_retention_keeps_open_alerts(database_url: str) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=400)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO alerts (device_id, alert_type, message, status, triggered_at) VALUES"
            " ('device-001', 'threshold_exceeded', 'old, resolved', 'resolved', %s),"
            " ('device-001', 'threshold_exceeded', 'old, still open', 'triggered', %s)",
            (long_ago, long_ago),
        )
        conn.execute(
            "INSERT INTO device_stats_hourly (device_id, hour_timestamp, count_readings)"
            " VALUES ('device-001', %s, 1), ('device-001', date_trunc('hour', now()), 1)",
            (long_ago,),
        )
        counts = partitions.apply_retention(
            conn, readings_days=90, stats_days=365, alerts_days=180, events_days=30
        )
        assert counts["alerts"] == 1
        assert counts["device_stats_hourly"] == 1
        assert conn.execute("SELECT message FROM alerts").fetchall() == [("old, still open",)]


def test_seeded_devices(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT device_id, device_type, unit, alert_min, alert_max, interval_ms"
            " FROM devices ORDER BY device_id"
        ).fetchall()
    assert rows == [
        ("device-001", "temperature", "celsius", 15, 85, 2000),
        ("device-002", "pressure", "psi", 5, 55, 3000),
        ("device-003", "vibration", "hz", None, 120, 1000),
        ("device-004", "production", "units/hour", 50, None, 5000),
        ("device-005", "quality", "percentage", 80, None, 4000),
    ]

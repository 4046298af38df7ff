"""Alerts as the API reads them: a filtered page with counts by severity, the CSV export,
the open alerts by severity. Changes go through the alert engine (alerts/engine.py), and
single alerts and silences through alerts/lifecycle.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from iotmon.alerts.models import Alert
from iotmon.readings.queries import csv_field
from iotmon.timefmt import iso_utc

COUNT_CAP = 10_000
CSV_COLUMNS = (
    "id, device_id, alert_type, severity, status, message, value, threshold, count,"
    " triggered_at, acknowledged_at, acknowledged_by, escalated_at, resolved_at,"
    " resolved_by, silenced, flapping"
)


@dataclass(frozen=True, slots=True)
class Filters:
    statuses: tuple[str, ...]
    severity: str | None = None
    device_id: str | None = None
    alert_type: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Page:
    alerts: list[Alert]
    counts: dict[str, int]  # by severity, of every alert that matches (up to COUNT_CAP)
    capped: bool  # more than COUNT_CAP match: the counts are those of the newest ones


async def page(
    conn: psycopg.AsyncConnection[Any], filters: Filters, limit: int, offset: int
) -> Page:
    """A page of alerts, newest first, with the counts by severity of all that match."""
    where = ["status = ANY(%(statuses)s)"]
    params: dict[str, Any] = {"statuses": list(filters.statuses), "limit": limit, "offset": offset}
    for column, key, value in (
        ("severity", "severity", filters.severity),
        ("device_id", "device", filters.device_id),
        ("alert_type", "type", filters.alert_type),
    ):
        if value is not None:
            where.append(f"{column} = %({key})s")
            params[key] = value
    if filters.start is not None:
        where.append("triggered_at >= %(start)s")
        params["start"] = filters.start
    if filters.end is not None:
        where.append("triggered_at < %(end)s")
        params["end"] = filters.end
    clause = " AND ".join(where)
    cur = await conn.execute(
        f"SELECT {Alert.COLUMNS} FROM alerts WHERE {clause}"
        " ORDER BY triggered_at DESC, id DESC LIMIT %(limit)s OFFSET %(offset)s",
        params,
    )
    alerts = [Alert(*row) for row in await cur.fetchall()]
    # Counted exactly up to COUNT_CAP, newest first: "all alerts, any time" of a plant that
    # has run for months is millions of rows, and counting them took 250 ms (2 M) per
    # request, for every dashboard refetching on every live alert event.
    cur = await conn.execute(
        "SELECT severity, count(*) FILTER (WHERE n <= %(cap)s), max(n) FROM ("
        " SELECT severity, row_number() OVER (ORDER BY triggered_at DESC) AS n"
        f" FROM alerts WHERE {clause} ORDER BY triggered_at DESC LIMIT %(cap)s + 1"
        ") newest GROUP BY severity",
        params | {"cap": COUNT_CAP},
    )
    rows = await cur.fetchall()
    counts = {s: int(n) for s, n, _ in rows}
    capped = any(int(m) > COUNT_CAP for _, _, m in rows)
    return Page(alerts, counts, capped)


async def csv_lines(
    conn: psycopg.AsyncConnection[Any],
    start: datetime,
    end: datetime | None,
    device_id: str | None,
    max_rows: int,
) -> AsyncIterator[bytes]:
    """Alerts triggered in [start, end), oldest first, as CSV with a header line."""
    yield (CSV_COLUMNS.replace(" ", "") + "\r\n").encode()
    async with conn.transaction(), conn.cursor(name="alerts_csv") as cur:
        await cur.execute(
            f"SELECT {CSV_COLUMNS} FROM alerts WHERE triggered_at >= %s"
            " AND (%s::timestamptz IS NULL OR triggered_at < %s)"
            " AND (%s::text IS NULL OR device_id = %s)"
            " ORDER BY triggered_at, id LIMIT %s",
            (start, end, end, device_id, device_id, max_rows),
        )
        while rows := await cur.fetchmany(2000):
            yield "".join(
                ",".join(iso_utc(v) if isinstance(v, datetime) else csv_field(v) for v in row)
                + "\r\n"
                for row in rows
            ).encode()


async def open_by_severity(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    """How many alerts are open, by severity (those with any)."""
    cur = await conn.execute(
        "SELECT severity, count(*) FROM alerts WHERE status <> 'resolved' GROUP BY severity"
    )
    return {s: int(n) for s, n in await cur.fetchall()}


async def counts_since(
    conn: psycopg.AsyncConnection[Any], since: datetime
) -> list[tuple[str, str, int]]:
    """(type, severity, how many) of the alerts triggered since ``since``."""
    cur = await conn.execute(
        "SELECT alert_type, severity, count(*) FROM alerts WHERE triggered_at >= %s"
        " GROUP BY alert_type, severity",
        (since,),
    )
    return [(str(t), str(s), int(n)) for t, s, n in await cur.fetchall()]

"""Reading history out of PostgreSQL: at most ``limit`` points over any range, downsampled in
the database, and raw rows streamed for CSV export."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import psycopg

from iotmon.timefmt import iso_utc

MAX_POINTS = 10_000


async def history(
    conn: psycopg.AsyncConnection[Any],
    device_id: str,
    start: datetime,
    end: datetime,
    limit: int,
) -> dict[str, Any]:
    """Raw readings when the range holds at most ``limit`` of them; otherwise ``limit`` time
    buckets with avg, min and max each (min/max keep the spikes a plain average or a
    decimation would hide: what matters on a monitoring chart)."""
    cur = await conn.execute(
        'SELECT "timestamp", value FROM sensor_readings'
        ' WHERE device_id = %s AND "timestamp" >= %s AND "timestamp" < %s'
        ' ORDER BY "timestamp" LIMIT %s',
        (device_id, start, end, limit + 1),
    )
    rows = await cur.fetchall()
    if len(rows) <= limit:
        points = [
            {"timestamp": iso_utc(t), "value": v, "min": v, "max": v, "count": 1} for t, v in rows
        ]
        return {"points": points, "bucketSeconds": None, "downsampled": False}
    span = (end - start).total_seconds()
    bucket_ms = max(1, math.ceil(span * 1000 / limit))
    cur = await conn.execute(
        'SELECT date_bin(%(bucket)s, "timestamp", %(start)s) AS b, avg(value), min(value),'
        " max(value), count(*) FROM sensor_readings"
        ' WHERE device_id = %(device)s AND "timestamp" >= %(start)s AND "timestamp" < %(end)s'
        " GROUP BY b ORDER BY b",
        {
            "bucket": timedelta(milliseconds=bucket_ms),
            "start": start,
            "end": end,
            "device": device_id,
        },
    )
    points = [
        {"timestamp": iso_utc(b), "value": a, "min": lo, "max": hi, "count": n}
        for b, a, lo, hi, n in await cur.fetchall()
    ]
    return {"points": points, "bucketSeconds": bucket_ms / 1000, "downsampled": True}


async def csv_rows(
    conn: psycopg.AsyncConnection[Any],
    device_id: str,
    start: datetime,
    end: datetime,
    limit: int | None,
) -> AsyncIterator[bytes]:
    """The CSV export: a header, then raw rows through a server-side cursor (constant memory
    for any range)."""
    yield b"timestamp,device_id,sensor_type,value,unit\r\n"
    async with conn.transaction(), conn.cursor(name="history_csv") as cur:
        await cur.execute(
            'SELECT "timestamp", device_id, sensor_type, value, unit FROM sensor_readings'
            ' WHERE device_id = %s AND "timestamp" >= %s AND "timestamp" < %s'
            ' ORDER BY "timestamp"' + (" LIMIT %s" if limit else ""),
            (device_id, start, end, limit) if limit else (device_id, start, end),
        )
        while rows := await cur.fetchmany(5000):
            yield "".join(
                f"{iso_utc(t)},{csv_field(d)},{csv_field(s)},{v!r},{csv_field(u)}\r\n"
                for t, d, s, v, u in rows
            ).encode()


def csv_field(value: Any) -> str:
    """RFC 4180 quoting, and no formula injection when the file is opened in a spreadsheet."""
    text = "" if value is None else str(value)
    if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(text):
        text = "'" + text
    if any(c in text for c in ',"\r\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

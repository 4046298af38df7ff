"""The alert lifecycle in PostgreSQL: open or update (one open alert per device and type),
acknowledge, escalate, resolve; every transition recorded in ``alert_transitions``."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from iotmon import logging as log
from iotmon.alerts.models import SEVERITIES, Alert, AlertError, AlertNotFound

logger = log.get(__name__)

_SEVERITY_RANK = "ARRAY[" + ",".join(f"'{s}'" for s in SEVERITIES) + "]"

_UPSERT = f"""
INSERT INTO alerts (device_id, alert_type, message, severity, value, threshold, status,
                    triggered_at, last_value, last_seen_at, silenced, metadata, count, flapping)
VALUES (%(device_id)s, %(alert_type)s, %(message)s, %(severity)s, %(value)s, %(threshold)s,
        'triggered', %(at)s, %(last_value)s, %(last_at)s, %(silenced)s, %(metadata)s,
        %(repeats)s, %(flapping)s)
ON CONFLICT (device_id, alert_type) WHERE status <> 'resolved' DO UPDATE SET
    count = alerts.count + EXCLUDED.count,
    flapping = alerts.flapping OR EXCLUDED.flapping,
    last_value = EXCLUDED.last_value,
    last_seen_at = greatest(alerts.last_seen_at, EXCLUDED.last_seen_at),
    severity = CASE WHEN array_position({_SEVERITY_RANK}, EXCLUDED.severity)
                         > array_position({_SEVERITY_RANK}, alerts.severity)
                    THEN EXCLUDED.severity ELSE alerts.severity END
RETURNING {Alert.COLUMNS}, (xmax = 0) AS created
"""
# One round trip: the upsert, the first transition when it opened a new alert, and the
# severity the open alert had before (every part of one statement sees the same snapshot).
_OPEN = f"""
WITH before AS (
    SELECT severity FROM alerts
    WHERE device_id = %(device_id)s AND alert_type = %(alert_type)s AND status <> 'resolved'
),
up AS ({_UPSERT.strip()}),
first AS (
    INSERT INTO alert_transitions (alert_id, from_status, to_status, actor, note, created_at)
    SELECT id, NULL, 'triggered', 'system', %(message)s, coalesce(%(changed_at)s, now())
    FROM up WHERE created
)
SELECT up.*, (SELECT severity FROM before) FROM up
"""

# What open_or_update did: opened a new alert, raised an open one's severity, or counted
# repeats into it.
Opened = Literal["created", "raised", "counted"]


async def _record(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    from_status: str | None,
    to_status: str,
    actor: str,
    note: str | None = None,
    at: datetime | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO alert_transitions (alert_id, from_status, to_status, actor, note, created_at)"
        " VALUES (%s, %s, %s, %s, %s, coalesce(%s, now()))",
        (alert_id, from_status, to_status, actor, note, at),
    )


async def open_or_update(
    conn: psycopg.AsyncConnection[Any],
    *,
    device_id: str,
    alert_type: str,
    message: str,
    severity: str,
    value: float | None,
    threshold: float | None,
    at: datetime,
    silenced: bool = False,
    metadata: dict[str, Any] | None = None,
    repeats: int = 1,
    last_value: float | None = None,
    last_at: datetime | None = None,
    flapping: bool = False,
    changed_at: datetime | None = None,
) -> tuple[Alert, Opened]:
    """Open an alert, or count repeats on the one already open (its severity rises to
    ``severity`` when that is worse, never falls). Returns the alert and what was done.

    ``repeats`` readings are counted at once (first at ``at`` with ``value``, the latest at
    ``last_at`` with ``last_value``): a burst costs one round trip. ``flapping`` marks the
    alert flapping (an open one stays marked); ``changed_at``: when its first transition is
    recorded (the engine's clock; default now())."""
    cur = await conn.execute(
        _OPEN,
        {
            "device_id": device_id,
            "alert_type": alert_type,
            "message": message,
            "severity": severity,
            "value": value,
            "threshold": threshold,
            "at": at,
            "last_value": value if last_at is None else last_value,
            "last_at": at if last_at is None else last_at,
            "repeats": repeats,
            "silenced": silenced,
            "metadata": Jsonb(metadata or {}),
            "flapping": flapping,
            "changed_at": changed_at,
        },
    )
    row = await cur.fetchone()
    assert row is not None
    alert, created, before = Alert(*row[:-2]), bool(row[-2]), row[-1]
    if created:
        return alert, "created"
    return alert, "raised" if before is not None and before != alert.severity else "counted"


async def get(conn: psycopg.AsyncConnection[Any], alert_id: int) -> Alert:
    async with conn.cursor(row_factory=class_row(Alert)) as cur:
        await cur.execute(f"SELECT {Alert.COLUMNS} FROM alerts WHERE id = %s", (alert_id,))
        alert = await cur.fetchone()
    if alert is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return alert


async def _transition(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    *,
    allowed: tuple[str, ...],
    to_status: str,
    actor: str,
    note: str | None,
    sets: str,
    at: datetime | None = None,
) -> Alert:
    async with conn.transaction():
        async with conn.cursor(row_factory=class_row(Alert)) as cur:
            await cur.execute(
                f"SELECT {Alert.COLUMNS} FROM alerts WHERE id = %s FOR UPDATE", (alert_id,)
            )
            alert = await cur.fetchone()
            if alert is None:
                raise AlertNotFound(f"alert {alert_id} does not exist")
            if alert.status not in allowed:
                raise AlertError(
                    f"alert {alert_id} is {alert.status}; it cannot become "
                    f"{to_status} (only from {', '.join(allowed)})"
                )
            await cur.execute(
                f"UPDATE alerts SET status = %(to)s, {sets} WHERE id = %(id)s"
                f" RETURNING {Alert.COLUMNS}",
                {"to": to_status, "id": alert_id, "actor": actor},
            )
            updated = await cur.fetchone()
        assert updated is not None
        await _record(conn, alert_id, alert.status, to_status, actor, note, at)
    return updated


async def acknowledge(
    conn: psycopg.AsyncConnection[Any], alert_id: int, actor: str, note: str | None = None
) -> Alert:
    return await _transition(
        conn,
        alert_id,
        allowed=("triggered", "escalated"),
        to_status="acknowledged",
        actor=actor,
        note=note,
        sets="acknowledged_at = now(), acknowledged_by = %(actor)s",
    )


async def resolve(
    conn: psycopg.AsyncConnection[Any],
    alert_id: int,
    actor: str,
    note: str | None = None,
    at: datetime | None = None,
) -> Alert:
    """``at``: when the transition is recorded (the engine's clock; default now())."""
    return await _transition(
        conn,
        alert_id,
        allowed=("triggered", "acknowledged", "escalated"),
        to_status="resolved",
        actor=actor,
        note=note,
        sets="resolved_at = now(), resolved_by = %(actor)s",
        at=at,
    )


async def escalate(
    conn: psycopg.AsyncConnection[Any], alert_id: int, note: str | None = None
) -> Alert:
    return await _transition(
        conn,
        alert_id,
        allowed=("triggered",),
        to_status="escalated",
        actor="system",
        note=note,
        sets="escalated_at = now()",
    )


async def find_open(
    conn: psycopg.AsyncConnection[Any], device_id: str, alert_type: str
) -> Alert | None:
    async with conn.cursor(row_factory=class_row(Alert)) as cur:
        await cur.execute(
            f"SELECT {Alert.COLUMNS} FROM alerts WHERE device_id = %s AND alert_type = %s"
            " AND status <> 'resolved'",
            (device_id, alert_type),
        )
        return await cur.fetchone()


async def open_alerts(conn: psycopg.AsyncConnection[Any]) -> list[Alert]:
    async with conn.cursor(row_factory=class_row(Alert)) as cur:
        await cur.execute(
            f"SELECT {Alert.COLUMNS} FROM alerts WHERE status <> 'resolved' ORDER BY triggered_at"
        )
        return await cur.fetchall()


async def due_for_escalation(conn: psycopg.AsyncConnection[Any], before: datetime) -> list[int]:
    cur = await conn.execute(
        "SELECT id FROM alerts WHERE status = 'triggered' AND triggered_at <= %s", (before,)
    )
    return [r[0] for r in await cur.fetchall()]


async def transitions(conn: psycopg.AsyncConnection[Any], alert_id: int) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT from_status, to_status, actor, note, created_at FROM alert_transitions"
        " WHERE alert_id = %s ORDER BY id",
        (alert_id,),
    )
    return [
        {"from": f, "to": t, "actor": a, "note": n, "at": at}
        for f, t, a, n, at in await cur.fetchall()
    ]


# --- silences ---
# Silences are read as epoch seconds and turned into datetimes here, row by row: a row that no
# datetime holds (year 10000 in UTC, 'infinity', written by hand or by an older version) is
# logged and skipped instead of failing the whole read, and with it the alerts role.
_SILENCE_COLS = (
    "id, device_id, alert_type, extract(epoch FROM starts_at)::float8,"
    " extract(epoch FROM ends_at)::float8, reason, created_by"
)
_reported: set[int] = set()  # bad silences logged already (once each)


def _when(epoch: Any) -> datetime:
    if epoch is None or not math.isfinite(epoch):
        raise OverflowError(f"{epoch} is no date")
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=float(epoch))


def _silence_rows(rows: list[Any]) -> list[tuple[Any, ...]]:
    """(id, device, type, starts, ends, reason, by) of the rows that are dates, in order."""
    out = []
    for sid, device, kind, starts, ends, reason, by in rows:
        try:
            out.append((sid, device, kind, _when(starts), _when(ends), reason, by))
        except (OverflowError, ValueError) as exc:
            if sid not in _reported:
                _reported.add(sid)
                logger.error(
                    "silence skipped: its dates are out of range (fix or delete it)",
                    silence=sid,
                    starts=starts,
                    ends=ends,
                    error=str(exc),
                )
    return out


async def active_silences(
    conn: psycopg.AsyncConnection[Any], at: datetime
) -> list[tuple[str | None, str | None, datetime, datetime]]:
    """(device, type, starts, ends) of the silences not over at ``at``."""
    cur = await conn.execute(f"SELECT {_SILENCE_COLS} FROM silences WHERE ends_at > %s", (at,))
    return [(d, t, s, e) for _, d, t, s, e, _, _ in _silence_rows(await cur.fetchall())]


async def silenced(
    conn: psycopg.AsyncConnection[Any], device_id: str, alert_type: str, at: datetime
) -> bool:
    cur = await conn.execute(
        "SELECT 1 FROM silences WHERE starts_at <= %(at)s AND ends_at > %(at)s"
        " AND (device_id IS NULL OR device_id = %(d)s)"
        " AND (alert_type IS NULL OR alert_type = %(t)s) LIMIT 1",
        {"at": at, "d": device_id, "t": alert_type},
    )
    return await cur.fetchone() is not None


async def create_silence(
    conn: psycopg.AsyncConnection[Any],
    *,
    device_id: str | None,
    alert_type: str | None,
    ends_at: datetime,
    starts_at: datetime | None = None,
    reason: str | None = None,
    created_by: str = "system",
) -> int:
    if device_id is None and alert_type is None:
        raise AlertError("a silence needs a device, an alert type, or both")
    for when in (starts_at, ends_at):
        if when is not None and not (
            datetime(2000, 1, 1, tzinfo=UTC) <= _aware(when) <= datetime(9000, 1, 1, tzinfo=UTC)
        ):
            raise AlertError(f"a silence's dates must be between 2000 and 9000, not {when}")
    cur = await conn.execute(
        "INSERT INTO silences (device_id, alert_type, starts_at, ends_at, reason, created_by)"
        " VALUES (%s, %s, coalesce(%s, now()), %s, %s, %s) RETURNING id",
        (device_id, alert_type, starts_at, ends_at, reason, created_by),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def list_silences(
    conn: psycopg.AsyncConnection[Any], *, include_expired: bool = False
) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {_SILENCE_COLS} FROM silences"
        + ("" if include_expired else " WHERE ends_at > now()")
        + " ORDER BY starts_at"
    )
    cols = ("id", "deviceId", "alertType", "startsAt", "endsAt", "reason", "createdBy")
    return [dict(zip(cols, row, strict=True)) for row in _silence_rows(await cur.fetchall())]


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


async def delete_silence(conn: psycopg.AsyncConnection[Any], silence_id: int) -> bool:
    cur = await conn.execute("DELETE FROM silences WHERE id = %s", (silence_id,))
    return cur.rowcount == 1


# --- flapping ---
# The state changes the engine counts (an alert opened, an alert resolved by the engine: an
# operator's resolution is no sign of flapping), per (device, type), from ``since`` on,
# oldest first: a restarted engine counts on from them.
_CHANGES_SQL = """
SELECT a.device_id, a.alert_type, extract(epoch FROM t.created_at)::float8
FROM alert_transitions t JOIN alerts a ON a.id = t.alert_id
WHERE t.created_at >= %s
  AND ((t.from_status IS NULL AND t.to_status = 'triggered')
       OR (t.to_status = 'resolved' AND t.actor = 'system'))
ORDER BY t.created_at, t.id
"""
# The (device, type)s still flapping: their latest alert is marked (settling unmarks it).
_FLAPPING_SQL = """
SELECT f.device_id, f.alert_type, f.id,
       (SELECT extract(epoch FROM max(t.created_at))::float8 FROM alert_transitions t
         JOIN alerts b ON b.id = t.alert_id
        WHERE b.device_id = f.device_id AND b.alert_type = f.alert_type
          AND ((t.from_status IS NULL AND t.to_status = 'triggered')
               OR (t.to_status = 'resolved' AND t.actor = 'system')))
FROM (SELECT device_id, alert_type, max(id) AS id FROM alerts WHERE flapping
      GROUP BY device_id, alert_type) AS f
WHERE NOT EXISTS (SELECT 1 FROM alerts n WHERE n.device_id = f.device_id
                  AND n.alert_type = f.alert_type AND n.id > f.id)
"""


FLAP_ACTOR = "flap-detection"
FLAP_STARTED = "flapping: notifications held until it settles"
FLAP_SETTLED = "settled: no longer flapping"
_SETTLED_SQL = """
SELECT a.device_id, a.alert_type, extract(epoch FROM max(t.created_at))::float8
FROM alert_transitions t JOIN alerts a ON a.id = t.alert_id
WHERE t.created_at >= %s AND t.actor = %s AND t.note = %s
GROUP BY a.device_id, a.alert_type
"""


async def record_flap(
    conn: psycopg.AsyncConnection[Any], alert: Alert, *, started: bool, at: datetime
) -> None:
    """In the alert's history: its (device, type) started flapping, or settled."""
    note = FLAP_STARTED if started else FLAP_SETTLED
    await _record(conn, alert.id, alert.status, alert.status, FLAP_ACTOR, note, at)


async def state_changes(
    conn: psycopg.AsyncConnection[Any], since: datetime
) -> list[tuple[str, str, float]]:
    """(device, type, unix time) of every alert opened or resolved from ``since`` on, after
    the (device, type) last settled (a settled one counts afresh)."""
    cur = await conn.execute(_SETTLED_SQL, (since, FLAP_ACTOR, FLAP_SETTLED))
    settled = {(d, t): float(at) for d, t, at in await cur.fetchall()}
    cur = await conn.execute(_CHANGES_SQL, (since,))
    return [
        (d, t, float(at))
        for d, t, at in await cur.fetchall()
        if float(at) > settled.get((d, t), -math.inf)
    ]


async def flapping_now(
    conn: psycopg.AsyncConnection[Any],
) -> list[tuple[str, str, int, float | None]]:
    """(device, type, latest alert id, unix time of its latest change) of what is flapping."""
    cur = await conn.execute(_FLAPPING_SQL)
    return [
        (d, t, int(i), None if at is None else float(at)) for d, t, i, at in await cur.fetchall()
    ]


async def set_flapping(conn: psycopg.AsyncConnection[Any], alert_id: int, flapping: bool) -> Alert:
    async with conn.cursor(row_factory=class_row(Alert)) as cur:
        await cur.execute(
            f"UPDATE alerts SET flapping = %s WHERE id = %s RETURNING {Alert.COLUMNS}",
            (flapping, alert_id),
        )
        alert = await cur.fetchone()
    if alert is None:
        raise AlertNotFound(f"alert {alert_id} does not exist")
    return alert


async def latest(
    conn: psycopg.AsyncConnection[Any], device_id: str, alert_type: str
) -> Alert | None:
    """The (device, type)'s newest alert, open or resolved."""
    async with conn.cursor(row_factory=class_row(Alert)) as cur:
        await cur.execute(
            f"SELECT {Alert.COLUMNS} FROM alerts WHERE device_id = %s AND alert_type = %s"
            " ORDER BY id DESC LIMIT 1",
            (device_id, alert_type),
        )
        return await cur.fetchone()

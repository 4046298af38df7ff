"""The alert lifecycle in PostgreSQL: open or update (one open alert per device and type),
acknowledge, escalate, resolve; every transition recorded in ``alert_transitions``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from iotmon import logging as log
from iotmon.alerts.models import SEVERITIES, Alert, AlertError, AlertNotFound

logger = log.get(__name__)

_SEVERITY_RANK = "ARRAY[" + ",".join(f"'{s}'" for s in SEVERITIES) + "]"

_ON_CONFLICT = f"""
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
_UPSERT = f"""
INSERT INTO alerts (device_id, alert_type, message, severity, value, threshold, status,
                    triggered_at, last_value, last_seen_at, silenced, metadata, count, flapping)
VALUES (%(device_id)s, %(alert_type)s, %(message)s, %(severity)s, %(value)s, %(threshold)s,
        'triggered', %(at)s, %(last_value)s, %(last_at)s, %(silenced)s, %(metadata)s,
        %(repeats)s, %(flapping)s)
{_ON_CONFLICT.strip()}
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

# open_or_update for many (device, type)s in one round trip: the same upsert over unnest()ed
# arrays, each (device, type) at most once (ON CONFLICT cannot touch a row twice in one
# statement); the severity each open alert had before comes from the same snapshot.
_OPEN_MANY = f"""
WITH input AS (
    SELECT * FROM unnest(
        %(device_id)s::text[], %(alert_type)s::text[], %(message)s::text[],
        %(severity)s::text[], %(value)s::float8[], %(threshold)s::float8[],
        %(at)s::timestamptz[], %(last_value)s::float8[], %(last_at)s::timestamptz[],
        %(silenced)s::bool[], %(metadata)s::text[], %(repeats)s::int[], %(flapping)s::bool[]
    ) WITH ORDINALITY AS i(device_id, alert_type, message, severity, value, threshold,
                          t_at, last_value, last_at, silenced, metadata, repeats, flapping, n)
),
before AS (
    SELECT a.device_id, a.alert_type, a.severity FROM alerts a
    JOIN input i ON a.device_id = i.device_id AND a.alert_type = i.alert_type
    WHERE a.status <> 'resolved'
),
up AS (
    INSERT INTO alerts (device_id, alert_type, message, severity, value, threshold, status,
                        triggered_at, last_value, last_seen_at, silenced, metadata, count,
                        flapping)
    SELECT device_id, alert_type, message, severity, value, threshold, 'triggered', t_at,
           last_value, last_at, silenced, metadata::jsonb, repeats, flapping
    FROM input ORDER BY n
    {_ON_CONFLICT.strip()}
),
first AS (
    INSERT INTO alert_transitions (alert_id, from_status, to_status, actor, note, created_at)
    SELECT id, NULL, 'triggered', 'system', message, coalesce(%(changed_at)s, now())
    FROM up WHERE created
)
SELECT up.*, b.severity FROM up
LEFT JOIN before b ON b.device_id = up.device_id AND b.alert_type = up.alert_type
"""

_QUALIFIED = ", ".join(f"a.{c.strip()}" for c in Alert.COLUMNS.split(","))
# resolve() of the open alert of many (device, type)s in one round trip: what is not open is
# left out; each resolution recorded with the status it left.
_RESOLVE_MANY = f"""
WITH input AS (
    SELECT * FROM unnest(%(device_id)s::text[], %(alert_type)s::text[])
        AS i(device_id, alert_type)
),
old AS (
    SELECT a.id, a.status FROM alerts a
    JOIN input i ON a.device_id = i.device_id AND a.alert_type = i.alert_type
    WHERE a.status <> 'resolved'
    FOR UPDATE OF a
),
res AS (
    UPDATE alerts a SET status = 'resolved', resolved_at = now(), resolved_by = %(actor)s
    FROM old WHERE a.id = old.id
    RETURNING {_QUALIFIED}, old.status AS from_status
),
tr AS (
    INSERT INTO alert_transitions (alert_id, from_status, to_status, actor, note, created_at)
    SELECT id, from_status, 'resolved', %(actor)s, %(note)s, coalesce(%(at)s, now()) FROM res
)
SELECT * FROM res
"""


@dataclass(frozen=True, slots=True)
class Opening:
    """One (device, type)'s share of ``open_many``: the arguments of open_or_update."""

    device_id: str
    alert_type: str
    message: str
    severity: str
    value: float | None
    threshold: float | None
    at: datetime
    silenced: bool = False
    metadata: dict[str, Any] | None = None
    repeats: int = 1
    last_value: float | None = None
    last_at: datetime | None = None
    flapping: bool = False


async def open_many(
    conn: psycopg.AsyncConnection[Any],
    openings: list[Opening],
    changed_at: datetime | None = None,
) -> dict[tuple[str, str], tuple[Alert, Opened]]:
    """``open_or_update`` for each of ``openings`` (distinct (device, type)s) in one
    statement; the alert and what was done, by (device, type)."""
    if not openings:
        return {}
    keys = {(o.device_id, o.alert_type) for o in openings}
    if len(keys) != len(openings):
        raise ValueError("open_many: a (device, type) more than once")
    cur = await conn.execute(
        _OPEN_MANY,
        {
            "device_id": [o.device_id for o in openings],
            "alert_type": [o.alert_type for o in openings],
            "message": [o.message for o in openings],
            "severity": [o.severity for o in openings],
            "value": [o.value for o in openings],
            "threshold": [o.threshold for o in openings],
            "at": [o.at for o in openings],
            "last_value": [o.value if o.last_at is None else o.last_value for o in openings],
            "last_at": [o.at if o.last_at is None else o.last_at for o in openings],
            "silenced": [o.silenced for o in openings],
            "metadata": [orjson.dumps(o.metadata or {}).decode() for o in openings],
            "repeats": [o.repeats for o in openings],
            "flapping": [o.flapping for o in openings],
            "changed_at": changed_at,
        },
    )
    out: dict[tuple[str, str], tuple[Alert, Opened]] = {}
    for row in await cur.fetchall():
        alert, created, before = Alert(*row[:-2]), bool(row[-2]), row[-1]
        done: Opened = (
            "created"
            if created
            else ("raised" if before is not None and before != alert.severity else "counted")
        )
        out[(alert.device_id, alert.alert_type)] = (alert, done)
    return out


async def resolve_open_many(
    conn: psycopg.AsyncConnection[Any],
    keys: list[tuple[str, str]],
    actor: str,
    note: str | None = None,
    at: datetime | None = None,
) -> dict[tuple[str, str], Alert]:
    """Resolve the open alert of each (device, type) that has one, in one statement; the
    resolved alerts by (device, type). ``at``: when the transitions are recorded."""
    if not keys:
        return {}
    cur = await conn.execute(
        _RESOLVE_MANY,
        {
            "device_id": [d for d, _ in keys],
            "alert_type": [t for _, t in keys],
            "actor": actor,
            "note": note,
            "at": at,
        },
    )
    out = {}
    for row in await cur.fetchall():
        alert = Alert(*row[:-1])
        out[(alert.device_id, alert.alert_type)] = alert
    return out


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

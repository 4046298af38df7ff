"""``/api/alerts`` (list, details, acknowledge, resolve, history, CSV) and ``/api/silences``.

Operator actions go through the alert engine, so they are stored with their transition,
mirrored in ``alerts:active``, announced to Socket.IO rooms and notified exactly as the alerts
role's own changes are."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from iotmon.alerts import lifecycle, service
from iotmon.alerts.models import OPEN, SEVERITIES, AlertType, Severity, Status
from iotmon.devices import service as devices
from iotmon.readings.models import DEVICE_ID
from iotmon.timefmt import aware, iso_utc
from iotmon.web.deps import VIEWER, Operator, Pool, State, alert_engine
from iotmon.web.envelope import ApiError, DeviceIdQuery, Envelope, errors, ok

StatusFilter = Literal[
    "open", "active", "all", "triggered", "acknowledged", "escalated", "resolved"
]
AlertIdPath = Annotated[int, Path(ge=1, le=2**62)]
CSV_MAX_ROWS = 1_000_000
# A silence lasts at most a year and starts within a year of now: every date stored is one
# PostgreSQL, psycopg and Python all hold (year 9999 +1 h is year 10000 in UTC: none do).
MAX_SILENCE = timedelta(days=366)


class AlertOut(BaseModel):
    id: int
    alertId: int
    deviceId: str
    type: AlertType
    message: str
    severity: Severity
    value: float | None
    threshold: float | None
    status: Status
    triggeredAt: str
    timestamp: str
    acknowledgedAt: str | None
    acknowledgedBy: str | None
    resolvedAt: str | None
    resolvedBy: str | None
    escalatedAt: str | None
    count: int
    lastValue: float | None
    lastSeenAt: str | None
    silenced: bool
    flapping: bool = Field(
        description="changing state too often: its notifications are held back until it settles"
    )


class Transition(BaseModel):
    from_: Status | None = Field(alias="from")
    to: Status
    actor: str
    note: str | None
    at: str


class AlertDetails(AlertOut):
    transitions: list[Transition]


class AlertList(BaseModel):
    alerts: list[AlertOut]


class AlertListMeta(BaseModel):
    """Counts of the alerts matching the filters, by severity; exact up to 10,000. Past
    that, ``countsCapped`` is true and the counts are those of the newest 10,000."""

    model_config = ConfigDict(extra="allow")
    totalAlerts: int
    criticalAlerts: int
    highAlerts: int
    mediumAlerts: int
    lowAlerts: int
    limit: int
    offset: int
    countsCapped: bool
    timestamp: str


class AlertListEnvelope(BaseModel):
    success: bool
    data: AlertList
    meta: AlertListMeta


class AlertEnvelope(Envelope):
    data: AlertOut


class AlertDetailsEnvelope(Envelope):
    data: AlertDetails


class Action(BaseModel):
    model_config = ConfigDict(extra="forbid")
    note: str | None = Field(default=None, max_length=500)


class SilenceIn(BaseModel):
    """Mute a device, an alert type, or one type on one device, for a period: alerts are still
    recorded, not notified. Give ``endsAt`` or ``durationS``."""

    model_config = ConfigDict(extra="forbid")
    deviceId: str | None = Field(default=None, pattern=DEVICE_ID.pattern)
    type: AlertType | None = None
    startsAt: datetime | None = None
    endsAt: datetime | None = None
    durationS: float | None = Field(default=None, gt=0, le=366 * 86400)
    reason: str | None = Field(default=None, max_length=500)

    @field_validator("startsAt", "endsAt", mode="after")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        """In UTC (a date without a zone is UTC), or refused when it has none there."""
        if value is None:
            return None
        try:
            return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
        except OverflowError:
            raise ValueError("the date is out of range") from None

    @model_validator(mode="after")
    def _period(self) -> SilenceIn:
        if self.deviceId is None and self.type is None:
            raise ValueError("a silence needs a deviceId, a type, or both")
        if (self.endsAt is None) == (self.durationS is None):
            raise ValueError("give either endsAt or durationS")
        return self

    def period(self, now: datetime) -> tuple[datetime, datetime]:
        """(starts, ends) in UTC, checked: starts within a year of ``now``, ends after it and
        at most a year later (ApiError 422 otherwise)."""
        starts = self.startsAt or now
        if abs(starts - now) > MAX_SILENCE:
            raise ApiError(
                422,
                "invalid_range",
                "startsAt must be within 366 days of now",
                {"field": "startsAt"},
            )
        if self.endsAt is not None:
            ends = self.endsAt
        else:
            assert self.durationS is not None
            ends = starts + timedelta(seconds=self.durationS)
        if ends <= starts:
            raise ApiError(422, "invalid_range", "endsAt must be after startsAt")
        if ends - starts > MAX_SILENCE:
            raise ApiError(
                422,
                "invalid_range",
                "a silence lasts at most 366 days (endsAt - startsAt)",
                {"field": "endsAt"},
            )
        return starts, ends


class SilenceOut(BaseModel):
    id: int
    deviceId: str | None
    alertType: AlertType | None
    startsAt: str
    endsAt: str
    reason: str | None
    createdBy: str


class SilenceEnvelope(Envelope):
    data: SilenceOut


class SilenceList(BaseModel):
    silences: list[SilenceOut]


class SilenceListEnvelope(Envelope):
    data: SilenceList


def _statuses(status: str) -> tuple[str, ...]:
    if status in ("open", "active"):
        return OPEN
    if status == "all":
        return (*OPEN, "resolved")
    return (status,)


def _meta(counts: dict[str, int], limit: int, offset: int) -> dict[str, Any]:
    return {
        "totalAlerts": sum(counts.values()),
        **{f"{s}Alerts": counts.get(s, 0) for s in reversed(SEVERITIES)},
        "limit": limit,
        "offset": offset,
    }


def _range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    try:
        start = aware(start).astimezone(UTC) if start else None
        end = aware(end).astimezone(UTC) if end else None
    except OverflowError:
        raise ApiError(422, "invalid_range", "from/to is out of range") from None
    if start and end and start >= end:
        raise ApiError(422, "invalid_range", "from must be before to")
    return start, end


async def _page(pool: Any, filters: service.Filters, limit: int, offset: int) -> Response:
    async with pool.connection() as conn:
        found = await service.page(conn, filters, limit, offset)
    meta = _meta(found.counts, limit, offset) | {"countsCapped": found.capped}
    return ok({"alerts": [a.as_event() for a in found.alerts]}, meta)


router = APIRouter(prefix="/api", tags=["alerts"], responses=errors())


@router.get("/alerts", response_model=AlertListEnvelope, dependencies=[VIEWER])
async def list_alerts(
    pool: Pool,
    status: StatusFilter = "open",
    severity: Severity | None = None,
    device_id: DeviceIdQuery = None,
    type: AlertType | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Alerts, newest first. ``status``: ``open`` (default: triggered, acknowledged or
    escalated; ``active`` is the same), one status, or ``all``."""
    start, end = _range(from_, to)
    filters = service.Filters(_statuses(status), severity, device_id, type, start, end)
    return await _page(pool, filters, limit, offset)


@router.get("/alerts/history", response_model=AlertListEnvelope, dependencies=[VIEWER])
async def alert_history(
    pool: Pool,
    severity: Severity | None = None,
    device_id: DeviceIdQuery = None,
    type: AlertType | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Response:
    """Every alert, open or resolved, newest first (default: the last 7 days)."""
    start, end = _range(from_ or datetime.now(UTC) - timedelta(days=7), to)
    filters = service.Filters((*OPEN, "resolved"), severity, device_id, type, start, end)
    return await _page(pool, filters, limit, offset)


@router.get(
    "/alerts/history.csv",
    dependencies=[VIEWER],
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "alerts as CSV"}},
)
async def alert_history_csv(
    pool: Pool,
    device_id: DeviceIdQuery = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> StreamingResponse:
    """Alerts triggered in [from, to) (default: the last 7 days), oldest first."""
    start, end = _range(from_ or datetime.now(UTC) - timedelta(days=7), to)
    assert start is not None

    async def body() -> AsyncIterator[bytes]:
        async with pool.connection() as conn:
            async for chunk in service.csv_lines(conn, start, end, device_id, CSV_MAX_ROWS):
                yield chunk

    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="alerts.csv"'},
    )


@router.get(
    "/alerts/{alert_id}",
    response_model=AlertDetailsEnvelope,
    dependencies=[VIEWER],
    responses=errors({404: "no such alert"}),
)
async def get_alert(alert_id: AlertIdPath, pool: Pool) -> Response:
    """One alert with every transition (who, when, note)."""
    async with pool.connection() as conn:
        alert = await lifecycle.get(conn, alert_id)
        history = await lifecycle.transitions(conn, alert_id)
    return ok(alert.as_event() | {"transitions": [h | {"at": iso_utc(h["at"])} for h in history]})


@router.put(
    "/alerts/{alert_id}/acknowledge",
    response_model=AlertEnvelope,
    responses=errors({404: "no such alert", 409: "the alert is resolved or acknowledged already"}),
)
async def acknowledge(
    alert_id: AlertIdPath, who: Operator, state: State, body: Action | None = None
) -> Response:
    """I have seen it (operator). Stops escalation; the alert stays open."""
    async with alert_engine(state) as engine:
        alert = await engine.acknowledge(alert_id, who.username, body.note if body else None)
    return ok(alert.as_event())


@router.put(
    "/alerts/{alert_id}/resolve",
    response_model=AlertEnvelope,
    responses=errors({404: "no such alert", 409: "the alert is resolved already"}),
)
async def resolve(
    alert_id: AlertIdPath, who: Operator, state: State, body: Action | None = None
) -> Response:
    """Close the alert (operator). If the condition persists, a new alert opens."""
    async with alert_engine(state) as engine:
        alert = await engine.resolve(alert_id, who.username, body.note if body else None)
    return ok(alert.as_event())


# --- silences ---
def _silence_json(s: dict[str, Any]) -> dict[str, Any]:
    return s | {"startsAt": iso_utc(s["startsAt"]), "endsAt": iso_utc(s["endsAt"])}


@router.get(
    "/silences", response_model=SilenceListEnvelope, dependencies=[VIEWER], tags=["silences"]
)
async def list_silences(
    pool: Pool,
    include_expired: Annotated[bool, Query(alias="includeExpired")] = False,
) -> Response:
    """Silences not over yet (or all of them)."""
    async with pool.connection() as conn:
        rows = await lifecycle.list_silences(conn, include_expired=include_expired)
    return ok({"silences": [_silence_json(s) for s in rows]})


@router.post(
    "/silences",
    response_model=SilenceEnvelope,
    status_code=201,
    tags=["silences"],
    responses=errors({404: "no such device"}),
)
async def create_silence(body: SilenceIn, who: Operator, pool: Pool) -> Response:
    """Mute a device and/or an alert type for a period (operator)."""
    starts, ends = body.period(datetime.now(UTC))  # checked before anything is written
    async with pool.connection() as conn:
        if body.deviceId is not None:
            await devices.get_row(conn, body.deviceId)
        silence_id = await lifecycle.create_silence(
            conn,
            device_id=body.deviceId,
            alert_type=body.type,
            starts_at=starts,
            ends_at=ends,
            reason=body.reason,
            created_by=who.username,
        )
        rows = await lifecycle.list_silences(conn, include_expired=True)
    [row] = [s for s in rows if s["id"] == silence_id]
    return ok(_silence_json(row), status=201)


@router.delete(
    "/silences/{silence_id}",
    tags=["silences"],
    response_model=Envelope,
    responses=errors({404: "no such silence"}),
)
async def delete_silence(
    silence_id: Annotated[int, Path(ge=1, le=2**62)], who: Operator, pool: Pool
) -> Response:
    """End a silence now (operator)."""
    async with pool.connection() as conn:
        if not await lifecycle.delete_silence(conn, silence_id):
            raise ApiError(404, "not_found", f"silence {silence_id} does not exist")
    return ok({"deleted": silence_id})

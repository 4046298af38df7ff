"""``/api/devices``: list, details, current reading, configuration (the history endpoints are
in readings/routes.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from iotmon.alerts.models import Severity
from iotmon.devices import service
from iotmon.devices.models import Connectivity, ReadingStatus, reading_status
from iotmon.profiles.models import StateAlert
from iotmon.timefmt import iso_utc
from iotmon.web.deps import VIEWER, Admin, ApiSettings, Pool, Redis, State
from iotmon.web.envelope import ApiError, DeviceIdPath, Envelope, errors, ok

DeviceStatus = Literal["active", "inactive", "maintenance", "unregistered"]


AlertStatus = Severity | Literal["normal"]  # the worst open alert's severity


class LastReading(BaseModel):
    value: float
    timestamp: str
    status: ReadingStatus


class DeviceStats(BaseModel):
    avg24h: float | None
    min24h: float | None
    max24h: float | None
    trend: str | None


class Thresholds(BaseModel):
    normalMin: float | None
    normalMax: float | None
    alertMin: float | None
    alertMax: float | None


class DeviceSummary(BaseModel):
    deviceId: str
    type: str
    location: str
    unit: str | None
    status: str
    intervalMs: int
    connectivity: Connectivity
    lastReading: LastReading | None
    alertStatus: AlertStatus
    openAlerts: int
    stats: DeviceStats
    thresholds: Thresholds


class DeviceList(BaseModel):
    devices: list[DeviceSummary]


class DeviceListMeta(BaseModel):
    model_config = ConfigDict(extra="allow")
    totalDevices: int
    activeDevices: int
    limit: int
    offset: int
    timestamp: str


class DeviceListEnvelope(BaseModel):
    success: bool
    data: DeviceList
    meta: DeviceListMeta


class DeviceConfig(BaseModel):
    deviceId: str
    type: str
    location: str
    unit: str | None
    status: str
    normalMin: float | None
    normalMax: float | None
    alertMin: float | None
    alertMax: float | None
    intervalMs: int
    offlineTimeoutS: float | None
    stateAlert: StateAlert | Literal[False] | None = Field(
        default=None, description="this device's state alert: null = its profile's, false = none"
    )
    metadata: dict[str, Any]
    createdAt: str
    updatedAt: str


class Current(BaseModel):
    model_config = ConfigDict(extra="allow")
    value: float
    timestamp: str
    status: ReadingStatus
    unit: str | None = None
    sensorType: str | None = None


class DeviceDetails(DeviceConfig):
    connectivity: Connectivity
    current: Current | None
    stats1h: dict[str, Any] | None
    stats24h: dict[str, Any] | None
    alertStatus: AlertStatus
    openAlerts: int


class DeviceDetailsEnvelope(Envelope):
    data: DeviceDetails


class DeviceConfigEnvelope(Envelope):
    data: DeviceConfig


class CurrentEnvelope(Envelope):
    data: Current


# Thresholds are finite and within +-1e9 (no sensor reads past that), so that every role's
# arithmetic on them (spans, distances, severities) stays finite.
BOUND = 1e9
Threshold = Annotated[float | None, Field(default=None, ge=-BOUND, le=BOUND, allow_inf_nan=False)]
# Printable text only: no control characters (a NUL, a newline in a log line).
TEXT = r"^[^\x00-\x1f\x7f]*$"


class ConfigUpdate(BaseModel):
    """Only the fields given change. Thresholds may be null (no threshold); given ones are
    within +-1e9 and ordered alertMin <= normalMin < normalMax <= alertMax."""

    model_config = ConfigDict(extra="forbid")
    location: str | None = Field(default=None, min_length=1, max_length=100, pattern=TEXT)
    unit: str | None = Field(default=None, min_length=1, max_length=32, pattern=TEXT)
    normalMin: Threshold = None
    normalMax: Threshold = None
    alertMin: Threshold = None
    alertMax: Threshold = None
    intervalMs: int | None = Field(default=None, ge=10, le=86_400_000)
    status: DeviceStatus | None = None
    offlineTimeoutS: float | None = Field(default=None, gt=0, le=86_400, allow_inf_nan=False)
    stateAlert: StateAlert | Literal[False] | None = Field(
        default=None,
        description="alert when the value stays at one state (a door open) for forSeconds:"
        " null = the profile channel's stateAlert, false = none for this device",
    )


NOT_NULL = ("location", "unit", "intervalMs", "status")


router = APIRouter(prefix="/api/devices", tags=["devices"], responses=errors())


@router.get("", response_model=DeviceListEnvelope, dependencies=[VIEWER])
async def list_devices(
    request: Request,
    state: State,
    status: DeviceStatus | None = None,
    type: Annotated[str | None, Query(max_length=64)] = None,
    location: Annotated[str | None, Query(max_length=100)] = None,
    q: Annotated[
        str | None,
        Query(max_length=100, description="part of the id, type or location, any case"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """Devices with their current reading, alert status and 24 h statistics, ordered by
    id (the same answer for a second to every caller)."""

    async def page() -> Response:
        async with state.pool.connection() as conn:
            rows, total = await service.list_rows(
                conn,
                service.Page(limit, offset),
                status=status,
                device_type=type,
                location=location,
                search=q,
            )
            alerts = await service.alert_levels(conn, [r["device_id"] for r in rows])
        states = await service.live_state(state.redis, [r["device_id"] for r in rows])
        devices = [
            service.summary(
                row,
                states.get(row["device_id"], {}),
                alerts.get(row["device_id"]),
                state.settings.alert_offline_timeout_s,
            )
            for row in rows
        ]
        active = sum(1 for d in devices if d["connectivity"] == "online")
        return ok(
            {"devices": devices},
            {"totalDevices": total, "activeDevices": active, "limit": limit, "offset": offset},
        )

    key = f"devices:{status}:{type}:{location}:{q}:{limit}:{offset}"
    return await state.answers.get(request, key, page, role="viewer")


@router.get(
    "/{device_id}",
    response_model=DeviceDetailsEnvelope,
    dependencies=[VIEWER],
    responses=errors({404: "no such device"}),
)
async def get_device(
    device_id: DeviceIdPath, pool: Pool, redis: Redis, settings: ApiSettings
) -> Response:
    """Configuration, current reading, 1 h and 24 h statistics, open alerts."""
    async with pool.connection() as conn:
        row = await service.get_row(conn, device_id)
        alerts = await service.alert_levels(conn, [device_id])
    live = (await service.live_state(redis, [device_id], windows=("1h", "24h")))[device_id]
    alert = alerts.get(device_id)
    return ok(
        service.config_json(row)
        | {
            "connectivity": service.connectivity(
                row, live["lastSeen"], settings.alert_offline_timeout_s
            ),
            "current": live["current"],
            "stats1h": live["stats1h"],
            "stats24h": live["stats24h"],
            "alertStatus": alert[0] if alert else "normal",
            "openAlerts": alert[1] if alert else 0,
        }
    )


@router.get(
    "/{device_id}/current",
    response_model=CurrentEnvelope,
    dependencies=[VIEWER],
    responses=errors({404: "no such device, or no reading yet"}),
)
async def current(device_id: DeviceIdPath, pool: Pool, redis: Redis) -> Response:
    """The latest reading: from Redis, else the newest row in PostgreSQL."""
    async with pool.connection() as conn:
        row = await service.get_row(conn, device_id)
        live = (await service.live_state(redis, [device_id], windows=()))[device_id]
        if live["current"] is not None:
            return ok(live["current"])
        last = await service.latest_reading(conn, device_id)
    if last is None:
        raise ApiError(404, "no_data", f"device {device_id!r} has sent no reading yet")
    t, value, unit, sensor_type = last
    status = reading_status(
        value, row["normal_min"], row["normal_max"], row["alert_min"], row["alert_max"]
    )
    return ok(
        {
            "value": value,
            "timestamp": iso_utc(t),
            "status": status,
            "unit": unit,
            "sensorType": sensor_type,
        }
    )


@router.put(
    "/{device_id}/config",
    response_model=DeviceConfigEnvelope,
    responses=errors({404: "no such device", 422: "an invalid configuration"}),
)
async def update_config(
    device_id: DeviceIdPath, body: ConfigUpdate, who: Admin, state: State
) -> Response:
    """Change thresholds, interval, location, status, offline timeout or state alert
    (admin). Processing and alerts apply it within 10 s, without a restart."""
    changes = body.model_dump(exclude_unset=True)
    nulls = [k for k in NOT_NULL if k in changes and changes[k] is None]
    if nulls:
        raise ApiError(
            422, "validation_error", f"{', '.join(nulls)} cannot be null", {"fields": nulls}
        )
    if not changes:
        raise ApiError(422, "validation_error", "nothing to change: the body is empty")
    async with state.pool.connection() as conn:
        row = await service.update_config(conn, device_id, changes)
    state.log.info("device configured", device=device_id, by=who.username, changes=changes)
    return ok(service.config_json(row))

"""``/api/devices/{id}/history`` (downsampled to at most ``limit`` points) and its CSV export."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from iotmon.devices import service as devices
from iotmon.readings import queries
from iotmon.timefmt import aware, iso_utc
from iotmon.web.deps import VIEWER, Pool, State
from iotmon.web.envelope import ApiError, DeviceIdPath, Envelope, errors, ok

MAX_RANGE = timedelta(days=400)
CSV_MAX_ROWS = 5_000_000


class Point(BaseModel):
    timestamp: str
    value: float
    min: float
    max: float
    count: int


class History(BaseModel):
    deviceId: str
    unit: str | None
    from_: str = Field(alias="from")
    to: str
    bucketSeconds: float | None
    downsampled: bool
    points: list[Point]


class HistoryEnvelope(Envelope):
    data: History


def time_range(
    start: datetime | None, end: datetime | None, default: timedelta
) -> tuple[datetime, datetime]:
    end = aware(end) if end else datetime.now(UTC)
    start = aware(start) if start else end - default
    if start >= end:
        raise ApiError(
            422, "invalid_range", f"from ({iso_utc(start)}) must be before to ({iso_utc(end)})"
        )
    if end - start > MAX_RANGE:
        raise ApiError(422, "invalid_range", f"the range is longer than {MAX_RANGE.days} days")
    return start, end


router = APIRouter(prefix="/api/devices", tags=["devices"], responses=errors())


@router.get(
    "/{device_id}/history",
    response_model=HistoryEnvelope,
    dependencies=[VIEWER],
    responses=errors({404: "no such device"}),
)
async def history(
    request: Request,
    device_id: DeviceIdPath,
    state: State,
    from_: Annotated[
        datetime | None, Query(alias="from", description="ISO 8601; default: to - 24 h")
    ] = None,
    to: Annotated[datetime | None, Query(description="ISO 8601; default: now")] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_POINTS)] = 1000,
) -> Response:
    """Readings in [from, to): raw when there are at most ``limit``, else ``limit`` time
    buckets with avg (``value``), ``min``, ``max`` and ``count``."""
    start, end = time_range(from_, to, timedelta(hours=24))

    async def page() -> Response:
        async with state.pool.connection() as conn:
            row = await devices.get_row(conn, device_id)
            result = await queries.history(conn, device_id, start, end, limit)
        return ok(
            {
                "deviceId": device_id,
                "unit": row["unit"],
                "from": iso_utc(start),
                "to": iso_utc(end),
                **result,
            },
            {"count": len(result["points"]), "limit": limit},
        )

    if from_ is None or to is None:  # "until now": a new range every call, nothing to share
        return await page()
    key = f"history:{device_id}:{start.isoformat()}:{end.isoformat()}:{limit}"
    return await state.answers.get(request, key, page, role="viewer")


@router.get(
    "/{device_id}/history.csv",
    dependencies=[VIEWER],
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "raw readings as CSV"},
        404: {"description": "no such device"},
    },
)
async def history_csv(
    device_id: DeviceIdPath,
    pool: Pool,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int | None, Query(ge=1, le=CSV_MAX_ROWS)] = None,
) -> StreamingResponse:
    """Every raw reading in [from, to) (default: the last 24 h), streamed."""
    start, end = time_range(from_, to, timedelta(hours=24))
    async with pool.connection() as conn:
        await devices.get_row(conn, device_id)

    async def body() -> AsyncIterator[bytes]:
        async with pool.connection() as conn:
            async for chunk in queries.csv_rows(conn, device_id, start, end, limit):
                yield chunk

    name = f"{device_id}_{start:%Y%m%dT%H%M%S}_{end:%Y%m%dT%H%M%S}.csv"
    return StreamingResponse(
        body(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )

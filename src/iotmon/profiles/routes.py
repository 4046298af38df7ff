"""``/api/profiles`` (device profiles, admin to change) and ``PUT /api/devices/{id}/profile``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from iotmon.profiles import service
from iotmon.profiles.models import NAME, Channel, Profile, ProfileBody
from iotmon.web.deps import VIEWER, Admin, Pool, State
from iotmon.web.envelope import DeviceIdPath, Envelope, errors, ok

NamePath = Annotated[str, Path(pattern=NAME, description="e.g. f2-smart-controller")]


class ProfileOut(BaseModel):
    name: str
    description: str
    channels: list[Channel]
    createdAt: str
    updatedAt: str
    devices: list[str] | None = None
    deviceCount: int | None = None


class ProfileEnvelope(Envelope):
    data: ProfileOut


class ProfileList(BaseModel):
    profiles: list[ProfileOut]


class ProfileListEnvelope(Envelope):
    data: ProfileList


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: str | None = Field(pattern=NAME, description="a profile's name; null = none")


class AssignmentOut(BaseModel):
    deviceId: str
    profile: str | None


class AssignmentEnvelope(Envelope):
    data: AssignmentOut


router = APIRouter(prefix="/api/profiles", tags=["profiles"], responses=errors())
device_router = APIRouter(prefix="/api/devices", tags=["devices"], responses=errors())


@router.get("", response_model=ProfileListEnvelope, dependencies=[VIEWER])
async def list_profiles(pool: Pool) -> Response:
    """Every device profile, with how many devices use it."""
    async with pool.connection() as conn:
        return ok({"profiles": await service.list_profiles(conn)})


@router.get(
    "/{name}",
    response_model=ProfileEnvelope,
    dependencies=[VIEWER],
    responses=errors({404: "no such profile"}),
)
async def get_profile(name: NamePath, pool: Pool) -> Response:
    """One profile and the devices that use it (up to 1,000)."""
    async with pool.connection() as conn:
        return ok(await service.get_profile(conn, name))


@router.post(
    "",
    response_model=ProfileEnvelope,
    status_code=201,
    responses=errors(
        {
            409: "a profile of that name exists",
            422: "invalid, or a sensor type's range differs from another profile's",
        }
    ),
)
async def create_profile(body: Profile, who: Admin, state: State) -> Response:
    """Create a profile (admin). Every channel is checked: topic pattern, path, encoding
    (hex_register needs its register), thresholds in order, the sensor type's range (a
    type that is not built in needs one, the same as every other profile gives it); 422
    names each problem."""
    async with state.pool.connection() as conn:
        out = await service.create_profile(conn, body)
    state.log.info("profile created", profile=body.name, by=who.username)
    return ok(out, status=201)


@router.put(
    "/{name}",
    response_model=ProfileEnvelope,
    responses=errors(
        {
            404: "no such profile",
            422: "invalid, or a sensor type's range differs from another profile's",
        }
    ),
)
async def replace_profile(name: NamePath, body: ProfileBody, who: Admin, state: State) -> Response:
    """Replace a profile's description and channels (admin); decoders use it within
    seconds. Raw messages are kept, so what failed before can be decoded again."""
    async with state.pool.connection() as conn:
        out = await service.replace_profile(conn, name, body)
    state.log.info("profile replaced", profile=name, by=who.username)
    return ok(out)


@router.delete(
    "/{name}",
    response_model=Envelope,
    responses=errors({404: "no such profile", 409: "devices still use it"}),
)
async def delete_profile(name: NamePath, who: Admin, state: State) -> Response:
    """Delete a profile no device uses (admin)."""
    async with state.pool.connection() as conn:
        await service.delete_profile(conn, name)
    state.log.info("profile deleted", profile=name, by=who.username)
    return ok({"name": name, "deleted": True})


@device_router.put(
    "/{device_id}/profile",
    response_model=AssignmentEnvelope,
    responses=errors({404: "no such profile, or (profile null) no such device"}),
)
async def assign(device_id: DeviceIdPath, body: Assignment, who: Admin, state: State) -> Response:
    """Point a device at a profile (admin); a device not yet known is registered with the
    profile's name as its type. ``{"profile": null}`` detaches it."""
    async with state.pool.connection() as conn:
        out: dict[str, Any] = await service.assign_profile(conn, device_id, body.profile)
    state.log.info("device profile set", device=device_id, profile=body.profile, by=who.username)
    return ok(out)

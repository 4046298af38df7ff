"""``/api/devices/{id}/mqtt-credentials`` (admin): issue a device's MQTT username and password
(the password is answered once, kept only as a hash), see them, revoke them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from iotmon.config import secret
from iotmon.mqtt import provisioning
from iotmon.web.deps import ADMIN, Admin, ApiSettings, Pool
from iotmon.web.envelope import DeviceIdPath, Envelope, errors, ok


class CredentialInfo(BaseModel):
    deviceId: str
    username: str
    topics: list[str]
    createdAt: str
    createdBy: str


class IssuedCredential(CredentialInfo):
    password: str


class Revoked(BaseModel):
    deviceId: str
    username: str
    revoked: bool
    revokedAt: str
    revokedBy: str


class IssuedEnvelope(Envelope):
    data: IssuedCredential


class CredentialEnvelope(Envelope):
    data: CredentialInfo


class RevokedEnvelope(Envelope):
    data: Revoked


BROKER_ERRORS = {
    404: "no such device (or, for GET and DELETE, it has no MQTT credentials)",
    502: "the broker's dynamic security plugin refused the change",
    503: "provisioning is not configured (IOTMON_MQTT_ADMIN_URL) or the broker is unreachable",
}


router = APIRouter(prefix="/api/devices", tags=["mqtt credentials"], responses=errors())


@router.post(
    "/{device_id}/mqtt-credentials",
    response_model=IssuedEnvelope,
    status_code=201,
    responses=errors(BROKER_ERRORS),
)
async def issue(device_id: DeviceIdPath, who: Admin, pool: Pool, settings: ApiSettings) -> Response:
    """New MQTT credentials for a device (admin). The password is in this answer only (the
    system keeps a PBKDF2-SHA512 hash); the username is the device id. The device may
    publish and subscribe only on ``<root>+/<device>/#`` (e.g. ``cmnd/<device>/...``,
    ``devices/<device>/...``). Issuing again replaces the previous credentials: a client
    connected with them is disconnected. Applies at once, without restarting the broker."""
    async with pool.connection() as conn:
        data = await provisioning.provision(
            conn,
            admin_url=secret(settings.mqtt_admin_url),
            device_id=device_id,
            root=settings.mqtt_topic_root,
            by=who.username,
        )
    return ok(data, status=201)


@router.get(
    "/{device_id}/mqtt-credentials",
    response_model=CredentialEnvelope,
    responses=errors({404: BROKER_ERRORS[404]}),
    dependencies=[ADMIN],
)
async def show(device_id: DeviceIdPath, pool: Pool) -> Response:
    """The device's live MQTT credentials: username, allowed topics, when and by whom
    issued (admin). Never the password."""
    async with pool.connection() as conn:
        data: dict[str, Any] = await provisioning.current(conn, device_id)
    return ok(data)


@router.delete(
    "/{device_id}/mqtt-credentials",
    response_model=RevokedEnvelope,
    responses=errors(BROKER_ERRORS),
)
async def revoke(
    device_id: DeviceIdPath, who: Admin, pool: Pool, settings: ApiSettings
) -> Response:
    """Revoke the device's MQTT credentials (admin): deleted on the broker at once, a
    connected client is disconnected and its next connect refused."""
    async with pool.connection() as conn:
        data = await provisioning.revoke(
            conn, admin_url=secret(settings.mqtt_admin_url), device_id=device_id, by=who.username
        )
    return ok(data)

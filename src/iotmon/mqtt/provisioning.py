"""Device credentials: issued on the broker (``credentials.DynsecAdmin``) and recorded in
PostgreSQL (``mqtt_credential``, the password only as a hash). Used by the admin API and by
``iotmon devices provision|revoke``.

Nothing half-written: the record changes in a transaction that holds the device's row locked
while the broker is asked, and commits only after the broker accepted; a broker that is away
or refuses rolls it back. The one gap left is a commit that fails after the broker accepted:
the new credentials are then deleted from the broker again (best effort) and the error raised;
provisioning again repairs whatever is left.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from psycopg import AsyncConnection

from iotmon import logging as log
from iotmon.mqtt.credentials import CredentialsError, DynsecAdmin, Issued
from iotmon.timefmt import iso_utc

logger = log.get(__name__)


class NotConfigured(CredentialsError):
    """No admin URL: provisioning is off."""


class DeviceNotFound(CredentialsError):
    pass


class NoCredentials(CredentialsError):
    """Revoking a device that has none."""


NOT_CONFIGURED = (
    "MQTT provisioning is not configured: set IOTMON_MQTT_ADMIN_URL to the broker's dynamic"
    " security admin (scripts/infra.sh env prints it)"
)


def _admin(admin_url: str | None) -> str:
    if not admin_url:
        raise NotConfigured(NOT_CONFIGURED)
    return admin_url


def _issue(admin_url: str, device_id: str, root: str) -> Issued:
    with DynsecAdmin(admin_url) as admin:
        return admin.issue(device_id, root)


def _revoke(admin_url: str, username: str) -> bool:
    with DynsecAdmin(admin_url) as admin:
        return admin.revoke(username)


async def _lock_device(conn: AsyncConnection[Any], device_id: str) -> None:
    cur = await conn.execute("SELECT 1 FROM devices WHERE device_id = %s FOR UPDATE", (device_id,))
    if await cur.fetchone() is None:
        raise DeviceNotFound(f"device {device_id!r} does not exist")


async def provision(
    conn: AsyncConnection[Any], *, admin_url: str | None, device_id: str, root: str, by: str
) -> dict[str, Any]:
    """New credentials for a registered device (the previous ones stop working and a client
    connected with them is disconnected). The password is in the result, and nowhere else."""
    url = ""
    issued: Issued | None = None
    try:
        async with conn.transaction():
            await _lock_device(conn, device_id)
            url = _admin(admin_url)
            await conn.execute(
                "UPDATE mqtt_credential SET revoked_at = now(), revoked_by = %s"
                " WHERE device_id = %s AND revoked_at IS NULL",
                (by, device_id),
            )
            issued = await asyncio.to_thread(_issue, url, device_id, root)
            cur = await conn.execute(
                "INSERT INTO mqtt_credential"
                " (device_id, username, password_hash, topics, created_by)"
                " VALUES (%s, %s, %s, %s, %s) RETURNING created_at",
                (device_id, issued.username, issued.password_hash, list(issued.topics), by),
            )
            row = await cur.fetchone()
            assert row is not None
    except Exception:
        if issued is not None:  # the broker took them, PostgreSQL did not: take them back
            try:
                await asyncio.to_thread(_revoke, url, issued.username)
            except CredentialsError as exc:
                logger.error("could not undo credentials", device=device_id, error=str(exc))
        raise
    logger.info("mqtt credentials issued", device=device_id, by=by, topics=list(issued.topics))
    return {
        "deviceId": device_id,
        "username": issued.username,
        "password": issued.password,
        "topics": list(issued.topics),
        "createdAt": iso_utc(row[0]),
        "createdBy": by,
    }


async def revoke(
    conn: AsyncConnection[Any], *, admin_url: str | None, device_id: str, by: str
) -> dict[str, Any]:
    """Delete the device's credentials on the broker (a connected client is disconnected at
    once) and mark the record revoked."""
    async with conn.transaction():
        await _lock_device(conn, device_id)
        url = _admin(admin_url)
        cur = await conn.execute(
            "UPDATE mqtt_credential SET revoked_at = now(), revoked_by = %s"
            " WHERE device_id = %s AND revoked_at IS NULL RETURNING username, revoked_at",
            (by, device_id),
        )
        row = await cur.fetchone()
        username = row[0] if row else device_id
        on_broker = await asyncio.to_thread(_revoke, url, username)
        if row is None and not on_broker:
            raise NoCredentials(f"device {device_id!r} has no MQTT credentials")
    logger.info("mqtt credentials revoked", device=device_id, by=by)
    return {
        "deviceId": device_id,
        "username": username,
        "revoked": True,
        "revokedAt": iso_utc(row[1]) if row else iso_utc(),
        "revokedBy": by,
    }


async def current(conn: AsyncConnection[Any], device_id: str) -> dict[str, Any]:
    """The device's live credentials (never the password or its hash), or NoCredentials."""
    await _device_exists(conn, device_id)
    cur = await conn.execute(
        "SELECT username, topics, created_at, created_by FROM mqtt_credential"
        " WHERE device_id = %s AND revoked_at IS NULL",
        (device_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise NoCredentials(f"device {device_id!r} has no MQTT credentials")
    return {
        "deviceId": device_id,
        "username": row[0],
        "topics": list(row[1]),
        "createdAt": iso_utc(row[2]),
        "createdBy": row[3],
    }


async def _device_exists(conn: AsyncConnection[Any], device_id: str) -> None:
    cur = await conn.execute("SELECT 1 FROM devices WHERE device_id = %s", (device_id,))
    if await cur.fetchone() is None:
        raise DeviceNotFound(f"device {device_id!r} does not exist")


def broker_address(admin_url: str) -> tuple[str, int]:
    u = urlsplit(admin_url)
    return u.hostname or "127.0.0.1", u.port or 1883


def mosquitto_pub_line(issued: dict[str, Any], admin_url: str, root: str) -> str:
    """A command that publishes one reading as the device, to try the credentials."""
    host, port = broker_address(admin_url)
    device = issued["deviceId"]
    body = f'{{"timestamp": "{iso_utc()}", "value": 1.0}}'
    return (
        f"mosquitto_pub -V mqttv5 -q 1 -h {host} -p {port} -u '{issued['username']}'"
        f" -P '{issued['password']}' -t '{root}devices/{device}/telemetry' -m '{body}'"
    )

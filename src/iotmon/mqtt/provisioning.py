"""Device credentials: issued on the broker (``credentials.DynsecAdmin``) and recorded in
PostgreSQL (``mqtt_credential``, the password only as a hash). Used by the admin API and by
``iotmon devices provision|revoke``.

Nothing half-written: the record changes in a transaction that holds the device's row locked
while the broker is asked, and commits only after the broker accepted; a broker that is away
or refuses rolls it back. The one gap left is a commit that fails after the broker accepted:
the new credentials are then deleted from the broker again (best effort) and the error raised;
provisioning again repairs whatever is left.

Record only: the embedded broker of ``iotmon up`` (``embedded.py``, no ``IOTMON_MQTT_URL``)
has no admin; it reads the devices' credentials from ``mqtt_credential`` itself. Its admin
URL is ``embedded://127.0.0.1:<port>`` (``embedded_admin_url``): set in the process by
``iotmon up``, and taken by ``admin_url`` for the CLI in another shell. Provisioning then
writes (revoking, marks) the record only; the broker believes a record ``embedded.TTL_S``
(2 s), so a revocation, or new credentials, take effect within that, and a session connected
with revoked ones is closed.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any
from urllib.parse import urlsplit

from psycopg import AsyncConnection

from iotmon import logging as log
from iotmon.config import Settings, secret
from iotmon.mqtt.credentials import (
    CredentialsError,
    DynsecAdmin,
    Issued,
    device_topics,
    hash_password,
)
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
    " security admin (scripts/infra.sh env prints it), or leave IOTMON_MQTT_URL unset and"
    " IOTMON_MQTT_EMBEDDED_PORT non-zero for the embedded broker of `iotmon up`"
)
EMBEDDED_SCHEME = "embedded"


def embedded_admin_url(host: str, port: int) -> str:
    """The admin URL of the embedded broker on ``host:port``: provisioning records only."""
    return f"{EMBEDDED_SCHEME}://{host}:{port}"


def record_only(admin_url: str) -> bool:
    return urlsplit(admin_url).scheme == EMBEDDED_SCHEME


def admin_url(settings: Settings) -> str | None:
    """Where provisioning issues credentials: ``IOTMON_MQTT_ADMIN_URL``; without it and without
    a broker (``IOTMON_MQTT_URL``), the embedded broker ``iotmon up`` runs with these settings
    (record only: it reads the database ``iotmon up`` uses, the same one as this process's when
    IOTMON_DATABASE_URL and IOTMON_DATA_DIR are the same); None: provisioning is off."""
    url = secret(settings.mqtt_admin_url)
    if url:
        return url
    if settings.mqtt_url is None and settings.mqtt_embedded_port:
        return embedded_admin_url("127.0.0.1", settings.mqtt_embedded_port)  # embedded.HOST
    return None


def _admin(admin_url: str | None) -> str:
    if not admin_url:
        raise NotConfigured(NOT_CONFIGURED)
    return admin_url


def _issue(admin_url: str, device_id: str, root: str) -> Issued:
    if record_only(admin_url):  # the embedded broker reads the record
        password = secrets.token_urlsafe(24)
        return Issued(device_id, password, hash_password(password), device_topics(device_id, root))
    with DynsecAdmin(admin_url) as admin:
        return admin.issue(device_id, root)


def _revoke(admin_url: str, username: str) -> bool:
    """Whether the broker had the client (record only: nothing to ask, False)."""
    if record_only(admin_url):
        return False
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


def mosquitto_pub_line(
    issued: dict[str, Any], admin_url: str, root: str, *, body: str | None = None
) -> str:
    """A command that publishes one reading (``body``, default: 1.0 now) as the device, to try
    the credentials."""
    host, port = broker_address(admin_url)
    device = issued["deviceId"]
    body = body or f'{{"timestamp": "{iso_utc()}", "value": 1.0}}'
    version = "mqttv311" if record_only(admin_url) else "mqttv5"  # amqtt speaks 3.1.1
    return (
        f"mosquitto_pub -V {version} -q 1 -h {host} -p {port} -u '{issued['username']}'"
        f" -P '{issued['password']}' -t '{root}devices/{device}/telemetry' -m '{body}'"
    )

"""Device profiles in PostgreSQL (``device_profiles``, ``devices.profile``)."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb

from iotmon.profiles.models import Profile, ProfileBody
from iotmon.timefmt import iso_utc


class ProfileNotFound(LookupError):
    pass


class ProfileExists(ValueError):
    pass


class ProfileInUse(ValueError):
    pass


class DeviceNotFound(LookupError):
    pass


_COLUMNS = "name, description, channels, created_at, updated_at"


def _json(row: tuple[Any, ...], devices: list[str] | None = None) -> dict[str, Any]:
    name, description, channels, created, updated = row
    out = {
        "name": name,
        "description": description,
        "channels": channels,
        "createdAt": iso_utc(created),
        "updatedAt": iso_utc(updated),
    }
    if devices is not None:
        out["devices"] = devices
    return out


def _channels(body: ProfileBody) -> Jsonb:
    return Jsonb([c.model_dump(mode="json", by_alias=True) for c in body.channels], dumps=_dumps)


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def list_profiles(conn: psycopg.AsyncConnection[Any]) -> list[dict[str, Any]]:
    cur = await conn.execute(
        f"SELECT {_COLUMNS}, (SELECT count(*) FROM devices d WHERE d.profile = p.name)"
        " FROM device_profiles p ORDER BY name"
    )
    return [_json(r[:5]) | {"deviceCount": r[5]} for r in await cur.fetchall()]


async def get_profile(conn: psycopg.AsyncConnection[Any], name: str) -> dict[str, Any]:
    cur = await conn.execute(f"SELECT {_COLUMNS} FROM device_profiles WHERE name = %s", (name,))
    row = await cur.fetchone()
    if row is None:
        raise ProfileNotFound(f"profile {name!r} does not exist")
    cur = await conn.execute(
        "SELECT device_id FROM devices WHERE profile = %s ORDER BY device_id LIMIT 1000", (name,)
    )
    return _json(row, [r[0] for r in await cur.fetchall()])


async def create_profile(conn: psycopg.AsyncConnection[Any], profile: Profile) -> dict[str, Any]:
    cur = await conn.execute(
        "INSERT INTO device_profiles (name, description, channels) VALUES (%s, %s, %s)"
        f" ON CONFLICT (name) DO NOTHING RETURNING {_COLUMNS}",
        (profile.name, profile.description, _channels(profile)),
    )
    row = await cur.fetchone()
    if row is None:
        raise ProfileExists(f"profile {profile.name!r} already exists (PUT to replace it)")
    return _json(row, [])


async def replace_profile(
    conn: psycopg.AsyncConnection[Any], name: str, body: ProfileBody
) -> dict[str, Any]:
    cur = await conn.execute(
        "UPDATE device_profiles SET description = %s, channels = %s, updated_at = now()"
        f" WHERE name = %s RETURNING {_COLUMNS}",
        (body.description, _channels(body), name),
    )
    row = await cur.fetchone()
    if row is None:
        raise ProfileNotFound(f"profile {name!r} does not exist (POST to create it)")
    return _json(row)


async def delete_profile(conn: psycopg.AsyncConnection[Any], name: str) -> None:
    try:
        cur = await conn.execute("DELETE FROM device_profiles WHERE name = %s", (name,))
    except psycopg.errors.ForeignKeyViolation:
        cur = await conn.execute("SELECT count(*) FROM devices WHERE profile = %s", (name,))
        n = (await cur.fetchone() or (0,))[0]
        raise ProfileInUse(
            f"profile {name!r} is used by {n} device(s): assign them another first"
        ) from None
    if cur.rowcount == 0:
        raise ProfileNotFound(f"profile {name!r} does not exist")


async def assign_profile(
    conn: psycopg.AsyncConnection[Any], device_id: str, profile: str | None
) -> dict[str, Any]:
    """Point a device at a profile (or at none). A device not yet known is registered (an MQTT
    device is declared by giving it a profile), with the profile's name as its type."""
    if profile is not None:
        cur = await conn.execute("SELECT 1 FROM device_profiles WHERE name = %s", (profile,))
        if await cur.fetchone() is None:
            raise ProfileNotFound(f"profile {profile!r} does not exist")
        cur = await conn.execute(
            "INSERT INTO devices (device_id, device_type, profile) VALUES (%s, %s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET profile = EXCLUDED.profile, updated_at = now()"
            " RETURNING device_id, profile",
            (device_id, profile, profile),
        )
    else:
        cur = await conn.execute(
            "UPDATE devices SET profile = NULL, updated_at = now() WHERE device_id = %s"
            " RETURNING device_id, profile",
            (device_id,),
        )
    row = await cur.fetchone()
    if row is None:
        raise DeviceNotFound(f"device {device_id!r} does not exist")
    return {"deviceId": row[0], "profile": row[1]}


def load_all(conn: psycopg.Connection[Any]) -> tuple[dict[str, Any], dict[str, tuple[str, Any]]]:
    """For the decoder: every profile's raw row (name -> channels, description), and every
    device with a profile (device -> (profile name, location)). Synchronous: the decoder's
    pipeline runs in a worker thread."""
    profiles = {
        name: {"description": description, "channels": channels}
        for name, description, channels in conn.execute(
            "SELECT name, description, channels FROM device_profiles"
        ).fetchall()
    }
    devices = {
        device_id: (profile, location)
        for device_id, profile, location in conn.execute(
            "SELECT device_id, profile, location FROM devices WHERE profile IS NOT NULL"
        ).fetchall()
    }
    return profiles, devices

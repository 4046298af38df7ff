"""Device profiles in PostgreSQL (``device_profiles``, ``devices.profile``)."""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
from psycopg.types.json import Jsonb
from pydantic import ValidationError

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


class RangeConflict(ValueError):
    """A sensor type's range differs from the one another stored profile declares."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field  # e.g. channels.2.range


# Profile writes check the other profiles' ranges under this lock (a transaction-scoped
# advisory lock): two writers declaring one new type with two ranges cannot both pass.
_WRITE_LOCK = 0x10_7E_0012


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


def range_conflict(
    name: str, body: ProfileBody, others: list[tuple[str, Any]]
) -> RangeConflict | None:
    """The first sensor type ``body`` declares with another range than a stored profile
    (``others``: (name, channels) of the other profiles, by name) does, or None."""
    declared = body.declared_ranges()
    if not declared:
        return None
    for other, channels in others:
        if other == name:
            continue
        try:
            theirs = ProfileBody.model_validate({"channels": channels}).declared_ranges()
        except ValidationError:
            continue  # an invalid stored profile declares nothing (the decoder skips it too)
        for sensor_type, (i, mine) in declared.items():
            got = theirs.get(sensor_type)
            if got is not None and got[1] != mine:
                return RangeConflict(
                    f"channels.{i}.range",
                    f"sensor type {sensor_type!r} has range {got[1]} in profile {other!r}:"
                    f" channel {body.channels[i].name!r} declares {mine}. One type, one range:"
                    " give the same one, or another sensor type",
                )
    return None


async def _check_ranges(conn: psycopg.AsyncConnection[Any], name: str, body: ProfileBody) -> None:
    """Inside the write's transaction: lock, then compare with the stored profiles."""
    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_WRITE_LOCK,))
    if not body.declared_ranges():
        return
    cur = await conn.execute(
        "SELECT name, channels FROM device_profiles WHERE name <> %s ORDER BY name", (name,)
    )
    conflict = range_conflict(name, body, list(await cur.fetchall()))
    if conflict is not None:
        raise conflict


async def create_profile(conn: psycopg.AsyncConnection[Any], profile: Profile) -> dict[str, Any]:
    async with conn.transaction():
        await _check_ranges(conn, profile.name, profile)
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
    async with conn.transaction():
        await _check_ranges(conn, name, body)
        cur = await conn.execute(
            "UPDATE device_profiles SET description = %s, channels = %s, updated_at = now()"
            f" WHERE name = %s RETURNING {_COLUMNS}",
            (body.description, _channels(body), name),
        )
        row = await cur.fetchone()
    if row is None:
        raise ProfileNotFound(f"profile {name!r} does not exist (POST to create it)")
    return _json(row)


async def apply_profile(
    conn: psycopg.AsyncConnection[Any], profile: Profile
) -> tuple[dict[str, Any], bool]:
    """Create or replace (``iotmon profiles apply``): the profile, and whether it is new."""
    async with conn.transaction():
        await _check_ranges(conn, profile.name, profile)
        cur = await conn.execute(
            "INSERT INTO device_profiles (name, description, channels) VALUES (%s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET description = EXCLUDED.description,"
            " channels = EXCLUDED.channels, updated_at = now()"
            f" RETURNING {_COLUMNS}, (xmax = 0)",
            (profile.name, profile.description, _channels(profile)),
        )
        row = await cur.fetchone()
    assert row is not None
    return _json(row[:5]), bool(row[5])


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

"""The sensor types a reading may have, and their physical ranges (DESIGN.md 4.2): the built-in
ones (``BUILTIN_RANGES``) and whatever the stored profiles declare.

Roles that validate readings (ingestion, processing) hold a snapshot of it, loaded from
PostgreSQL before they consume and reloaded every few seconds beside their hot path: the
snapshot is a plain dict, swapped whole, so a reading's check stays one dict lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import psycopg
from pydantic import ValidationError

from iotmon import logging as log
from iotmon.profiles.models import BUILTIN_RANGES, ProfileBody

logger = log.get(__name__)

Ranges = dict[str, tuple[float, float]]
MISS_RELOAD_S = 1.0  # an unknown type reloads at most this often


def ranges_of(profiles: Iterable[tuple[str, Any]]) -> tuple[Ranges, list[str]]:
    """The built-in ranges plus those the profiles ((name, stored channels), in any order)
    declare, and what was left out. A stored profile that does not validate declares nothing
    (the decoder skips it too). Two profiles giving one type two ranges cannot be written
    through the API or the CLI; should the table say so anyway (written by hand), the first
    profile by name wins and the other's declaration is left out."""
    out: Ranges = dict(BUILTIN_RANGES)
    by: dict[str, str] = {}
    skipped: list[str] = []
    for name, channels in sorted(profiles, key=lambda p: p[0]):
        try:
            declared = ProfileBody.model_validate({"channels": channels}).declared_ranges()
        except ValidationError:
            skipped.append(f"profile {name!r} is invalid")
            continue
        for sensor_type, (_, r) in declared.items():
            got = out.get(sensor_type)
            if got is not None and got != r.bounds():
                skipped.append(
                    f"profile {name!r} gives {sensor_type!r} {r}, profile {by[sensor_type]!r}"
                    f" [{got[0]:g}, {got[1]:g}] (kept)"
                )
                continue
            out[sensor_type] = r.bounds()
            by.setdefault(sensor_type, name)
    return out, skipped


def load(conn: psycopg.Connection[Any]) -> tuple[Ranges, list[str]]:
    rows = conn.execute("SELECT name, channels FROM device_profiles").fetchall()
    return ranges_of(rows)


class SensorTypes:
    """A snapshot of the valid sensor types and their ranges, from PostgreSQL.

    ``await start(stop)`` before consuming (it retries until PostgreSQL answers: a reading of a
    declared type must not be dead-lettered because the declaration was not read yet), then
    ``follow(stop)`` beside the role's work: every ``refresh_s`` it reloads, and calls
    ``on_change`` with the new dict when something changed. On a failed reload the last
    snapshot stays."""

    def __init__(
        self, database_url: str, refresh_s: float, on_change: Callable[[Ranges], None]
    ) -> None:
        self.database_url = database_url
        self.refresh_s = refresh_s
        self.on_change = on_change
        self.ranges: Ranges = dict(BUILTIN_RANGES)
        self.loaded = False
        self._conn: psycopg.Connection[Any] | None = None
        self._warned: set[str] = set()
        self._lock = threading.Lock()  # the periodic reload and a miss's, from two threads
        self._miss_at = -1e18

    def reload(self) -> bool:
        """One reload (blocking: run it in a thread). True if the snapshot changed."""
        with self._lock:
            return self._reload()

    def reload_on_miss(self) -> bool:
        """A reading of a type the snapshot lacks: reload now, at most once a second (the
        profile may have been applied a moment ago). True if the snapshot changed."""
        now = time.monotonic()
        if now - self._miss_at < MISS_RELOAD_S:
            return False
        self._miss_at = now
        try:
            return self.reload()
        except (psycopg.Error, OSError) as exc:
            logger.error("sensor types not reloaded", error=str(exc)[:300])
            return False

    def _reload(self) -> bool:
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(
                    self.database_url,
                    autocommit=True,
                    connect_timeout=5,
                    application_name="iotmon-sensor-types",
                    options="-c statement_timeout=5000",
                )
            ranges, skipped = load(self._conn)
        except (psycopg.Error, OSError):
            self._close()
            raise
        for why in skipped:
            if why not in self._warned:
                logger.warning("profile declaration left out", reason=why)
        self._warned = set(skipped)
        changed = ranges != self.ranges or not self.loaded
        self.loaded = True
        if changed:
            added = sorted(ranges.keys() - self.ranges.keys())
            removed = sorted(self.ranges.keys() - ranges.keys())
            self.ranges = ranges
            self.on_change(ranges)
            if added or removed:
                logger.info("sensor types changed", added=added, removed=removed)
        return changed

    async def start(self, stop: asyncio.Event) -> bool:
        """Load once, retrying while PostgreSQL is away; False if stopped first."""
        backoff = 0.5
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.reload)
                return True
            except (psycopg.Error, OSError) as exc:
                logger.error("sensor types not loaded yet, retrying", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 10)
        return False

    async def follow(self, stop: asyncio.Event) -> None:
        """Reload every ``refresh_s`` until ``stop``."""
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.refresh_s)
                if stop.is_set():
                    break
                try:
                    await asyncio.to_thread(self.reload)
                except (psycopg.Error, OSError) as exc:  # keep the last snapshot meanwhile
                    logger.error("sensor types not reloaded", error=str(exc)[:300])
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

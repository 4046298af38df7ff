"""Versioned migrations: ``migrations/YYYYMMDD_NNNN_slug.sql``, applied once each, in order.

An advisory lock serialises concurrent ``iotmon migrate`` runs (several roles starting at once).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import psycopg

from iotmon import logging as log

logger = log.get(__name__)

_LOCK_KEY = 0x10_7E_60_01


def available() -> list[tuple[str, str]]:
    """(version, sql) of every migration file, sorted by version."""
    folder = resources.files("iotmon.db") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text(encoding="utf-8")) for f in files]


def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply what is missing; return the versions applied now. ``conn`` is autocommit."""
    applied_now: list[str] = []
    conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text CONSTRAINT pk_schema_migrations PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        for version, sql in available():
            if version in done:
                continue
            with conn.transaction():
                conn.execute(sql.encode())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            logger.info("migration applied", version=version)
            applied_now.append(version)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now

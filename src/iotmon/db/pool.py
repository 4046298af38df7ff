"""Connections to PostgreSQL for the roles' hot paths (the web role pools its own)."""

from __future__ import annotations

import threading
import time

import psycopg
from psycopg.rows import TupleRow


def connect(
    url: str, *, autocommit: bool = False, application_name: str = "iotmon"
) -> psycopg.Connection[TupleRow]:
    return psycopg.connect(url, autocommit=autocommit, application_name=application_name)


def connect_retrying(
    url: str,
    *,
    attempts: int = 30,
    delay: float = 1.0,
    autocommit: bool = True,
    application_name: str = "iotmon",
    stop: threading.Event | None = None,
) -> psycopg.Connection[TupleRow]:
    """Connect (autocommit: use ``conn.transaction()`` blocks), waiting for a database that is
    (re)starting; with ``stop``, giving up as soon as it is set (a role told to stop while the
    database is away stops within a second, instead of after every attempt)."""
    for attempt in range(attempts):
        try:
            return connect(url, autocommit=autocommit, application_name=application_name)
        except psycopg.OperationalError:
            if attempt == attempts - 1 or (stop is not None and stop.is_set()):
                raise
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)
    raise AssertionError("unreachable")

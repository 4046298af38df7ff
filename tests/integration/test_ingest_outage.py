"""Ingestion outlives a database outage during a rebalance: when the stored offsets cannot be
read for ``OFFSETS_TIMEOUT_S``, the member leaves its group instead of ending the role, and
joins again (storing everything exactly once) when PostgreSQL answers."""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.readings import ingest
from iotmon.readings.ingest import Ingestor

from .helpers import free_port, ingest_config, produce_readings, query


class Gate:
    """A TCP forwarder to PostgreSQL on ``port`` that is closed until ``open()``: from the
    ingestor's side, a database that is down, then back."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []

    def open(self) -> None:
        ls = socket.socket()
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(16)
        self._listener = ls
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        for s in [self._listener, *self._conns]:
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()


def test_ingestion_leaves_and_rejoins_its_group_across_a_database_outage(
    settings: Settings, kafka_bus: KafkaBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ingest, "OFFSETS_TIMEOUT_S", 1.0)
    assert settings.database_url is not None
    url = settings.database_url.get_secret_value()
    info = conninfo_to_dict(url)
    gate = Gate(free_port(), (str(info.get("host") or "127.0.0.1"), int(info.get("port") or 5432)))
    gated_url = make_conninfo(url, host="127.0.0.1", port=str(gate.port))

    topic = settings.topic("sensors-data")
    produce_readings(kafka_bus, topic, 500)
    ends = kafka_bus.end_offsets(topic)
    ingestor = Ingestor(config=ingest_config(settings), bus=kafka_bus, database_url=gated_url)
    stop = threading.Event()
    until = {(topic, p): end for p, end in enumerate(ends)}
    result: list[object] = []
    worker = threading.Thread(
        target=lambda: result.append(ingestor.run(stop, until=until)), daemon=True
    )
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while ingestor.stats.rejoins == 0 and time.monotonic() < deadline:
            assert worker.is_alive(), "ingestion ended while the database was down"
            time.sleep(0.2)
        assert ingestor.stats.rejoins >= 1, "ingestion never gave up on the unreadable offsets"
        assert worker.is_alive()
        gate.open()  # the database is back
        worker.join(90)
        assert not worker.is_alive(), "ingestion did not drain after the database came back"
    finally:
        stop.set()
        worker.join(30)
        gate.close()
    assert result, "ingestion ended with an exception"
    assert query(url, "SELECT count(*), count(DISTINCT value) FROM sensor_readings") == [(500, 500)]

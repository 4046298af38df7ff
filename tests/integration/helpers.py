"""Shared pieces of the integration tests."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg

from iotmon.bus import Bus
from iotmon.config import Settings
from iotmon.devices.models import SEEDED
from iotmon.readings.ingest import IngestConfig, Ingestor, IngestStats


def ingest_config(settings: Settings, **overrides: Any) -> IngestConfig:
    values: dict[str, Any] = {
        "topic": settings.topic("sensors-data"),
        "dlq_topic": settings.topic("sensors-data.dlq"),
        "group_id": settings.ingestion_group,
        "batch_size": 5_000,
        "batch_wait_s": 0.05,
    }
    values.update(overrides)
    return IngestConfig(**values)


def drain(settings: Settings, bus: Bus, end_offsets: list[int], **overrides: Any) -> IngestStats:
    """Run the real ingestor until every partition reached ``end_offsets``, with a deadline."""
    assert settings.database_url is not None
    ingestor = Ingestor(
        config=ingest_config(settings, **overrides),
        bus=bus,
        database_url=settings.database_url.get_secret_value(),
    )
    stop = threading.Event()
    timer = threading.Timer(120, stop.set)
    timer.start()
    try:
        until = {(settings.topic("sensors-data"), p): end for p, end in enumerate(end_offsets)}
        stats = ingestor.run(stop, until=until)
    finally:
        timer.cancel()
    assert not stop.is_set(), "ingestion did not drain within 120 s"
    return stats


def reading(i: int, *, device_count: int = 5, base: datetime | None = None) -> dict[str, Any]:
    """The i-th of a sequence of distinct, valid readings: value i / 10,000, unique, and for
    i below 10^6 inside the physical range of every sensor type (quality is 0-100 %)."""
    base = base or datetime.now(UTC) - timedelta(minutes=30)
    kind = SEEDED[i % len(SEEDED)]
    ts = base + timedelta(milliseconds=i)
    return {
        "deviceId": f"device-{i % device_count + 1:03d}"
        if device_count <= 5
        else f"device-{i % device_count + 1:04d}",
        "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "sensorType": kind.sensor_type,
        "value": i / 10_000,
        "unit": kind.unit,
        "location": kind.location,
        "status": "active",
    }


def produce_readings(bus: Bus, topic: str, count: int, *, start: int = 0) -> None:
    producer = bus.producer()
    for i in range(start, start + count):
        msg = reading(i)
        producer.produce(topic, orjson.dumps(msg), key=str(msg["deviceId"]).encode())
    assert producer.flush(30) == 0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def query(url: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(sql, tuple(params)).fetchall()  # type: ignore[arg-type]


def read_topic(bus: Bus, topic: str, count: int, timeout: float = 30) -> list[Any]:
    """Up to ``count`` messages of ``topic`` from its start (a fresh group), within ``timeout``."""
    consumer = bus.consumer(f"reader-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic])
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        got.extend(consumer.consume(100, 0.5))
    consumer.close()
    return got


class Proxy:
    """A TCP proxy on 127.0.0.1 that can be cut (listener closed, every connection reset) and
    restored on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def up(self) -> None:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", self.port))
        server.listen(64)
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            server, self._server = self._server, None
            conns, self._conns = self._conns, []
        if server is not None:
            with contextlib.suppress(OSError):
                server.shutdown(socket.SHUT_RDWR)
            server.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._server is not server:
                    client.close()
                    upstream.close()
                    return
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

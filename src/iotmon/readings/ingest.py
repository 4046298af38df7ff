"""Ingestion pipeline: bus -> validate -> COPY into PostgreSQL, exactly once.

Each batch's rows and the bus offsets they came from are committed in one transaction
(``ingest_offsets``); on assignment the consumer seeks to the stored offsets, so a crash at any
point neither loses nor doubles a reading. The offset update is fenced: it only succeeds when
the stored offset is still the one this consumer started the batch from, so a consumer that
lost its partitions in a rebalance cannot write a batch twice.

Rejected messages go to the dead-letter topic (original bytes and headers, plus the reason)
and are flushed before the batch commits: a DLQ message may repeat after a crash, never vanish.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from prometheus_client import Counter, Histogram

from iotmon import logging as log
from iotmon.bus import OFFSET_BEGINNING, Bus, BusError, Consumer, Message, Producer, TopicPartition
from iotmon.db import partitions
from iotmon.db.pool import connect_retrying
from iotmon.readings.models import COPY_COLUMNS, COPY_TYPES, Limits, Rejection, Row, parse

logger = log.get(__name__)

INGESTED = Counter("iotmon_readings_ingested_total", "Readings stored in PostgreSQL")
REJECTED = Counter("iotmon_readings_rejected_total", "Messages sent to the DLQ", ["reason"])
REGISTERED = Counter("iotmon_devices_registered_total", "Unknown devices registered")
BATCH_SECONDS = Histogram(
    "iotmon_ingest_batch_seconds",
    "Time to validate and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
FENCED = Counter(
    "iotmon_ingest_fenced_batches_total",
    "Batches dropped because another consumer owns their partition now",
)

_COPY_SQL = "COPY sensor_readings ({}) FROM STDIN (FORMAT BINARY)".format(
    ", ".join(f'"{c}"' for c in COPY_COLUMNS)
)


@dataclass
class IngestStats:
    stored: int = 0
    rejected: int = 0
    batches: int = 0
    registered: int = 0
    last_batch_at: float = 0.0
    positions: dict[tuple[str, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestConfig:
    topic: str
    dlq_topic: str
    group_id: str
    batch_size: int = 20_000
    batch_wait_s: float = 0.2
    limits: Limits = field(default_factory=Limits)
    partitions_ahead_days: int = 3


class FencedError(Exception):
    """Another consumer has moved this partition's stored offset: drop the batch, re-seek."""


class Ingestor:
    def __init__(
        self,
        *,
        config: IngestConfig,
        bus: Bus,
        database_url: str,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.bus = bus
        self.database_url = database_url
        self.clock = clock
        self.stats = IngestStats()
        self._conn: psycopg.Connection[Any] | None = None
        self._consumer: Consumer | None = None
        self._dlq: Producer | None = None
        # Stored offset per partition as last read or written by us (None = never stored).
        self._expected: dict[tuple[str, int], int | None] = {}
        self._known_devices: set[str] = set()
        self._known_days: set[date] = set()

    # --- database ---
    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect_retrying(self.database_url, application_name="iotmon-ingestion")
            self._known_devices = {
                r[0] for r in self._conn.execute("SELECT device_id FROM devices").fetchall()
            }
            self._known_days = partitions.existing(self._conn)
        return self._conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
        self._conn = None

    def _load_offsets(self, tps: list[TopicPartition]) -> dict[tuple[str, int], int | None]:
        conn = self.conn
        bus_id = self.bus.bus_id
        with conn.transaction():
            with conn.cursor() as cur:
                cur.executemany(
                    'INSERT INTO ingest_offsets (bus_id, group_id, topic, "partition")'
                    " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    [(bus_id, self.config.group_id, tp.topic, tp.partition) for tp in tps],
                )
            rows = conn.execute(
                'SELECT topic, "partition", next_offset FROM ingest_offsets'
                " WHERE bus_id = %s AND group_id = %s AND topic = ANY(%s)",
                (bus_id, self.config.group_id, list({tp.topic for tp in tps})),
            ).fetchall()
        return {(t, p): o for t, p, o in rows}

    # --- bus callbacks (run inside consume) ---
    def _on_assign(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        stored = self._load_offsets(tps)
        out = []
        for tp in tps:
            off = stored.get((tp.topic, tp.partition))
            self._expected[(tp.topic, tp.partition)] = off
            out.append(
                TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING if off is None else off)
            )
        logger.info(
            "partitions assigned",
            partitions={f"{t}[{p}]": o for (t, p), o in self._expected.items()},
        )
        return out

    def _on_revoke(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self._expected.pop((tp.topic, tp.partition), None)
        logger.info("partitions revoked", partitions=[f"{tp.topic}[{tp.partition}]" for tp in tps])

    def _reseek(self) -> None:
        assert self._consumer is not None
        tps = [TopicPartition(t, p) for (t, p) in self._expected]
        if not tps:
            return
        stored = self._load_offsets(tps)
        for tp in tps:
            off = stored.get((tp.topic, tp.partition))
            self._expected[(tp.topic, tp.partition)] = off
            self._consumer.seek(
                TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING if off is None else off)
            )

    # --- the batch ---
    def process(self, messages: list[Message]) -> None:
        """Validate, dead-letter, write and commit one batch. Raises on failure; the caller
        re-seeks to the stored offsets and tries again."""
        started = time.perf_counter()
        now = self.clock()
        limits = self.config.limits
        rows: list[Row] = []
        rejects: list[tuple[Message, Rejection]] = []
        first: dict[tuple[str, int], int] = {}
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            key = (m.topic, m.partition)
            expected = self._expected.get(key, -1)
            if key not in self._expected:
                continue  # partition revoked while this batch was in flight
            if expected is not None and m.offset < expected:
                continue  # already stored: a redelivery after a seek
            if key not in first:
                first[key] = m.offset
            last[key] = m.offset
            try:
                rows.append(parse(m.value, now, limits))
            except Rejection as rej:
                rejects.append((m, rej))
        if not last:
            return
        for key, off in first.items():
            expected = self._expected[key]
            if expected is not None and off > expected:
                logger.warning(
                    "offsets skipped: no longer on the bus",
                    topic=key[0],
                    partition=key[1],
                    from_offset=expected,
                    to_offset=off,
                )

        if rejects:
            self._dead_letter(rejects)

        conn = self.conn
        days = {r[1].date() for r in rows} - self._known_days
        if days:
            partitions.ensure(conn, days)
            self._known_days |= days
        new_devices = {r[0]: r for r in rows if r[0] not in self._known_devices}
        bus_id = self.bus.bus_id
        with conn.transaction(), conn.cursor() as cur:
            if new_devices:
                cur.executemany(
                    "INSERT INTO devices (device_id, device_type, location, unit, status)"
                    " VALUES (%s, %s, COALESCE(%s, 'unknown'), %s, 'unregistered')"
                    " ON CONFLICT (device_id) DO NOTHING",
                    [(d, r[2], r[5], r[4]) for d, r in new_devices.items()],
                )
            if rows:
                with cur.copy(_COPY_SQL) as copy:
                    copy.set_types(COPY_TYPES)
                    write = copy.write_row
                    for row in rows:
                        write(row)
            for key, off in last.items():
                cur.execute(
                    "UPDATE ingest_offsets SET next_offset = %s, updated_at = now()"
                    ' WHERE bus_id = %s AND group_id = %s AND topic = %s AND "partition" = %s'
                    " AND next_offset IS NOT DISTINCT FROM %s",
                    (off + 1, bus_id, self.config.group_id, key[0], key[1], self._expected[key]),
                )
                if cur.rowcount != 1:
                    raise FencedError(f"{key[0]}[{key[1]}] was moved by another consumer")
        # Durable: advance our view, then tell the bus (for lag monitoring only).
        for key, off in last.items():
            self._expected[key] = off + 1
            self.stats.positions[key] = off + 1
        assert self._consumer is not None
        self._consumer.commit([TopicPartition(t, p, o + 1) for (t, p), o in last.items()])
        if new_devices:
            self._known_devices |= new_devices.keys()
            self.stats.registered += len(new_devices)
            REGISTERED.inc(len(new_devices))
            logger.info(
                "devices registered", devices=sorted(new_devices)[:20], count=len(new_devices)
            )
        self.stats.stored += len(rows)
        self.stats.rejected += len(rejects)
        self.stats.batches += 1
        self.stats.last_batch_at = time.time()
        INGESTED.inc(len(rows))
        BATCH_SECONDS.observe(time.perf_counter() - started)

    def _dead_letter(self, rejects: list[tuple[Message, Rejection]]) -> None:
        assert self._dlq is not None
        for m, rej in rejects:
            headers = [
                *m.headers,
                ("x-iotmon-reason", rej.reason.encode()),
                ("x-iotmon-detail", rej.detail.encode()[:1000]),
                ("x-iotmon-source", f"{m.topic}[{m.partition}]@{m.offset}".encode()),
            ]
            self._dlq.produce(self.config.dlq_topic, m.value, key=m.key, headers=headers)
            REJECTED.labels(rej.reason).inc()
            logger.debug(
                "rejected",
                reason=rej.reason,
                detail=rej.detail,
                topic=m.topic,
                partition=m.partition,
                offset=m.offset,
            )
        remaining = self._dlq.flush(30)
        if remaining:
            raise BusError(f"{remaining} dead-letter messages not acknowledged in time")

    # --- the loop ---
    def run(
        self, stop: threading.Event, *, until: dict[tuple[str, int], int] | None = None
    ) -> IngestStats:
        """Consume until ``stop`` is set (or, with ``until``, every partition reached its
        end offset: the benchmark's drain)."""
        consumer = self.bus.consumer(self.config.group_id, name="iotmon-ingestion")
        self._consumer = consumer
        self._dlq = self.bus.producer(name="iotmon-ingestion-dlq")
        consumer.subscribe(
            [self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        backoff = 0.5
        try:
            while not stop.is_set():
                batch = self._collect(consumer, stop)
                if not batch:
                    if until is not None and self._reached(until):
                        break
                    continue
                try:
                    self.process(batch)
                    backoff = 0.5
                except FencedError as exc:
                    FENCED.inc()
                    logger.warning("batch fenced, re-seeking", error=str(exc))
                    self._safe_reseek()
                except (psycopg.Error, BusError, OSError) as exc:
                    logger.error(
                        "batch failed, will retry from stored offsets",
                        error=str(exc),
                        error_type=type(exc).__name__,
                    )
                    self._drop_connection()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 10)
                    self._safe_reseek()
                if until is not None and self._reached(until):
                    break
        finally:
            consumer.close()
            if self._dlq is not None:
                self._dlq.close()
            self._drop_connection()
        return self.stats

    def _safe_reseek(self) -> None:
        try:
            self._reseek()
        except (psycopg.Error, BusError, OSError) as exc:
            logger.error("re-seek failed", error=str(exc))
            self._drop_connection()

    def _reached(self, until: dict[tuple[str, int], int]) -> bool:
        def stored(key: tuple[str, int]) -> int:
            return self._expected.get(key) or self.stats.positions.get(key, 0)

        return all(stored(k) >= end for k, end in until.items() if end > 0)

    def _collect(self, consumer: Consumer, stop: threading.Event) -> list[Message]:
        """Gather up to batch_size messages, waiting at most batch_wait_s once one arrived."""
        size = self.config.batch_size
        batch = consumer.consume(size, 0.5)
        if not batch:
            return batch
        deadline = time.monotonic() + self.config.batch_wait_s
        while len(batch) < size and not stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            more = consumer.consume(size - len(batch), remaining)
            if not more:
                break
            batch.extend(more)
        return batch

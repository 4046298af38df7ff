"""Ingestion pipeline: bus -> validate -> COPY into PostgreSQL, exactly once.

Two threads: the reader consumes and validates the next batches while the writer COPYs and
commits one, so Python's work overlaps PostgreSQL's (they run on different cores).

Each batch's rows and the bus offsets they came from are committed in one transaction
(``ingest_offsets``); on assignment the consumer seeks to the stored offsets, so a crash at any
point neither loses nor doubles a reading. The offset update is fenced: it only succeeds when
the stored offset is still the one this consumer started the batch from, so a consumer that
lost its partitions in a rebalance cannot write a batch twice.

Rejected messages go to the dead-letter topic (original bytes and headers, plus the reason)
and are flushed before the batch commits: a DLQ message may repeat after a crash, never vanish.
It runs on the consumer pipeline's parts (roles/pipeline.py): a decoder that cannot raise, and
a COPY that isolates the rows PostgreSQL refuses (halving the batch inside savepoints of the
batch's one transaction) and dead-letters them, so exactly-once holds for the rest.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter, methodcaller
from typing import Any, cast

import psycopg
from prometheus_client import Counter, Histogram
from psycopg import sql

from iotmon import logging as log
from iotmon import metrics
from iotmon.bus import OFFSET_BEGINNING, Bus, BusError, Consumer, Message, TopicPartition
from iotmon.bus.pipeline import DeadLetters, Reasons, decode_batch, isolate, refused_by_database
from iotmon.db import partitions
from iotmon.db.pool import connect_retrying
from iotmon.readings.models import (
    COPY_COLUMNS,
    COPY_TYPES,
    Col,
    Limits,
    Rejection,
    Row,
    parse_many,
)

logger = log.get(__name__)

INGESTED = Counter("iotmon_readings_ingested_total", "Readings stored in PostgreSQL")
REJECTED = Counter("iotmon_readings_rejected_total", "Messages sent to the DLQ", ["reason"])
REGISTERED = Counter("iotmon_devices_registered_total", "Unknown devices registered")
BATCH_SECONDS = Histogram(
    "iotmon_ingest_batch_seconds",
    "Time to validate and commit one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_TOOK = metrics.BATCH_SECONDS.labels("ingestion")
BATCH_SIZE = metrics.BATCH_MESSAGES.labels("ingestion")
AGE = metrics.READING_AGE.labels("ingestion")
FENCED = Counter(
    "iotmon_ingest_fenced_batches_total",
    "Batches dropped because another consumer owns their partition now",
)

_device, _ts = itemgetter(Col.DEVICE_ID), itemgetter(Col.TIMESTAMP)
_partition, _offset, _value = (
    methodcaller("partition"),
    methodcaller("offset"),
    methodcaller("value"),
)


OFFSETS_TIMEOUT_S = 60.0
FIRST_BATCH = 1_000  # the first batch after an assignment; each next one doubles
# Prepared batches that may wait for the writer: the reader runs that far ahead, so a slow
# fetch or a slow batch to decode does not leave the database idle.
WRITE_AHEAD = 2

COPY_SQL = "COPY sensor_readings ({}) FROM STDIN (FORMAT BINARY)".format(
    ", ".join(f'"{c}"' for c in COPY_COLUMNS)
)


@dataclass
class IngestStats:
    stored: int = 0
    rejected: int = 0
    batches: int = 0
    registered: int = 0
    last_batch_at: float = 0.0
    # time.perf_counter() at the commit of the first and of the latest batch that stored rows
    # (the benchmark's clock: it reads them after the drain instead of polling the count)
    first_stored_at: float = 0.0
    last_stored_at: float = 0.0
    rejoins: int = 0  # times the member left its group because the offsets were unreadable


@dataclass(frozen=True)
class IngestConfig:
    topic: str
    dlq_topic: str
    group_id: str
    batch_size: int = 20_000
    batch_wait_s: float = 0.2
    limits: Limits = field(default_factory=Limits)


class FencedError(Exception):
    """Another consumer has moved this partition's stored offset: drop the batch, re-seek."""


class OffsetsUnavailable(Exception):
    """The stored offsets could not be read for ``OFFSETS_TIMEOUT_S``: the member leaves its
    group (its partitions go to the others) and joins again once PostgreSQL answers."""


@dataclass
class PreparedBatch:
    """A validated batch, ready for the writer."""

    rows: list[Row]
    rejects: list[tuple[Message, Rejection]]
    messages: list[Message]  # the batch, to find the message of a row PostgreSQL refuses
    fence: dict[int, int | None]  # per partition: the stored offset the batch starts from
    end: dict[int, int]  # per partition: the next offset after the batch
    started: float
    # Computed by the reader, so the writer's connection idles less between batches (three
    # passes over 20,000 rows cost ~5 ms there, more while the reader holds the GIL).
    device_ids: set[str] = field(default_factory=set)
    oldest_at: datetime | None = None
    newest_at: datetime | None = None
    # (device id, partition) of every row: processing rebuilds a member's partitions from it
    pairs: set[tuple[str, int]] = field(default_factory=set)


class _Writer:
    """One thread that writes prepared batches in order; up to WRITE_AHEAD more wait their turn.
    ``warm`` runs first on that thread (the database connection and what it caches), while
    the reader joins the consumer group and takes its first batch: off the first row's path."""

    def __init__(
        self, write: Callable[[PreparedBatch], None], warm: Callable[[], object] | None = None
    ) -> None:
        self._write = write
        self._warm = warm
        self._queue: queue.Queue[PreparedBatch | None] = queue.Queue(maxsize=WRITE_AHEAD)
        self.error: Exception | None = None
        self._thread = threading.Thread(target=self._loop, name="iotmon-ingest-writer", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        if self._warm is not None:
            try:
                self._warm()
            except Exception as exc:  # the first write connects again, and says why
                logger.warning("ingestion writer could not connect yet", error=str(exc)[:300])
        while True:
            batch = self._queue.get()
            try:
                if batch is None:
                    return
                if self.error is None:  # after a failure, later batches are stale: drop them
                    self._write(batch)
            except Exception as exc:
                self.error = exc
            finally:
                self._queue.task_done()

    def submit(self, batch: PreparedBatch) -> None:
        self._queue.put(batch)

    def wait_idle(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()


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
        self._conn: psycopg.Connection[Any] | None = None  # the writer's
        self._offsets_conn: psycopg.Connection[Any] | None = None  # the reader's
        self._consumer: Consumer | None = None
        self._dlq: DeadLetters | None = None
        self._writer: _Writer | None = None
        self._stop = threading.Event()
        # Reader's view: per assigned partition, where the next batch starts (None = nothing
        # stored yet). It runs ahead of the database by the batches in the writer's hands.
        self._fence: dict[int, int | None] = {}
        # Durable view: per partition, the next offset as committed in PostgreSQL.
        self._durable: dict[int, int] = {}
        self._to_commit: dict[int, int] = {}
        self._commit_lock = threading.Lock()
        self._known_devices: set[str] = set()
        self._known_pairs: set[tuple[str, int]] = set()  # in device_partitions
        self._known_days: set[date] = set()
        # The size of the next batch: small after an assignment, doubling up to batch_size,
        # so the first rows are stored while the rest of the backlog is still being fetched
        # (a full first batch kept PostgreSQL idle for its fetch and its validation).
        self._ramp = FIRST_BATCH

    # --- database ---
    @property
    def conn(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = connect_retrying(
                self.database_url, application_name="iotmon-ingestion", stop=self._stop
            )
            # Commits do not wait for the WAL flush. Safe for exactly-once: a batch's rows and
            # its offsets are one transaction, so a PostgreSQL crash that loses the last commits
            # loses both, and the batch is read from Kafka again. It saves a flush per batch
            # (~9 ms of an idle database each time on the dev box).
            self._conn.execute("SET synchronous_commit = off")
            self._known_devices = {
                r[0] for r in self._conn.execute("SELECT device_id FROM devices").fetchall()
            }
            self._known_pairs = {
                (d, p)
                for d, p in self._conn.execute(
                    'SELECT device_id, "partition" FROM device_partitions'
                    " WHERE bus_id = %s AND topic = %s",
                    (self.bus.bus_id, self.config.topic),
                ).fetchall()
            }
            self._known_days = partitions.existing(self._conn)
        return self._conn

    @staticmethod
    def _close(conn: psycopg.Connection[Any] | None) -> None:
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()

    def _load_offsets(self, parts: list[int]) -> dict[int, int | None]:
        """Stored offsets of ``parts`` (rows created as needed). Retries for a while; past
        that it raises ``OffsetsUnavailable``, since a member stuck in a rebalance callback
        stalls its whole group (``run`` then leaves the group and joins again later)."""
        topic, group, backoff = self.config.topic, self.config.group_id, 0.5
        deadline = time.monotonic() + OFFSETS_TIMEOUT_S
        while True:
            try:
                if self._offsets_conn is None or self._offsets_conn.closed:
                    self._offsets_conn = connect_retrying(
                        self.database_url,
                        attempts=3,  # this loop retries, up to its own deadline
                        application_name="iotmon-ingestion-offsets",
                        stop=self._stop,
                    )
                conn, bus_id = self._offsets_conn, self.bus.bus_id
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(
                        'INSERT INTO ingest_offsets (bus_id, group_id, topic, "partition")'
                        " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        [(bus_id, group, topic, p) for p in parts],
                    )
                    rows = cur.execute(
                        'SELECT "partition", next_offset FROM ingest_offsets'
                        " WHERE bus_id = %s AND group_id = %s AND topic = %s",
                        (bus_id, group, topic),
                    ).fetchall()
                stored = dict(rows)
                return {p: stored.get(p) for p in parts}
            except (psycopg.Error, OSError) as exc:
                self._close(self._offsets_conn)
                self._offsets_conn = None
                if self._stop.is_set() or time.monotonic() > deadline:
                    raise OffsetsUnavailable(str(exc)[:300]) from exc
                logger.error("cannot read stored offsets, retrying", error=str(exc))
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10)

    def _adopt(self, stored: dict[int, int | None]) -> list[TopicPartition]:
        with self._commit_lock:
            for p, off in stored.items():
                self._fence[p] = off
                self._durable[p] = off or 0
        return [
            TopicPartition(self.config.topic, p, OFFSET_BEGINNING if off is None else off)
            for p, off in stored.items()
        ]

    # --- bus callbacks (run inside consume, on the reader thread) ---
    def _on_assign(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        if self._writer is not None:
            self._writer.wait_idle()
        out = self._adopt(self._load_offsets([tp.partition for tp in tps]))
        self._ramp = FIRST_BATCH
        logger.info(
            "partitions assigned",
            topic=self.config.topic,
            offsets={tp.partition: tp.offset for tp in out},
        )
        return out

    def _on_revoke(self, tps: list[TopicPartition]) -> None:
        if self._writer is not None:
            self._writer.wait_idle()  # what we took on is committed before we let go
        for tp in tps:
            self._fence.pop(tp.partition, None)
        logger.info(
            "partitions revoked", topic=self.config.topic, partitions=[tp.partition for tp in tps]
        )

    def _reseek(self) -> None:
        assert self._consumer is not None
        if self._fence:
            for tp in self._adopt(self._load_offsets(list(self._fence))):
                self._consumer.seek(tp)

    # --- reader: validate ---
    def prepare(self, messages: list[Message]) -> PreparedBatch | None:
        started = time.perf_counter()
        # Offsets per partition, in order within each: the last pair of a partition wins in
        # dict(), the first in dict(reversed()). C-level maps and dict builds, no Python loop
        # and no tuple per message (a list comprehension of pairs cost 0.4 us a message, a
        # tenth of the reader's work; these 0.05).
        parts: list[int] = list(map(_partition, messages))
        offs: list[int] = list(map(_offset, messages))
        last: dict[int, int] = dict(zip(parts, offs, strict=True))
        first: dict[int, int] = dict(zip(reversed(parts), reversed(offs), strict=True))
        fence = self._fence
        if any(p not in fence or (fence[p] or 0) > off for p, off in first.items()):
            messages = self._drop_stale(messages)
            parts = list(map(_partition, messages))
            first, last = {}, {}
            for m in messages:
                p = cast(int, m.partition())
                first.setdefault(p, cast(int, m.offset()))
                last[p] = cast(int, m.offset())
        if not last:
            return None
        for p, off in first.items():
            start = fence[p]
            if start is not None and off > start:
                # One offset is a transaction's commit marker (the MQTT decoder writes
                # sensors-data in transactions): routine. More: an aborted transaction's
                # records (read_committed skips them) or records retention deleted.
                (logger.debug if off - start == 1 else logger.warning)(
                    "offsets skipped: transaction markers, aborted records or retention",
                    topic=self.config.topic,
                    partition=p,
                    from_offset=start,
                    to_offset=off,
                )
        now, limits = self.clock(), self.config.limits
        raws: list[bytes | None] = list(map(_value, messages))
        if not all(raws):  # a tombstone: empty bytes, which the decoder rejects
            raws = [r or b"" for r in raws]
        rows, rejected = decode_batch(
            lambda rs: parse_many(rs, now, limits), cast(list[bytes], raws)
        )
        if rejected:  # row i came from the i-th message not rejected
            bad = {i for i, _ in rejected}
            parts = [p for i, p in enumerate(parts) if i not in bad]
        batch = PreparedBatch(
            rows=rows,
            rejects=[(messages[i], rej) for i, rej in rejected],
            messages=messages,
            fence={p: fence[p] for p in last},
            end={p: off + 1 for p, off in last.items()},
            started=started,
            device_ids=set(map(_device, rows)),
            oldest_at=min(map(_ts, rows), default=None),
            newest_at=max(map(_ts, rows), default=None),
            pairs=set(zip(map(_device, rows), parts, strict=True)),
        )
        fence.update(batch.end)
        return batch

    def _drop_stale(self, messages: list[Message]) -> list[Message]:
        """Messages of revoked partitions, or already taken (redelivered after a seek)."""
        fence = self._fence
        keep = []
        for m in messages:
            p = cast(int, m.partition())
            if p in fence and (fence[p] or 0) <= cast(int, m.offset()):
                keep.append(m)
        return keep

    # --- writer: dead-letter, COPY, offsets, commit ---
    def write(self, batch: PreparedBatch) -> None:
        assert self._dlq is not None
        self._dlq.send_all(batch.rejects)
        for _, rej in batch.rejects:
            REJECTED.labels(rej.reason).inc()
        rows, newest_at = batch.rows, batch.newest_at
        conn = self.conn
        if batch.oldest_at is not None and newest_at is not None:
            # every day from the oldest to the newest reading of the batch
            oldest, newest = batch.oldest_at.date(), newest_at.date()
            days = {oldest + timedelta(days=d) for d in range((newest - oldest).days + 1)}
            days -= self._known_days
            if days:
                partitions.ensure(conn, days)
                self._known_days |= days
        new_ids = batch.device_ids - self._known_devices
        new_devices = {r[0]: r for r in rows if r[0] in new_ids} if new_ids else {}
        new_pairs = batch.pairs - self._known_pairs
        try:
            refused = self._commit(conn, batch, new_devices, new_pairs, isolating=False)
        except Exception as exc:
            if not refused_by_database(exc) or conn.closed:
                raise
            # PostgreSQL refused something in the batch: nothing of it was committed. Again,
            # each part in a savepoint, halving down to the rows it refuses (dead-lettered).
            # Savepoints only then: the common path is one plain COPY.
            logger.warning("batch refused by PostgreSQL; isolating the rows", error=str(exc)[:300])
            refused = self._commit(conn, batch, new_devices, new_pairs, isolating=True)
        # Durable. The reader tells the bus too (for lag monitoring only: never read back);
        # consumers are not to be shared across threads.
        with self._commit_lock:
            self._durable.update(batch.end)
            self._to_commit.update(batch.end)
        self._known_pairs |= new_pairs
        if new_devices:
            self._known_devices |= new_devices.keys()
            self.stats.registered += len(new_devices)
            REGISTERED.inc(len(new_devices))
            logger.info(
                "devices registered", devices=sorted(new_devices)[:20], count=len(new_devices)
            )
        if len(rows) > len(refused):
            self.stats.last_stored_at = time.perf_counter()
            if not self.stats.first_stored_at:
                self.stats.first_stored_at = self.stats.last_stored_at
        self.stats.stored += len(rows) - len(refused)
        self.stats.rejected += len(batch.rejects) + len(refused)
        self.stats.batches += 1
        self.stats.last_batch_at = time.time()
        INGESTED.inc(len(rows) - len(refused))
        took = time.perf_counter() - batch.started
        BATCH_SECONDS.observe(took)
        BATCH_TOOK.observe(took)
        BATCH_SIZE.observe(len(batch.messages))
        if newest_at is not None:
            AGE.observe(max(time.time() - newest_at.timestamp(), 0.0))

    def _commit(
        self,
        conn: psycopg.Connection[Any],
        batch: PreparedBatch,
        new_devices: dict[str, Row],
        new_pairs: set[tuple[str, int]],
        *,
        isolating: bool,
    ) -> list[tuple[Row, BaseException]]:
        """One transaction: move the offsets (fenced), register new devices and the partitions
        new devices came through, COPY the rows.
        ``isolating``: in savepoints, leaving out (and dead-lettering) what PostgreSQL refuses."""
        rows, parts = batch.rows, list(batch.end)
        refused: list[tuple[Row, BaseException]] = []
        with conn.cursor() as cur:
            try:
                # One round trip opens the transaction and moves every partition's offset, where
                # the stored offset is still the one the batch started from (a BEGIN of its own
                # cost ~7 ms a batch: the writer waits that long for the GIL after each reply).
                cur.execute(self._begin_fenced(conn, batch, parts))
                cur.nextset()  # the UPDATE's result
                if cur.rowcount != len(parts):
                    raise FencedError(
                        f"{self.config.topic}{sorted(parts)}: another consumer moved a"
                        " partition's offset"
                    )
                if new_devices:
                    self._register(cur, new_devices, isolating=isolating)
                if new_pairs:
                    self._map_partitions(cur, new_pairs)
                if rows and isolating:
                    refused = self._copy_isolating(cur, rows)
                    if refused:
                        self._dead_letter_rows(batch, refused)
                elif rows:
                    self._copy(cur, rows)
            except BaseException:
                with contextlib.suppress(psycopg.Error):  # a lost connection has nothing to undo
                    conn.rollback()
                raise
            conn.commit()
        return refused

    def _begin_fenced(
        self, conn: psycopg.Connection[Any], batch: PreparedBatch, parts: list[int]
    ) -> bytes:
        """``BEGIN`` and the fenced offset UPDATE as one simple query (values as literals)."""
        return (
            sql.SQL(
                "BEGIN; UPDATE ingest_offsets AS o"
                " SET next_offset = v.next_offset, updated_at = now()"
                " FROM unnest({}::int[], {}::bigint[], {}::bigint[])"
                ' AS v("partition", next_offset, fence)'
                " WHERE o.bus_id = {} AND o.group_id = {} AND o.topic = {}"
                ' AND o."partition" = v."partition"'
                " AND o.next_offset IS NOT DISTINCT FROM v.fence"
            )
            .format(
                sql.Literal(parts),
                sql.Literal([batch.end[p] for p in parts]),
                sql.Literal([batch.fence[p] for p in parts]),
                sql.Literal(self.bus.bus_id),
                sql.Literal(self.config.group_id),
                sql.Literal(self.config.topic),
            )
            .as_bytes(conn)
        )

    @staticmethod
    def _copy(cur: psycopg.Cursor[Any], rows: Sequence[Row]) -> None:
        with cur.copy(COPY_SQL) as copy:
            copy.set_types(COPY_TYPES)
            write = copy.write_row
            for row in rows:
                write(row)

    def _copy_isolating(
        self, cur: psycopg.Cursor[Any], rows: list[Row]
    ) -> list[tuple[Row, BaseException]]:
        """COPY the rows in savepoints; find the ones PostgreSQL (or the encoder) refuses by
        halving, and return them with their errors. Lost connections raise."""

        def copy_rows(part: Sequence[Row]) -> None:
            with cur.connection.transaction():
                self._copy(cur, part)

        return isolate(copy_rows, rows, refuses=refused_by_database).refused

    def _register(
        self, cur: psycopg.Cursor[Any], new_devices: dict[str, Row], *, isolating: bool
    ) -> None:
        def insert(part: Sequence[tuple[str, Row]]) -> None:
            cur.executemany(
                "INSERT INTO devices (device_id, device_type, location, unit, status)"
                " VALUES (%s, %s, COALESCE(%s, 'unknown'), %s, 'unregistered')"
                " ON CONFLICT (device_id) DO NOTHING",
                [(d, r[Col.SENSOR_TYPE], r[Col.LOCATION], r[Col.UNIT]) for d, r in part],
            )

        if not isolating:
            insert(list(new_devices.items()))
            return

        def insert_saved(part: Sequence[tuple[str, Row]]) -> None:
            with cur.connection.transaction():
                insert(part)

        result = isolate(insert_saved, list(new_devices.items()), refuses=refused_by_database)
        for (device_id, _), exc in result.refused:
            new_devices.pop(device_id, None)
            logger.warning("device not registered", device=device_id, error=str(exc)[:300])

    def _map_partitions(self, cur: psycopg.Cursor[Any], pairs: set[tuple[str, int]]) -> None:
        """Which partition each device's readings came through (device_partitions)."""
        cur.execute(
            'INSERT INTO device_partitions (bus_id, topic, device_id, "partition")'
            " SELECT %s, %s, d, p FROM unnest(%s::text[], %s::int[]) AS v(d, p)"
            " ON CONFLICT DO NOTHING",
            (
                self.bus.bus_id,
                self.config.topic,
                [d for d, _ in pairs],
                [p for _, p in pairs],
            ),
        )

    def _dead_letter_rows(
        self, batch: PreparedBatch, refused: list[tuple[Row, BaseException]]
    ) -> None:
        """The rows PostgreSQL refused go to the DLQ as the messages they came from."""
        assert self._dlq is not None
        rejected = {id(m) for m, _ in batch.rejects}
        stored = [m for m in batch.messages if id(m) not in rejected]  # row i <- stored[i]
        index = {id(r): i for i, r in enumerate(batch.rows)}
        out = []
        for row, exc in refused:
            detail = f"PostgreSQL refused the row: {type(exc).__name__}: {exc}"[:500]
            out.append((stored[index[id(row)]], Rejection(Reasons.WRITE_REJECTED, detail)))
            REJECTED.labels(Reasons.WRITE_REJECTED).inc()
        logger.warning("rows refused by PostgreSQL dead-lettered", rows=len(out))
        self._dlq.send_all(out)

    # --- the loop ---
    def run(
        self, stop: threading.Event, *, until: dict[tuple[str, int], int] | None = None
    ) -> IngestStats:
        """Consume until ``stop`` is set (or, with ``until``, every partition reached its
        end offset: the benchmark's drain). In-flight batches are committed before leaving.
        No outage ends it: while the stored offsets cannot be read, the member leaves its
        consumer group and joins again when PostgreSQL answers."""
        self._stop = stop
        while True:
            try:
                return self._run_member(stop, until)
            except OffsetsUnavailable as exc:
                self.stats.rejoins += 1
                logger.error(
                    "stored offsets unreadable: left the consumer group until PostgreSQL answers",
                    error=str(exc),
                )
            self._fence.clear()
            self._durable.clear()
            with self._commit_lock:
                self._to_commit.clear()
            while not stop.is_set():
                try:
                    self._close(connect_retrying(self.database_url, attempts=1))
                    break
                except psycopg.Error:
                    stop.wait(2.0)
            if stop.is_set():
                return self.stats

    def _run_member(
        self, stop: threading.Event, until: dict[tuple[str, int], int] | None
    ) -> IngestStats:
        consumer = self.bus.consumer(self.config.group_id, name="iotmon-ingestion")
        self._consumer = consumer
        self._dlq = DeadLetters(
            self.bus.producer(name="iotmon-ingestion-dlq"),
            self.config.dlq_topic,
            self.config.group_id,
        )
        writer = self._writer = _Writer(self.write, warm=lambda: self.conn)
        consumer.subscribe(
            [self.config.topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        backoff = 0.5
        try:
            while not stop.is_set():
                if writer.error is not None:
                    backoff = self._recover(writer, backoff)
                    continue
                self._commit_to_bus(consumer)
                # a drain to known ends asks often whether it is there; a live consumer idles
                batch = self._collect(consumer, stop, 0.5 if until is None else 0.05)
                prepared = self.prepare(batch) if batch else None
                if prepared is not None:
                    writer.submit(prepared)
                elif writer.error is None:
                    backoff = 0.5
                if until is not None and not batch:
                    writer.wait_idle()
                    if writer.error is None and self._reached(until):
                        break
        finally:
            writer.wait_idle()
            writer.close()
            self._commit_to_bus(consumer)
            consumer.close()
            self._dlq.close()
            self._close(self._conn)
            self._close(self._offsets_conn)
            self._conn = self._offsets_conn = None
        return self.stats

    def _commit_to_bus(self, consumer: Consumer) -> None:
        with self._commit_lock:
            offsets, self._to_commit = self._to_commit, {}
        if offsets:
            consumer.commit([TopicPartition(self.config.topic, p, o) for p, o in offsets.items()])

    def _recover(self, writer: _Writer, backoff: float) -> float:
        """The writer failed: wait for it to settle, then resume from the stored offsets."""
        writer.wait_idle()
        exc, writer.error = writer.error, None
        assert exc is not None
        if isinstance(exc, FencedError):
            FENCED.inc()
            logger.warning("batch fenced, re-seeking", error=str(exc))
        else:
            logger.error(
                "batch failed, will retry from stored offsets",
                error=str(exc),
                error_type=type(exc).__name__,
            )
            if not isinstance(exc, psycopg.Error | BusError | OSError):
                raise exc  # a bug, not weather: let the role crash loudly
            self._close(self._conn)
            self._conn = None
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10)
        self._reseek()
        return backoff

    def _reached(self, until: dict[tuple[str, int], int]) -> bool:
        topic = self.config.topic
        return all(
            self._durable.get(p, 0) >= end
            for (t, p), end in until.items()
            if t == topic and end > 0
        )

    def _collect(
        self, consumer: Consumer, stop: threading.Event, idle_s: float = 0.5
    ) -> list[Message]:
        """Gather up to batch_size messages, waiting at most batch_wait_s once one arrived."""
        size = min(self._ramp, self.config.batch_size)
        batch = consumer.consume(size, idle_s)
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
        if len(batch) >= size:
            self._ramp = size * 2
        return batch

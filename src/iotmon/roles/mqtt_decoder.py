"""MQTT decoder role: ``mqtt-raw`` -> readings on ``sensors-data`` by each device's profile,
on the consumer pipeline (own consumer group; what it cannot decode -> ``mqtt-raw.dlq``
with a reason). Profiles and devices are a snapshot of PostgreSQL, reloaded every few seconds
(and at most once a second on an unknown device).

Exactly once, raw record -> reading on ``sensors-data``:
- each batch is one Kafka transaction: its readings, its dead letters and the group's
  offsets are committed together or not at all (ingestion, processing and alerts consume
  read-committed), so a crash anywhere neither doubles nor loses a reading; a failed
  transaction is aborted and the partitions restart from the committed offsets;
- a message the broker redelivered after a bridge crash (the same reading twice on the raw
  topic) is dropped by a dedup window per partition (``mqtt/decoder.py: Dedup``), which is
  rebuilt whenever a partition is assigned (start, restart, rebalance, failed transaction)
  by re-reading the partition's last records before the committed offset (the window's
  length, at most ``mqtt_dedup_max`` records): the redelivery is caught whichever decoder
  instance, before or after which crash, sees it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import orjson
import psycopg
from fastapi import APIRouter

from iotmon import logging as log
from iotmon.bus import (
    BusError,
    Consumer,
    Message,
    TopicPartition,
    TransactionalProducer,
    TransactionError,
    consume_available,
)
from iotmon.bus.pipeline import DeadLetters, Reasons, Rejection
from iotmon.metrics import watch_mqtt_decoder
from iotmon.mqtt.decoder import Catalog, Decoded, Dedup, decode_record
from iotmon.mqtt.decoders import Reason
from iotmon.profiles.service import load_all
from iotmon.roles import ROLES
from iotmon.roles.runtime import Services, run_in_thread, tune_gc

logger = log.get(__name__)

MISS_RELOAD_S = 1.0
BATCH = 20_000  # raw records per transaction at most
# A transaction gathers records for this long (or BATCH records) before it commits: each
# commit is half a dozen broker requests plus a marker on every partition it wrote, so a
# commit per poll made the broker the busiest process of bench mqtt (Kafka Streams commits
# exactly-once work every 100 ms by default, for the same reason).
LINGER_S = 0.1


class MqttDecoderRole:
    name = "mqtt-decoder"

    def __init__(self, services: Services) -> None:
        self.services = services
        s = services.settings
        self.endpoints = ROLES["mqtt-decoder"].endpoints(s)
        self.out_topic = s.topic("sensors-data")
        self.root = s.mqtt_topic_root
        self.refresh_s = s.mqtt_profile_refresh_s
        self.window_s = s.mqtt_dedup_window_s
        self.max_keys = s.mqtt_dedup_max
        self.transactional_id = (
            f"{self.endpoints.group}-{s.mqtt_decoder_id or socket.gethostname()}"
        )
        self.windows: dict[int, Dedup] = {}  # by partition of mqtt-raw
        self.replay_until: dict[int, int] = {}  # partition -> committed offset, while replaying
        self.catalog = Catalog()
        self._loaded_at = -1e18
        self._consumer: Consumer | None = None
        self.stats: dict[str, float] = {
            "consumed": 0,
            "produced": 0,
            "deadLettered": 0,
            "duplicates": 0,
            "replayed": 0,
            "transactions": 0,
            "aborted": 0,
            # where the loop's CPU goes (thread seconds): decoding, producing, committing
            "decodeSeconds": 0.0,
            "produceSeconds": 0.0,
            "commitSeconds": 0.0,
        }
        watch_mqtt_decoder(self.stats)

    async def run(self, stop: asyncio.Event) -> None:
        # A batch holds thousands of decoded readings (dicts) alive: with the default
        # thresholds the collector walked them over and over (a third of decode_record's time
        # in a micro-benchmark of 20,000 records).
        tune_gc()
        await run_in_thread(self._run, stop)

    def _reload(self, *, force: bool = False) -> None:
        now = time.monotonic()
        age = now - self._loaded_at
        if age < (MISS_RELOAD_S if force else self.refresh_s):
            return
        url = self.services.database_url
        assert url is not None
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                self.catalog = Catalog.build(*load_all(conn), previous=self.catalog)
        except (psycopg.Error, OSError) as exc:  # decode with the last snapshot meanwhile
            logger.error("profiles not reloaded", error=str(exc)[:300])
        self._loaded_at = now

    # --- partitions and their windows ---
    def _on_assign(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        return self._starts(tps)

    def _on_revoke(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.windows.pop(tp.partition, None)
            self.replay_until.pop(tp.partition, None)

    def _starts(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        """Where each partition starts: ``window`` records before its committed offset, with
        a fresh dedup window that those records (up to the committed offset) rebuild."""
        consumer = self._consumer
        assert consumer is not None
        if not tps:
            return tps
        for attempt in range(5):
            try:
                committed = consumer.committed(tps)
                at_ms = int((time.time() - self.window_s) * 1000)
                since = consumer.offsets_for_times(tps, at_ms)
                break
            except BusError as exc:
                if attempt == 4:
                    raise  # cannot know where the window starts: better not run than double
                logger.warning("committed offsets unreadable, retrying", error=str(exc)[:300])
                time.sleep(1.0)
        out = []
        for tp, c, o in zip(tps, committed, since, strict=True):
            self.windows[tp.partition] = Dedup(self.window_s, self.max_keys)
            self.replay_until.pop(tp.partition, None)
            if c is None:  # nothing committed yet: from the beginning, nothing to replay
                out.append(TopicPartition(tp.topic, tp.partition, None))
                continue
            start = c if o is None else max(min(o, c), c - self.max_keys, 0)
            if start < c:
                self.replay_until[tp.partition] = c
            out.append(TopicPartition(tp.topic, tp.partition, start))
        logger.info(
            "partitions assigned",
            partitions=[tp.partition for tp in tps],
            committed=committed,
            replay_from=[tp.offset for tp in out],
        )
        return out

    def _restart_from_committed(self, consumer: Consumer) -> None:
        """After a transaction that did not commit: every partition again from its committed
        offset, its window rebuilt (what the failed batch admitted is forgotten)."""
        tps = [TopicPartition(tp.topic, tp.partition) for tp in consumer.assignment()]
        for tp in self._starts(tps):
            try:
                consumer.seek(tp)
            except Exception as exc:  # no longer ours (a rebalance): its new owner rebuilds
                logger.warning("seek failed", partition=tp.partition, error=str(exc)[:300])

    def _replay(self, msgs: list[Message]) -> list[Message]:
        """Records below a partition's committed offset only rebuild its window (they were
        decoded and committed before); the rest are returned."""
        if not self.replay_until:
            return msgs
        fresh: list[Message] = []
        touched: set[int] = set()
        for m in msgs:
            p: int = m.partition()  # type: ignore[assignment]
            until = self.replay_until.get(p)
            if until is None or m.offset() >= until:  # type: ignore[operator]
                fresh.append(m)
                continue
            window = self.windows[p]
            touched.add(p)
            self.stats["replayed"] += 1
            got: Decoded | Rejection
            try:
                got = decode_record(m.value() or b"", m.headers(), self.catalog, self.root)
            except Exception as exc:  # it was dead-lettered then too
                got = Rejection("decoder_error", str(exc)[:300])
            if isinstance(got, Decoded):
                at = got.received_at.timestamp()
                for key, r in got.readings:
                    window.admit(
                        key,
                        at,
                        clock_device=r["metadata"]["clock"] == "device",
                        redelivered=got.redelivered,
                    )
            if m.offset() + 1 >= until:  # type: ignore[operator]
                del self.replay_until[p]
        for p in touched:
            self.windows[p].commit()
        return fresh

    # --- the loop ---
    def _open(self, stop: threading.Event) -> TransactionalProducer | None:
        backoff = 0.5
        while not stop.is_set():
            try:
                return self.services.bus.transactional_producer(
                    self.transactional_id, name="iotmon-mqtt-decoder"
                )
            except BusError as exc:
                logger.error("transactional producer not ready, retrying", error=str(exc)[:300])
                stop.wait(backoff)
                backoff = min(backoff * 2, 10)
        return None

    def _run(self, stop: threading.Event) -> None:
        ends = self.endpoints
        assert ends.dlq is not None
        consumer = self._consumer = self.services.bus.consumer(
            ends.group, name="iotmon-mqtt-decoder"
        )
        producer = self._open(stop)  # before subscribing: fences (aborts) our old self first
        if producer is None:
            consumer.close()
            return
        consumer.subscribe([ends.topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
        backoff = 0.5
        try:
            while not stop.is_set():
                self._reload()
                msgs = self._replay(gather(consumer, BATCH, 0.2, LINGER_S))
                if not msgs:
                    continue
                t0 = time.thread_time()
                decoded, rejected = self._decode(msgs)
                self.stats["decodeSeconds"] += time.thread_time() - t0
                if any(r.reason == Reason.UNKNOWN_DEVICE for _, r in rejected):
                    self._reload(force=True)  # a device given a profile a moment ago
                    decoded, rejected = self._decode(msgs)
                try:
                    self._transact(producer, consumer, msgs, decoded, rejected)
                    backoff = 0.5
                except TransactionError as exc:
                    self.stats["aborted"] += 1
                    for w in self.windows.values():
                        w.rollback()
                    logger.error(
                        "transaction failed, restarting from the committed offsets",
                        error=str(exc)[:300],
                        fatal=exc.fatal,
                    )
                    if exc.fatal:
                        producer.close()
                        producer = self._open(stop)
                        if producer is None:
                            return
                    else:
                        producer.abort()
                    stop.wait(backoff)
                    backoff = min(backoff * 2, 10)
                    self._restart_from_committed(consumer)
        finally:
            consumer.close()
            if producer is not None:
                producer.close()

    def _decode(
        self, msgs: list[Message]
    ) -> tuple[list[tuple[int, Decoded]], list[tuple[int, Rejection]]]:
        """Each record's readings, or why not; a surprise (an exception, which the fuzz tests
        say ``decode_record`` does not raise) rejects that record only."""
        out: list[tuple[int, Decoded]] = []
        rejects: list[tuple[int, Rejection]] = []
        catalog, root = self.catalog, self.root
        for i, m in enumerate(msgs):
            try:
                got = decode_record(m.value() or b"", m.headers(), catalog, root)
            except Exception as exc:
                got = Rejection(Reasons.DECODER_ERROR, f"{type(exc).__name__}: {exc}"[:300])
            if isinstance(got, Rejection):
                rejects.append((i, got))
            else:
                out.append((i, got))
        return out, rejects

    def _transact(
        self,
        producer: TransactionalProducer,
        consumer: Consumer,
        msgs: list[Message],
        decoded: list[tuple[int, Decoded]],
        rejected: list[tuple[int, Rejection]],
    ) -> None:
        """One transaction: the batch's new readings to ``sensors-data``, its rejects to the
        DLQ, and the group's offsets past the batch. Raises TransactionError."""
        ends = self.endpoints
        assert ends.dlq is not None
        windows = self.windows
        out_topic = self.out_topic
        produced = duplicates = 0
        t0 = time.thread_time()
        producer.begin()
        produce, dumps = producer.produce, orjson.dumps
        last_received, at = None, 0.0
        for idx, d in decoded:
            p: int = msgs[idx].partition()  # type: ignore[assignment]
            window = windows.get(p)
            if window is None:  # assigned without on_assign (cannot happen): start empty
                window = windows[p] = Dedup(self.window_s, self.max_keys)
            if d.received_at is not last_received:  # one object for a bridge's whole read
                last_received, at = d.received_at, d.received_at.timestamp()
            for key, reading in d.readings:
                device_clock = reading["metadata"]["clock"] == "device"
                if window.admit(key, at, clock_device=device_clock, redelivered=d.redelivered):
                    produce(out_topic, dumps(reading), key=reading["deviceId"].encode())
                    produced += 1
                else:
                    duplicates += 1
        if rejected:
            dead = DeadLetters(producer, ends.dlq, ends.group)
            for i, rej in rejected:
                dead.send(msgs[i], rej)
        last: dict[int, int] = {}
        for m in msgs:
            last[m.partition()] = m.offset()  # type: ignore[index,assignment]
        t1 = time.thread_time()
        producer.commit([TopicPartition(ends.topic, p, o + 1) for p, o in last.items()], consumer)
        t2 = time.thread_time()
        for w in windows.values():
            w.commit()
        st = self.stats
        st["consumed"] += len(msgs)
        st["produced"] += produced
        st["duplicates"] += duplicates
        st["deadLettered"] += len(rejected)
        st["transactions"] += 1
        st["produceSeconds"] += t1 - t0
        st["commitSeconds"] += t2 - t1

    def status(self) -> dict[str, Any]:
        return {
            **self.stats,
            "dedupKeys": sum(len(w) for w in self.windows.values()),
            "replaying": sorted(self.replay_until),
            "profiles": len(self.catalog.profiles),
        }

    def routers(self) -> list[APIRouter]:
        return []


def gather(consumer: Consumer, max_messages: int, timeout: float, linger: float) -> list[Message]:
    """What ``consume_available`` gives, then more until ``max_messages`` or ``linger``
    seconds after the first."""
    msgs = consume_available(consumer, max_messages, timeout)
    if not msgs:
        return msgs
    until = time.monotonic() + linger
    while len(msgs) < max_messages and (left := until - time.monotonic()) > 0:
        msgs.extend(consumer.consume(max_messages - len(msgs), left))
    return msgs


def build(services: Services) -> MqttDecoderRole:
    return MqttDecoderRole(services)

"""The Kafka bus (confluent-kafka / librdkafka).

Producers are idempotent with ``acks=all`` and lz4 (DESIGN.md 4.3). Consumers never
auto-commit: whoever consumes decides when its effect is durable, and read only committed
transactions (``isolation.level=read_committed``, librdkafka's default, spelled out): the MQTT
decoder produces its readings and its offsets in one transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_STORED,
    KafkaError,
    KafkaException,
)
from confluent_kafka import (
    Consumer as _KConsumer,
)
from confluent_kafka import (
    Producer as _KProducer,
)
from confluent_kafka import (
    TopicPartition as _KTP,
)
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from iotmon import logging as log
from iotmon.bus import (
    BusError,
    Consumer,
    Delivery,
    Headers,
    Message,
    OnAssign,
    OnRevoke,
    TopicPartition,
    TopicSpec,
    TransactionError,
)
from iotmon.metrics import KafkaLag

logger = log.get(__name__)

TRANSACTION_TIMEOUT_MS = 15_000
TXN_CALL_TIMEOUT_S = 30.0
# librdkafka's statistics, for the consumer lag gauge (iotmon.metrics.KafkaLag)
STATS_INTERVAL_MS = 5_000
# librdkafka's read-ahead of a consumer (queued.max.messages.kbytes) when the role does not
# ask for less (Bus.consumer's prefetch_kbytes): a drain's 256 MiB
DRAIN_READ_AHEAD_KBYTES = 262_144


def _to_ktp(tp: TopicPartition) -> Any:
    return _KTP(tp.topic, tp.partition, OFFSET_STORED if tp.offset is None else tp.offset)


def _from_ktp(ktp: Any) -> TopicPartition:
    return TopicPartition(ktp.topic, ktp.partition, ktp.offset if ktp.offset >= 0 else None)


class KafkaBus:
    def __init__(
        self,
        bootstrap: str,
        *,
        session_timeout_ms: int = 10_000,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self._bootstrap = bootstrap
        self._session_timeout_ms = session_timeout_ms
        self._extra = extra or {}
        self._admin: Any = None
        self._bus_id: str | None = None

    def _base(self) -> dict[str, Any]:
        return {"bootstrap.servers": self._bootstrap, **self._extra}

    @property
    def admin(self) -> Any:
        if self._admin is None:
            self._admin = AdminClient(self._base())
        return self._admin

    @property
    def bus_id(self) -> str:
        if self._bus_id is None:
            try:
                md = self.admin.list_topics(timeout=10)
            except KafkaException as exc:
                raise BusError(f"Kafka at {self._bootstrap} is unreachable: {exc}") from exc
            self._bus_id = f"kafka-{md.cluster_id}"
        return self._bus_id

    def ping(self, timeout: float = 2.0) -> None:
        try:
            self.admin.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise BusError(f"Kafka at {self._bootstrap} is unreachable: {exc}") from exc

    def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        try:
            existing = set(self.admin.list_topics(timeout=10).topics)
        except KafkaException as exc:
            raise BusError(f"Kafka at {self._bootstrap} is unreachable: {exc}") from exc
        missing = [s for s in specs if s.name not in existing]
        if not missing:
            return []
        futures = self.admin.create_topics(
            # -1: the broker's default.replication.factor (1 on the single-node test broker,
            # 3 on a production cluster) instead of a hard-coded 1 that a broker loss would
            # lose data with.
            [NewTopic(s.name, s.partitions, -1, config=s.config) for s in missing],
            operation_timeout=30,
        )
        created = []
        for name, fut in futures.items():
            try:
                fut.result()
                created.append(name)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise BusError(f"cannot create topic {name}: {exc}") from exc
        return created

    def delete_topics(self, names: Sequence[str]) -> None:
        if not names:
            return
        for fut in self.admin.delete_topics(list(names), operation_timeout=30).values():
            try:
                fut.result()
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise

    def end_offsets(self, topic: str) -> list[int]:
        c = _KConsumer({**self._base(), "group.id": "iotmon-offsets-probe"})
        try:
            md = c.list_topics(topic, timeout=10).topics[topic]
            return [
                c.get_watermark_offsets(_KTP(topic, p), timeout=10)[1]
                for p in sorted(md.partitions)
            ]
        finally:
            c.close()

    def _producer_conf(self, name: str) -> dict[str, Any]:
        return {
            **self._base(),
            "client.id": name,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 10,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
        }

    def producer(self, *, name: str = "iotmon") -> KafkaProducer:
        return KafkaProducer(self._producer_conf(name))

    def transactional_producer(
        self, transactional_id: str, *, name: str = "iotmon"
    ) -> KafkaTransactionalProducer:
        return KafkaTransactionalProducer(
            {
                **self._producer_conf(name),
                "transactional.id": transactional_id,
                # A transaction its producer left open (killed, never restarted) holds back
                # read-committed consumers of its partitions until the coordinator aborts it.
                "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
            }
        )

    def consumer(
        self, group_id: str, *, name: str = "iotmon", prefetch_kbytes: int | None = None
    ) -> KafkaConsumer:
        lag = KafkaLag(group_id)
        return KafkaConsumer(
            {
                **self._base(),
                "client.id": name,
                "group.id": group_id,
                # A crashed member's partitions move on after this long (Kafka's default: 45 s).
                "session.timeout.ms": self._session_timeout_ms,
                "heartbeat.interval.ms": max(1000, self._session_timeout_ms // 5),
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 52_428_800,
                # What librdkafka reads ahead of a consumer that is behind: 256 MiB by default
                # (a drain's), less where the role's own memory matters (see Bus.consumer).
                # The queue limit alone does not hold it: a fetch answered with 10 MiB (compressed)
                # a partition overshoots it until the whole backlog is in memory (3,000,000
                # readings: 510 MiB with the limit at 32 MiB). With 1 MiB a partition it holds
                # (84 MiB) and one consumer still reads ~300,000 records/s (1.2 M with 10 MiB).
                "max.partition.fetch.bytes": 1_048_576 if prefetch_kbytes else 10_485_760,
                "queued.max.messages.kbytes": prefetch_kbytes or DRAIN_READ_AHEAD_KBYTES,
                # A fetch is answered when 64 KiB are there or after 100 ms: without the
                # minimum, every consumer of a busy topic asks again for each handful of
                # records, and the broker's per-request work (a third of its CPU in request
                # metrics alone, JFR under bench mqtt) grows with the request rate.
                "fetch.wait.max.ms": 100,
                "fetch.min.bytes": 65_536,
                "isolation.level": "read_committed",
                "statistics.interval.ms": STATS_INTERVAL_MS,
                "stats_cb": lag,
            },
            lag=lag,
        )

    def close(self) -> None:
        self._admin = None


class KafkaProducer:
    def __init__(self, conf: dict[str, Any]) -> None:
        self._p = _KProducer(conf, logger=None)
        self._failures: list[str] = []
        self._lock = threading.Lock()

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            with self._lock:
                self._failures.append(f"{msg.topic()}: {err}")

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
        on_delivery: Delivery | None = None,
    ) -> None:
        if on_delivery is not None:
            on_delivery.sent += 1
        callback = on_delivery or self._on_delivery
        while True:
            try:
                self._p.produce(topic, value, key, headers=cast(Any, headers), on_delivery=callback)
                break
            except BufferError:
                # Local queue full: serve delivery reports until there is room (backpressure).
                self._p.poll(0.05)
        self._p.poll(0)

    def poll(self, timeout: float = 0.0) -> None:
        self._p.poll(timeout)

    def flush(self, timeout: float = 30.0) -> int:
        remaining: int = self._p.flush(timeout)
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise BusError(f"{len(failures)} messages were not delivered: {failures[0]}")
        return remaining

    def close(self) -> None:
        self.flush(10)


class KafkaTransactionalProducer(KafkaProducer):
    """confluent-kafka's transactional producer: ``init_transactions`` when opened (which
    fences an older instance with the same transactional id and aborts what it left open),
    then ``begin`` / ``commit`` (offsets sent to the transaction, KIP-447: fenced by the
    consumer group's generation too) / ``abort``."""

    def __init__(self, conf: dict[str, Any]) -> None:
        super().__init__(conf)
        self._n = 0
        try:
            self._p.init_transactions(TXN_CALL_TIMEOUT_S)
        except KafkaException as exc:
            raise _txn_error("init_transactions", exc) from exc

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
        on_delivery: Delivery | None = None,
    ) -> None:
        """No delivery callback per record (a Python call each, 8 % of the MQTT decoder):
        ``commit_transaction`` fails, and the transaction aborts, if any record failed."""
        p = self._p
        try:
            while True:
                try:
                    if on_delivery is None:
                        p.produce(topic, value, key, headers=cast(Any, headers))
                    else:
                        on_delivery.sent += 1
                        p.produce(
                            topic, value, key, headers=cast(Any, headers), on_delivery=on_delivery
                        )
                    break
                except BufferError:
                    p.poll(0.05)
            self._n += 1
            if not self._n & 0x3FF:  # serve the (empty) delivery events now and then
                p.poll(0)
        except KafkaException as exc:  # the transaction is in an error state
            raise _txn_error("produce", exc) from exc

    def begin(self) -> None:
        with self._lock:
            self._failures = []
        try:
            self._p.begin_transaction()
        except KafkaException as exc:
            raise _txn_error("begin_transaction", exc) from exc

    def commit(self, offsets: Sequence[TopicPartition], consumer: Consumer) -> None:
        if not isinstance(consumer, KafkaConsumer):
            raise TypeError("a Kafka transaction commits a Kafka consumer's offsets")
        ktps = [_KTP(tp.topic, tp.partition, tp.offset) for tp in offsets if tp.offset is not None]
        step = "send_offsets_to_transaction"
        try:
            if ktps:
                meta = consumer._c.consumer_group_metadata()
                self._retrying(lambda: self._p.send_offsets_to_transaction(ktps, meta, 30.0))
            step = "commit_transaction"
            self._retrying(lambda: self._p.commit_transaction(TXN_CALL_TIMEOUT_S))
        except KafkaException as exc:
            raise _txn_error(step, exc) from exc

    @staticmethod
    def _retrying(call: Any, attempts: int = 3) -> None:
        for attempt in range(attempts):
            try:
                call()
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == attempts - 1:
                    raise

    def abort(self) -> None:
        try:
            self._p.abort_transaction(TXN_CALL_TIMEOUT_S)
        except KafkaException as exc:
            logger.warning("abort_transaction failed", error=str(exc)[:300])
        with self._lock:
            self._failures = []

    def close(self) -> None:
        self._p.flush(10)


def _txn_error(step: str, exc: KafkaException) -> TransactionError:
    err = exc.args[0]
    fatal = bool(err.fatal()) or not (err.txn_requires_abort() or err.retriable())
    return TransactionError(f"{step}: {err}", fatal=fatal)


class KafkaConsumer:
    def __init__(self, conf: dict[str, Any], *, lag: KafkaLag | None = None) -> None:
        self._c = _KConsumer(conf, logger=None)
        self._lag = lag
        self._topics: list[str] = []

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: OnAssign | None = None,
        on_revoke: OnRevoke | None = None,
    ) -> None:
        def _assign(consumer: Any, parts: list[Any]) -> None:
            tps = [TopicPartition(p.topic, p.partition) for p in parts]
            if on_assign is not None:
                tps = on_assign(tps)
            consumer.assign([_to_ktp(tp) for tp in tps])

        def _revoke(consumer: Any, parts: list[Any]) -> None:
            if on_revoke is not None:
                on_revoke([_from_ktp(p) for p in parts])
            consumer.unassign()

        self._topics = list(topics)
        self._c.subscribe(self._topics, on_assign=_assign, on_revoke=_revoke)

    def consume(self, max_messages: int, timeout: float) -> list[Message]:
        msgs = self._c.consume(max_messages, timeout)
        if any(m.error() is not None for m in msgs):
            msgs = [m for m in msgs if self._keep(m)]
        return cast(list[Message], msgs)

    @staticmethod
    def _keep(m: Any) -> bool:
        err = m.error()
        if err is None:
            return True
        if err.code() == KafkaError._PARTITION_EOF:
            return False
        if err.fatal():
            raise BusError(f"fatal consumer error: {err}")
        logger.warning("consumer error", error=str(err))
        return False

    def seek(self, tp: TopicPartition) -> None:
        self._c.seek(
            _KTP(tp.topic, tp.partition, OFFSET_BEGINNING if tp.offset is None else tp.offset)
        )

    def commit(self, offsets: Sequence[TopicPartition]) -> None:
        ktps = [_KTP(tp.topic, tp.partition, tp.offset) for tp in offsets if tp.offset is not None]
        if ktps:
            try:
                self._c.commit(offsets=ktps, asynchronous=True)
            except KafkaException as exc:
                logger.warning("offset commit to Kafka failed", error=str(exc))

    def assignment(self) -> list[TopicPartition]:
        return [_from_ktp(p) for p in self._c.assignment()]

    def committed(self, tps: Sequence[TopicPartition], timeout: float = 10.0) -> list[int | None]:
        try:
            got = self._c.committed([_KTP(tp.topic, tp.partition) for tp in tps], timeout=timeout)
        except KafkaException as exc:
            raise BusError(f"committed offsets unreadable: {exc}") from exc
        return [k.offset if k.offset >= 0 else None for k in got]

    def offsets_for_times(
        self, tps: Sequence[TopicPartition], at_ms: int, timeout: float = 10.0
    ) -> list[int | None]:
        try:
            got = self._c.offsets_for_times(
                [_KTP(tp.topic, tp.partition, at_ms) for tp in tps], timeout=timeout
            )
        except KafkaException as exc:
            raise BusError(f"offsets for times unreadable: {exc}") from exc
        return [k.offset if k.offset >= 0 else None for k in got]

    def close(self) -> None:
        self._c.close()
        if self._lag is not None:
            self._lag.clear()

"""The in-process bus of embedded mode: partitioned logs with offsets and consumer groups.

It keeps Kafka's semantics that the rest of the code relies on (per-key ordering through
partitions, offsets, seek, group assignment, bounded retention) so the same ingestion code runs
on both. Thread-safe: producers run on the event loop, consumers in worker threads.
"""

from __future__ import annotations

import bisect
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

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


class MemoryMessage:
    __slots__ = ("_headers", "_key", "_offset", "_partition", "_topic", "_ts_ms", "_value")

    def __init__(
        self,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        ts_ms: int = 0,
    ) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._headers = key, value, headers
        self._ts_ms = ts_ms

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes:
        return self._value

    def headers(self) -> Headers:
        return self._headers


@dataclass
class _Partition:
    log: deque[MemoryMessage] = field(default_factory=deque)
    start_offset: int = 0  # offset of log[0]
    end_offset: int = 0  # next offset to be written


def partition_for(key: bytes | None, partitions: int, counter: int) -> int:
    if key is None:
        return counter % partitions
    return zlib.crc32(key) % partitions


class MemoryBus:
    def __init__(self, *, retention_messages: int = 200_000) -> None:
        self._bus_id = f"memory-{uuid.uuid4()}"
        self._retention = retention_messages
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, list[MemoryConsumer]] = {}
        self._committed: dict[tuple[str, str, int], int] = {}
        self._cond = threading.Condition()
        self._counter = 0

    @property
    def bus_id(self) -> str:
        return self._bus_id

    # --- admin ---
    def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        created = []
        with self._cond:
            for spec in specs:
                if spec.name not in self._topics:
                    self._topics[spec.name] = [_Partition() for _ in range(spec.partitions)]
                    created.append(spec.name)
        return created

    def ping(self, timeout: float = 2.0) -> None:
        return None

    def close(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def end_offsets(self, topic: str) -> list[int]:
        with self._cond:
            return [p.end_offset for p in self._partitions(topic)]

    def _partitions(self, topic: str) -> list[_Partition]:
        try:
            return self._topics[topic]
        except KeyError:
            raise BusError(f"unknown topic {topic!r}") from None

    # --- produce ---
    def producer(self, *, name: str = "iotmon") -> MemoryProducer:
        return MemoryProducer(self)

    def transactional_producer(
        self, transactional_id: str, *, name: str = "iotmon"
    ) -> MemoryTransactionalProducer:
        return MemoryTransactionalProducer(self)

    def _append(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        with self._cond:
            self._append_locked(topic, value, key, headers)
            self._cond.notify_all()

    def _append_locked(self, topic: str, value: bytes, key: bytes | None, headers: Headers) -> None:
        parts = self._partitions(topic)
        self._counter += 1
        idx = partition_for(key, len(parts), self._counter)
        part = parts[idx]
        ts_ms = int(time.time() * 1000)
        part.log.append(MemoryMessage(topic, idx, part.end_offset, key, value, headers, ts_ms))
        part.end_offset += 1
        while len(part.log) > self._retention:
            part.log.popleft()
            part.start_offset += 1

    def _commit_transaction(
        self,
        records: list[tuple[str, bytes, bytes | None, Headers]],
        group_id: str | None,
        offsets: Sequence[TopicPartition],
    ) -> None:
        """A transaction's records and its group's offsets, visible together."""
        with self._cond:
            for topic in {r[0] for r in records}:
                self._partitions(topic)  # an unknown topic fails the whole transaction
            for topic, value, key, headers in records:
                self._append_locked(topic, value, key, headers)
            if group_id is not None:
                for tp in offsets:
                    if tp.offset is not None:
                        self._committed[(group_id, tp.topic, tp.partition)] = tp.offset
            self._cond.notify_all()

    # --- groups ---
    def consumer(
        self, group_id: str, *, name: str = "iotmon", prefetch_kbytes: int | None = None
    ) -> MemoryConsumer:  # nothing is read ahead in memory: prefetch_kbytes has no use here
        return MemoryConsumer(self, group_id)

    def _rebalance(self, group_id: str) -> None:
        """Spread every partition of the group's topics round-robin over its members."""
        members = self._groups.get(group_id, [])
        if not members:
            return
        topics = sorted({t for m in members for t in m.topics})
        all_tps = [(t, p) for t in topics for p in range(len(self._partitions(t)))]
        for m in members:
            m.pending_assignment = []
        for i, (t, p) in enumerate(all_tps):
            member = members[i % len(members)]
            if t in member.topics:
                assert member.pending_assignment is not None
                member.pending_assignment.append(TopicPartition(t, p))
        self._cond.notify_all()


class MemoryProducer:
    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
        on_delivery: Delivery | None = None,
    ) -> None:
        self._bus._append(topic, value, key, headers or [])
        if on_delivery is not None:  # appended is acknowledged
            on_delivery.sent += 1
            on_delivery(None, None)

    def poll(self, timeout: float = 0.0) -> None:
        return None

    def flush(self, timeout: float = 30.0) -> int:
        return 0

    def close(self) -> None:
        return None


class MemoryTransactionalProducer(MemoryProducer):
    """Records held back until ``commit``, then appended with the offsets under one lock."""

    def __init__(self, bus: MemoryBus) -> None:
        super().__init__(bus)
        self._pending: list[tuple[str, bytes, bytes | None, Headers]] | None = None

    def begin(self) -> None:
        self._pending = []

    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
        on_delivery: Delivery | None = None,
    ) -> None:
        if self._pending is None:
            super().produce(topic, value, key, headers, on_delivery)
        else:  # a transaction's records: committed together (a Delivery is not used there)
            self._pending.append((topic, value, key, headers or []))

    def commit(self, offsets: Sequence[TopicPartition], consumer: Consumer) -> None:
        records, self._pending = self._pending or [], None
        group = consumer.group_id if isinstance(consumer, MemoryConsumer) else None
        try:
            self._bus._commit_transaction(records, group, offsets)
        except BusError as exc:
            raise TransactionError(str(exc), fatal=False) from exc

    def abort(self) -> None:
        self._pending = None


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, group_id: str) -> None:
        self._bus = bus
        self.group_id = group_id
        self.topics: list[str] = []
        self._on_assign: OnAssign | None = None
        self._on_revoke: OnRevoke | None = None
        self._positions: dict[tuple[str, int], int] = {}
        self.pending_assignment: list[TopicPartition] | None = None
        self._closed = False

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: OnAssign | None = None,
        on_revoke: OnRevoke | None = None,
    ) -> None:
        with self._bus._cond:
            for t in topics:
                self._bus._partitions(t)
            self.topics = list(topics)
            self._on_assign, self._on_revoke = on_assign, on_revoke
            self._bus._groups.setdefault(self.group_id, []).append(self)
            self._bus._rebalance(self.group_id)

    def _apply_rebalance(self) -> None:
        # Called without the lock held: callbacks may do I/O.
        with self._bus._cond:
            new = self.pending_assignment
            self.pending_assignment = None
        if new is None:
            return
        old = [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]
        if old and self._on_revoke:
            self._on_revoke(old)
        self._positions = {}
        if self._on_assign:
            new = self._on_assign(new)
        with self._bus._cond:
            for tp in new:
                part = self._bus._partitions(tp.topic)[tp.partition]
                off = tp.offset
                if off is None:
                    off = self._bus._committed.get((self.group_id, tp.topic, tp.partition))
                self._positions[(tp.topic, tp.partition)] = (
                    part.start_offset if off is None or off < 0 else off
                )

    def consume(self, max_messages: int, timeout: float) -> list[Message]:
        deadline = time.monotonic() + timeout
        while True:
            if self.pending_assignment is not None:
                self._apply_rebalance()
            with self._bus._cond:
                out: list[Message] = []
                for (topic, pidx), pos in list(self._positions.items()):
                    part = self._bus._partitions(topic)[pidx]
                    pos = max(pos, part.start_offset)
                    n = min(part.end_offset - pos, max_messages - len(out))
                    if n > 0:
                        base = pos - part.start_offset
                        out.extend(part.log[base + i] for i in range(n))
                        pos += n
                    self._positions[(topic, pidx)] = pos
                    if len(out) >= max_messages:
                        break
                if out or self._closed:
                    return out
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return out
                self._bus._cond.wait(min(remaining, 0.1))

    def seek(self, tp: TopicPartition) -> None:
        with self._bus._cond:
            if (tp.topic, tp.partition) not in self._positions:
                raise BusError(f"{tp.topic}[{tp.partition}] is not assigned")
            part = self._bus._partitions(tp.topic)[tp.partition]
            self._positions[(tp.topic, tp.partition)] = (
                part.start_offset if tp.offset is None or tp.offset < 0 else tp.offset
            )

    def commit(self, offsets: Sequence[TopicPartition]) -> None:
        with self._bus._cond:
            for tp in offsets:
                if tp.offset is not None:
                    self._bus._committed[(self.group_id, tp.topic, tp.partition)] = tp.offset

    def assignment(self) -> list[TopicPartition]:
        with self._bus._cond:
            return [TopicPartition(t, p, o) for (t, p), o in self._positions.items()]

    def committed(self, tps: Sequence[TopicPartition], timeout: float = 10.0) -> list[int | None]:
        with self._bus._cond:
            return [self._bus._committed.get((self.group_id, tp.topic, tp.partition)) for tp in tps]

    def offsets_for_times(
        self, tps: Sequence[TopicPartition], at_ms: int, timeout: float = 10.0
    ) -> list[int | None]:
        out: list[int | None] = []
        with self._bus._cond:
            for tp in tps:
                part = self._bus._partitions(tp.topic)[tp.partition]
                stamps = [m._ts_ms for m in part.log]  # appended in time order
                i = bisect.bisect_left(stamps, at_ms)
                out.append(part.start_offset + i if i < len(stamps) else None)
        return out

    def close(self) -> None:
        with self._bus._cond:
            self._closed = True
            members = self._bus._groups.get(self.group_id, [])
            if self in members:
                members.remove(self)
                self._bus._rebalance(self.group_id)
            self._positions = {}

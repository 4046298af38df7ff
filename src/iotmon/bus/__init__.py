"""One bus interface, two implementations: Kafka (distributed) and in-process (embedded).

The interface is synchronous on purpose: confluent-kafka is, and the hot consumers run in a
worker thread. ``produce`` never blocks on the network; ``consume`` blocks up to ``timeout``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

Headers = list[tuple[str, bytes]]

OFFSET_BEGINNING = -2  # start from the earliest message still on the bus


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)


class Message(Protocol):
    """A consumed message. Methods, not attributes: confluent-kafka's messages have this shape,
    so the Kafka bus hands them over without a per-message copy (it matters at 100k/s)."""

    def topic(self) -> str | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...

    def key(self) -> bytes | None: ...

    def value(self) -> bytes | None: ...

    def headers(self) -> Headers | None: ...


@dataclass(slots=True)
class TopicPartition:
    topic: str
    partition: int
    offset: int | None = None  # None = the group's committed offset; OFFSET_BEGINNING


# Called with the partitions just assigned; returns them with the offsets to start from.
OnAssign = Callable[[list[TopicPartition]], list[TopicPartition]]
OnRevoke = Callable[[list[TopicPartition]], None]


class BusError(Exception):
    """The bus failed in a way the caller cannot fix by retrying this call."""


class Delivery:
    """Counts the acknowledgements of the records produced with it as their ``on_delivery``:
    a caller that must not wait for a whole ``flush`` (the MQTT bridge, which acknowledges
    each batch to its broker once Kafka has it) asks ``pending`` instead."""

    __slots__ = ("delivered", "error", "sent")

    def __init__(self) -> None:
        self.sent = 0
        self.delivered = 0
        self.error: str | None = None

    def __call__(self, err: object, msg: object) -> None:
        self.delivered += 1
        if err is not None and self.error is None:
            self.error = str(err)

    @property
    def pending(self) -> int:
        return self.sent - self.delivered


class Producer(Protocol):
    def produce(
        self,
        topic: str,
        value: bytes,
        key: bytes | None = None,
        headers: Headers | None = None,
        on_delivery: Delivery | None = None,
    ) -> None:
        """Queue a record. With ``on_delivery``, its acknowledgement (or failure) is counted
        there, and ``flush`` does not raise for it: the caller looks."""
        ...

    def poll(self, timeout: float = 0.0) -> None:
        """Serve acknowledgements that arrived (waiting up to ``timeout`` for one)."""
        ...

    def flush(self, timeout: float = 30.0) -> int:
        """Wait for every produced message to be acknowledged; return how many are still
        pending. Raises BusError when a delivery failed for good."""
        ...

    def close(self) -> None: ...


class Consumer(Protocol):
    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: OnAssign | None = None,
        on_revoke: OnRevoke | None = None,
    ) -> None: ...

    def consume(self, max_messages: int, timeout: float) -> list[Message]: ...

    def seek(self, tp: TopicPartition) -> None: ...

    def commit(self, offsets: Sequence[TopicPartition]) -> None:
        """Record the group's progress (next offset to read) on the bus."""
        ...

    def assignment(self) -> list[TopicPartition]: ...

    def committed(self, tps: Sequence[TopicPartition], timeout: float = 10.0) -> list[int | None]:
        """The group's committed offset of each partition (None: nothing committed yet)."""
        ...

    def offsets_for_times(
        self, tps: Sequence[TopicPartition], at_ms: int, timeout: float = 10.0
    ) -> list[int | None]:
        """Each partition's first offset whose record is stamped ``at_ms`` or later (None:
        no such record, every record is older)."""
        ...

    def close(self) -> None: ...


class TransactionError(BusError):
    """A transaction did not commit. ``fatal``: the producer is unusable (fenced by a newer
    instance with the same transactional id, or a broker-side fatal error): close it and
    open a new one. Otherwise it was aborted (or must be): nothing of it is visible."""

    def __init__(self, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


class TransactionalProducer(Producer, Protocol):
    """Consume-transform-produce exactly once: what is produced between ``begin`` and
    ``commit`` becomes visible to read-committed consumers together with the consumer's
    offsets, or not at all."""

    def begin(self) -> None: ...

    def commit(self, offsets: Sequence[TopicPartition], consumer: Consumer) -> None:
        """Commit the consumer group's ``offsets`` (next offset to read) and everything
        produced since ``begin``, atomically. Raises TransactionError (then call ``abort``,
        or for a fatal one open a new producer)."""
        ...

    def abort(self) -> None:
        """Drop everything produced since ``begin``; never raises."""
        ...


class Bus(Protocol):
    @property
    def bus_id(self) -> str:
        """Identifies the log: offsets stored elsewhere are only valid for the same bus_id."""
        ...

    def producer(self, *, name: str = "iotmon") -> Producer: ...

    def consumer(
        self, group_id: str, *, name: str = "iotmon", prefetch_kbytes: int | None = None
    ) -> Consumer:
        """A group member. ``prefetch_kbytes`` bounds what it reads ahead of its poll when it
        is behind (the default suits a drain: ingestion's 256 MiB); a role that keeps a lot
        in memory of its own (processing's windows) asks for less, so its RSS stays bounded
        while it catches up."""
        ...

    def transactional_producer(
        self, transactional_id: str, *, name: str = "iotmon"
    ) -> TransactionalProducer:
        """A producer for one consume-transform-produce loop. ``transactional_id`` must be
        stable across restarts of the same instance (a restart then aborts what the old one
        left open at once) and distinct between instances running at the same time."""
        ...

    def create_topics(self, specs: Sequence[TopicSpec]) -> list[str]:
        """Create the topics that are missing; return the names created."""
        ...

    def ping(self, timeout: float = 2.0) -> None:
        """Raise BusError when the bus cannot be reached."""
        ...

    def close(self) -> None: ...


def consume_available(consumer: Consumer, max_messages: int, timeout: float) -> list[Message]:
    """What is there now, up to ``max_messages``; else wait up to ``timeout`` for the first
    message and take what arrived with it. ``consume(n, t)`` waits for n messages or t
    seconds, which on a quiet topic is t seconds of latency per message."""
    msgs = consumer.consume(max_messages, 0)
    if msgs:
        return msgs
    msgs = consumer.consume(1, timeout)
    if msgs and max_messages > 1:
        msgs.extend(consumer.consume(max_messages - 1, 0))
    return msgs


def topic_specs(prefix: str = "") -> list[TopicSpec]:
    """The topics of DESIGN.md 4.3."""
    return [
        TopicSpec(f"{prefix}sensors-data", 3),
        TopicSpec(f"{prefix}alerts", 2),
        TopicSpec(f"{prefix}metrics", 2),
        TopicSpec(f"{prefix}device-status", 1),
        TopicSpec(f"{prefix}sensors-data.dlq", 1),
        TopicSpec(f"{prefix}alerts.dlq", 1),
        # MQTT messages as the bridge received them, kept 30 days so they can be decoded
        # again after a profile is fixed (seed 002's raw_iot_data).
        TopicSpec(f"{prefix}mqtt-raw", 3, {"retention.ms": str(30 * 86_400_000)}),
        TopicSpec(f"{prefix}mqtt-raw.dlq", 1),
    ]

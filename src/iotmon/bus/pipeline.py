"""The consumer pipeline every consuming role runs on: consume a batch -> decode each record
with a pure handler -> dead-letter what a handler rejects (or raises on) -> write -> commit
only what is durable.

No single record can stop a consumer:
- ``decode_batch`` turns *any* exception a decoder raises for one record into a rejection of
  that record (reason ``decoder_error``), and the batch goes on;
- ``DeadLetters`` sends each rejected record, unchanged, to the role's DLQ with its reason,
  detail, source (``topic[partition]@offset``) and consumer group as headers, and flushes
  before the batch commits (a DLQ entry may repeat after a crash, never vanish);
- ``isolate`` finds the records a *write* refuses (the database rejects a row) by splitting
  the batch in halves, so one poisoned record is dead-lettered instead of blocking its
  partition forever while every other record is written.

A role declares its topic, group and DLQ once, in ``roles.ROLES``; ``RoleDefinition.endpoints``
reads them (with the deployment's topic prefix and group settings) so no role spells them
again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from prometheus_client import Counter

from iotmon import logging as log
from iotmon.bus import BusError, Message, Producer

logger = log.get(__name__)

T = TypeVar("T")

DEAD_LETTERED = Counter(
    "iotmon_dead_letters_total",
    "Records sent to a dead-letter topic, by consumer group and reason",
    ["group", "reason"],
)
SKIPPED = Counter(
    "iotmon_records_skipped_total",
    "Records a consumer rejected without dead-lettering them (another group owns the DLQ)",
    ["group", "reason"],
)

MAX_DETAIL_BYTES = 1000


class Reasons:
    """Rejection reasons any consumer may give (each decoder adds its own)."""

    DECODER_ERROR = "decoder_error"  # a decoder raised for this one record
    WRITE_REJECTED = "write_rejected"  # the database refused this one record


@dataclass(frozen=True, slots=True)
class Rejection(Exception):
    """Why one record was not taken: a reason code a person can act on, and the detail."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


Decoded = tuple[list[T], list[tuple[int, Rejection]]]


def decode_batch(decode: Callable[[list[bytes]], Decoded[T]], raws: list[bytes]) -> Decoded[T]:
    """``decode`` over the batch; if it raises, record by record, so that an exception for one
    record rejects that record only (``decoder_error``). Never raises."""
    try:
        return decode(raws)
    except Exception as exc:
        logger.warning(
            "batch decoder failed; decoding record by record",
            error=f"{type(exc).__name__}: {exc}"[:300],
            records=len(raws),
        )
    items: list[T] = []
    rejects: list[tuple[int, Rejection]] = []
    for i, raw in enumerate(raws):
        try:
            got, rejected = decode([raw])
        except Exception as exc:
            rejects.append((i, Rejection(Reasons.DECODER_ERROR, _describe(exc))))
            continue
        items.extend(got)
        rejects.extend((i, rej) for _, rej in rejected)
    return items, rejects


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def source_of(m: Message) -> str:
    return f"{m.topic()}[{m.partition()}]@{m.offset()}"


class DeadLetters:
    """A role's dead-letter topic: the original bytes, key and headers, plus why."""

    def __init__(self, producer: Producer, topic: str, group: str) -> None:
        self.producer = producer
        self.topic = topic
        self.group = group
        self.sent = 0

    def send(self, m: Message, rejection: Rejection) -> None:
        source = source_of(m)
        headers = [
            *(m.headers() or []),
            ("x-iotmon-reason", rejection.reason.encode()),
            ("x-iotmon-detail", rejection.detail.encode("utf-8", "replace")[:MAX_DETAIL_BYTES]),
            ("x-iotmon-source", source.encode()),
            ("x-iotmon-consumer", self.group.encode()),
        ]
        self.producer.produce(self.topic, m.value() or b"", key=m.key(), headers=headers)
        self.sent += 1
        DEAD_LETTERED.labels(self.group, rejection.reason).inc()
        logger.debug(
            "dead-lettered", reason=rejection.reason, detail=rejection.detail, source=source
        )

    def send_all(self, rejects: Sequence[tuple[Message, Rejection]]) -> None:
        """Send and wait for the broker's acknowledgement (before the batch commits)."""
        if not rejects:
            return
        for m, rej in rejects:
            self.send(m, rej)
        self.flush()

    def flush(self, timeout: float = 30.0) -> None:
        remaining = self.producer.flush(timeout)
        if remaining:
            raise BusError(f"{remaining} dead-letter messages not acknowledged in time")

    def close(self) -> None:
        self.producer.close()


def skipped(group: str, rejects: Sequence[tuple[Any, Rejection]]) -> None:
    """Count rejects a consumer does not dead-letter itself (another group owns them)."""
    for _, rej in rejects:
        SKIPPED.labels(group, rej.reason).inc()


# SQLSTATE classes that mean "this data", not "this connection": data exception (22: bad
# text, out-of-range numbers), integrity (23), program limit (54: e.g. jsonb too deep).
_REFUSING_CLASSES = ("22", "23", "54")


def refused_by_database(exc: BaseException) -> bool:
    """Is ``exc`` the database (or a row encoder) refusing the data, rather than weather?"""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate[:2] in _REFUSING_CLASSES
    return isinstance(exc, ValueError | TypeError | OverflowError | RecursionError)


class Isolated(Generic[T]):
    """What ``isolate`` found: the records written, and each refused one with its error."""

    __slots__ = ("refused", "written")

    def __init__(self) -> None:
        self.written: list[T] = []
        self.refused: list[tuple[T, BaseException]] = []


class _Halving(Generic[T]):
    """The bookkeeping of ``isolate``: parts still to write, and what came of each."""

    def __init__(self, items: Sequence[T], refuses: Callable[[BaseException], bool]) -> None:
        self.result: Isolated[T] = Isolated()
        self._pending: list[Sequence[T]] = [items]
        self._refuses = refuses

    def next(self) -> Sequence[T] | None:
        while self._pending:
            part = self._pending.pop()
            if part:
                return part
        return None

    def written(self, part: Sequence[T]) -> None:
        self.result.written.extend(part)

    def failed(self, part: Sequence[T], exc: BaseException) -> None:
        if not self._refuses(exc):
            raise exc
        if len(part) == 1:
            self.result.refused.append((part[0], exc))
            return
        mid = len(part) // 2
        self._pending.append(part[mid:])
        self._pending.append(part[:mid])  # popped first: the records keep their order


def isolate(
    write: Callable[[Sequence[T]], None],
    items: Sequence[T],
    *,
    refuses: Callable[[BaseException], bool],
) -> Isolated[T]:
    """Write ``items``; when the write fails with an error that ``refuses`` says is about the
    data (not the weather: a lost connection is re-raised for the caller to retry), split the
    batch in halves and write each, down to the single records that fail on their own.

    ``write`` must be all-or-nothing (a transaction or a savepoint). A batch with one bad
    record among n costs about 2·log2(n) extra writes.
    """
    halving = _Halving(items, refuses)
    while (part := halving.next()) is not None:
        try:
            write(part)
        except Exception as exc:
            halving.failed(part, exc)
        else:
            halving.written(part)
    return halving.result


async def isolate_async(
    write: Callable[[Sequence[T]], Awaitable[Any]],
    items: Sequence[T],
    *,
    refuses: Callable[[BaseException], bool],
) -> Isolated[T]:
    """``isolate`` for a coroutine ``write``."""
    halving = _Halving(items, refuses)
    while (part := halving.next()) is not None:
        try:
            await write(part)
        except Exception as exc:
            halving.failed(part, exc)
        else:
            halving.written(part)
    return halving.result

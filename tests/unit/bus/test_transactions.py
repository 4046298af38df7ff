"""The in-memory bus's transactions (embedded mode's MQTT decoder) and the decoder's dedup
window: what a transaction produces is visible with its offsets or not at all; the window
forgets what an aborted batch admitted, and a replay of the same records rebuilds it."""

from __future__ import annotations

import time

from iotmon.bus import TopicPartition, TopicSpec
from iotmon.bus.memory import MemoryBus
from iotmon.mqtt.decoder import Dedup


def test_commit_makes_records_and_offsets_visible_together_abort_drops_them() -> None:
    bus = MemoryBus()
    bus.create_topics([TopicSpec("in", 1), TopicSpec("out", 1)])
    bus.producer().produce("in", b"x")
    consumer = bus.consumer("g")
    consumer.subscribe(["in"])
    assert len(consumer.consume(10, 0.1)) == 1
    tx = bus.transactional_producer("g-1")

    tx.begin()
    tx.produce("out", b"a")
    assert bus.end_offsets("out") == [0]  # not before the commit
    tx.abort()
    assert bus.end_offsets("out") == [0]
    assert consumer.committed([TopicPartition("in", 0)]) == [None]

    tx.begin()
    tx.produce("out", b"b")
    tx.commit([TopicPartition("in", 0, 1)], consumer)
    assert bus.end_offsets("out") == [1]
    assert consumer.committed([TopicPartition("in", 0)]) == [1]


def test_offsets_for_times_finds_the_first_record_at_or_after() -> None:
    bus = MemoryBus()
    bus.create_topics([TopicSpec("t", 1)])
    p = bus.producer()
    p.produce("t", b"old")
    time.sleep(0.01)
    mark = int(time.time() * 1000)
    time.sleep(0.01)
    p.produce("t", b"new")
    c = bus.consumer("g")
    c.subscribe(["t"])
    c.consume(10, 0.1)
    tp = TopicPartition("t", 0)
    assert c.offsets_for_times([tp], mark) == [1]
    assert c.offsets_for_times([tp], int(time.time() * 1000) + 1000) == [None]


def test_dedup_rollback_forgets_the_batch_and_a_replay_rebuilds_the_window() -> None:
    records = [(("d1", "t1"), 100.0), (("d1", "t2"), 101.0), (("d1", "t1"), 102.0)]
    w = Dedup(window_s=600, max_keys=1000)
    assert w.admit(records[0][0], records[0][1], clock_device=True, redelivered=False)
    w.rollback()  # the transaction failed: the batch is decoded again
    admitted = [w.admit(k, at, clock_device=True, redelivered=False) for k, at in records]
    assert admitted == [True, True, False]  # the third is a redelivery of the first
    w.commit()

    rebuilt = Dedup(window_s=600, max_keys=1000)  # a restart: replay up to the committed offset
    for k, at in records:
        rebuilt.admit(k, at, clock_device=True, redelivered=False)
    rebuilt.commit()
    assert not rebuilt.admit(("d1", "t2"), 103.0, clock_device=True, redelivered=False)
    assert rebuilt.admit(("d1", "t1"), 100.0 + 601, clock_device=True, redelivered=False)


def test_dedup_keeps_two_real_reads_of_one_code() -> None:
    w = Dedup(window_s=600, max_keys=1000)
    key = ("f2:qr", "topic", "digest")
    assert w.admit(key, 1.0, clock_device=False, redelivered=False)
    assert w.admit(key, 2.0, clock_device=False, redelivered=False)  # read again, for real
    assert not w.admit(key, 3.0, clock_device=False, redelivered=True)  # the broker's resend

from __future__ import annotations

from iotmon.bus import OFFSET_BEGINNING, TopicPartition, TopicSpec
from iotmon.bus.memory import MemoryBus


def make_bus(retention: int = 1000) -> MemoryBus:
    bus = MemoryBus(retention_messages=retention)
    bus.create_topics([TopicSpec("t", 3)])
    return bus


def test_same_key_same_partition_in_order() -> None:
    bus = make_bus()
    p = bus.producer()
    for i in range(30):
        p.produce("t", str(i).encode(), key=f"k{i % 4}".encode())
    c = bus.consumer("g")
    c.subscribe(["t"])
    msgs = c.consume(100, 0.1)
    assert len(msgs) == 30
    for k in range(4):
        mine = [m for m in msgs if m.key() == f"k{k}".encode()]
        assert len({m.partition() for m in mine}) == 1
        assert [int(m.value()) for m in mine] == sorted(int(m.value()) for m in mine)


def test_group_members_split_partitions_and_on_assign_sets_offsets() -> None:
    bus = make_bus()
    p = bus.producer()
    for i in range(60):
        p.produce("t", b"x", key=str(i).encode())
    seen: list[list[TopicPartition]] = []

    def on_assign(tps: list[TopicPartition]) -> list[TopicPartition]:
        seen.append(tps)
        return [TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in tps]

    a, b = bus.consumer("g"), bus.consumer("g")
    a.subscribe(["t"], on_assign=on_assign)
    b.subscribe(["t"], on_assign=on_assign)
    got = a.consume(1000, 0.1) + b.consume(1000, 0.1)
    assert len(got) == 60
    assert {len(x.assignment()) for x in (a, b)} == {1, 2}
    b.close()
    # a takes every partition over, from the offsets its on_assign returns
    assert len(a.consume(1000, 0.1)) == 60
    assert len(a.assignment()) == 3


def test_seek_and_committed_offsets() -> None:
    bus = make_bus()
    p = bus.producer()
    for i in range(10):
        p.produce("t", str(i).encode(), key=b"same")
    c = bus.consumer("g")
    c.subscribe(["t"])
    first = c.consume(100, 0.1)
    part = first[0].partition()
    c.seek(TopicPartition("t", part, 7))
    assert [m.offset() for m in c.consume(100, 0.1)] == [7, 8, 9]
    c.commit([TopicPartition("t", part, 5)])
    c.close()
    c2 = bus.consumer("g")
    c2.subscribe(["t"])
    assert [m.offset() for m in c2.consume(100, 0.1)] == [5, 6, 7, 8, 9]


def test_retention_drops_the_oldest_but_keeps_offsets() -> None:
    bus = make_bus(retention=5)
    p = bus.producer()
    for i in range(12):
        p.produce("t", str(i).encode(), key=b"same")
    c = bus.consumer("g")
    c.subscribe(["t"])
    msgs = c.consume(100, 0.1)
    assert [m.offset() for m in msgs] == [7, 8, 9, 10, 11]
    assert [int(m.value()) for m in msgs] == [7, 8, 9, 10, 11]

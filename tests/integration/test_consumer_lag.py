"""The consumer lag gauge on a real Kafka consumer: librdkafka's statistics, served by the
consumer's own consume calls, give per partition what the consumer has not taken yet."""

from __future__ import annotations

import time

from prometheus_client import REGISTRY

from iotmon.bus.kafka import KafkaBus

NAME = "iotmon_consumer_lag_messages"


def lags(group: str, topic: str) -> dict[str, float]:
    out = {}
    for metric in REGISTRY.collect():
        if metric.name != NAME:
            continue
        for s in metric.samples:
            if s.labels["group"] == group and s.labels["topic"] == topic:
                out[s.labels["partition"]] = s.value
    return out


def test_lag_per_partition_from_the_statistics(kafka_bus: KafkaBus, topic_prefix: str) -> None:
    topic = f"{topic_prefix}sensors-data"
    group = f"{topic_prefix}lag"
    producer = kafka_bus.producer()
    for i in range(300):
        producer.produce(topic, b"x", key=f"k{i}".encode())
    producer.flush()
    partitions = len(kafka_bus.end_offsets(topic))
    assert partitions > 1
    consumer = kafka_bus.consumer(group)
    consumer.subscribe([topic])
    taken = 0
    deadline = time.monotonic() + 60
    while taken < 100 and time.monotonic() < deadline:
        taken += len(consumer.consume(100 - taken, 0.5))
    assert taken == 100
    consumer._c.pause(consumer._c.assignment())  # take nothing more: the lag holds still
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        consumer.consume(10, 0.5)  # serves the statistics callback
        seen = lags(group, topic)
        if len(seen) == partitions and sum(seen.values()) == 200:
            break
    assert len(seen) == partitions, seen
    assert sum(seen.values()) == 200, seen
    consumer.close()
    assert lags(group, topic) == {}  # a closed consumer's partitions are not reported

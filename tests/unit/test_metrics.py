"""iotmon.metrics: the lag from librdkafka's statistics, the pool and MQTT collectors read at
scrape time, the dependency gauges, the Socket.IO delivery latency."""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from iotmon import metrics
from iotmon.metrics import KafkaLag, partition_lag
from iotmon.realtime.server import _delivered
from iotmon.timefmt import iso_utc


def value(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def part(**fields: Any) -> dict[str, Any]:
    base = {
        "desired": True,
        "ls_offset": -1001,
        "hi_offset": -1001,
        "lo_offset": -1001,
        "app_offset": -1001,
        "committed_offset": -1001,
    }
    return base | fields


@pytest.mark.parametrize(
    ("fields", "lag"),
    [
        ({"ls_offset": 100, "hi_offset": 120, "app_offset": 70}, 30),  # last stable, not hi
        ({"hi_offset": 120, "app_offset": 70}, 50),  # no last stable offset: the high mark
        ({"ls_offset": 100, "committed_offset": 40}, 60),  # nothing consumed yet: committed
        ({"ls_offset": 100, "lo_offset": 10}, 90),  # nothing committed: where earliest starts
        ({"ls_offset": 100, "app_offset": 100, "committed_offset": 5}, 0),  # position first
        ({"ls_offset": 100}, None),  # position unknown
        ({"app_offset": 5}, None),  # end unknown
    ],
)
def test_partition_lag(fields: dict[str, Any], lag: int | None) -> None:
    assert partition_lag(part(**fields)) == lag


@given(end=st.integers(-1001, 10**12), pos=st.integers(-1001, 10**12))
def test_partition_lag_is_never_negative(end: int, pos: int) -> None:
    lag = partition_lag(part(ls_offset=end, app_offset=pos))
    if end < 0 or pos < 0:
        assert lag is None
    else:
        assert lag == max(end - pos, 0)


def stats(partitions: dict[str, dict[str, Any]], topic: str) -> str:
    return orjson.dumps({"topics": {topic: {"partitions": partitions}}}).decode()


def test_kafka_lag_sets_assigned_partitions_and_drops_revoked_ones() -> None:
    group, topic = f"g-{uuid.uuid4().hex[:6]}", "sensors-data"
    lag = KafkaLag(group)
    name = "iotmon_consumer_lag_messages"
    lag(
        stats(
            {
                "0": part(ls_offset=100, app_offset=90),
                "1": part(ls_offset=50, app_offset=50),
                "2": part(desired=False, ls_offset=500, app_offset=0),  # not ours
                "-1": part(ls_offset=9, app_offset=0),  # librdkafka's internal partition
            },
            topic,
        )
    )
    assert value(name, group=group, topic=topic, partition="0") == 10
    assert value(name, group=group, topic=topic, partition="1") == 0
    assert value(name, group=group, topic=topic, partition="2") is None
    assert value(name, group=group, topic=topic, partition="-1") is None
    lag(stats({"1": part(ls_offset=80, app_offset=50)}, topic))  # partition 0 revoked
    assert value(name, group=group, topic=topic, partition="0") is None
    assert value(name, group=group, topic=topic, partition="1") == 30
    lag("not json")  # ignored
    assert value(name, group=group, topic=topic, partition="1") == 30
    lag.clear()  # the consumer closed
    assert value(name, group=group, topic=topic, partition="1") is None


class FakePool:
    max_size = 10

    def __init__(self, **st: int) -> None:
        self.st = st

    def get_stats(self) -> dict[str, int]:
        return dict(self.st)


def test_pool_figures_are_read_at_scrape_time() -> None:
    name = f"p{uuid.uuid4().hex[:6]}"
    pool = FakePool(pool_size=4, pool_available=1, pool_max=10, requests_waiting=0)
    metrics.watch_pool(name, pool)
    assert value("iotmon_db_pool_connections", pool=name, state="in_use") == 3
    assert value("iotmon_db_pool_connections", pool=name, state="idle") == 1
    assert value("iotmon_db_pool_max_connections", pool=name) == 10
    assert value("iotmon_db_pool_waiting_requests", pool=name) == 0
    pool.st.update(pool_size=10, pool_available=0, requests_waiting=7)
    assert value("iotmon_db_pool_connections", pool=name, state="in_use") == 10
    assert value("iotmon_db_pool_waiting_requests", pool=name) == 7
    del pool  # a pool gone is no longer reported
    assert value("iotmon_db_pool_max_connections", pool=name) is None


def test_dependency_gauges_follow_the_health_checks() -> None:
    metrics.dependencies(
        {
            "database": {"status": "healthy", "responseTime": 3.0},
            "redis": {"status": "unhealthy", "responseTime": 2000.0, "error": "refused"},
        }
    )
    assert value("iotmon_dependency_up", dependency="database") == 1
    assert value("iotmon_dependency_up", dependency="redis") == 0
    assert value("iotmon_dependency_check_seconds", dependency="redis") == 2.0


def test_mqtt_counters_are_read_from_the_roles_stats_and_a_rebuilt_role_replaces_them() -> None:
    class Stats:
        received, forwarded, acked, connects, connected = 5, 4, 3, 1, True

    old = Stats()
    metrics.watch_mqtt_bridge(old)
    new = Stats()
    new.received = 50
    metrics.watch_mqtt_bridge(new)  # no "duplicated timeseries": the last one counts
    assert value("iotmon_mqtt_bridge_messages_total", stage="received") == 50
    new.connected = False
    assert value("iotmon_mqtt_bridge_connected") == 0
    decoder = {"consumed": 9, "produced": 7, "deadLettered": 1, "transactions": 2, "aborted": 0}
    metrics.watch_mqtt_decoder(decoder)
    decoder["consumed"] += 1
    assert value("iotmon_mqtt_decoder_messages_total", outcome="consumed") == 10
    assert value("iotmon_mqtt_decoder_messages_total", outcome="dead_lettered") == 1
    assert value("iotmon_mqtt_decoder_messages_total", outcome="duplicate") == 0
    assert value("iotmon_mqtt_decoder_transactions_total", outcome="committed") == 2


def test_socketio_delivery_latency_from_the_event_timestamp() -> None:
    name = "iotmon_socketio_event_delivery_seconds_count"
    before = value(name, event="sensor-data") or 0
    stamp = iso_utc(time.time() - 2.0)
    _delivered({"event": "sensor-data", "data": [{"deviceId": "d", "timestamp": stamp}]})
    assert value(name, event="sensor-data") == before + 1
    total = value("iotmon_socketio_event_delivery_seconds_sum", event="sensor-data") or 0
    assert total >= 2.0
    # no timestamp, or not one: not observed
    _delivered({"event": "sensor-data", "data": [{"deviceId": "d"}]})
    _delivered({"event": "sensor-data", "data": [{"timestamp": "yesterday"}]})
    _delivered({"event": "sensor-data", "data": ["text"]})
    assert value(name, event="sensor-data") == before + 1

"""Prometheus metrics shared by the roles (each role's own stay beside its code: readings/ingest.py,
roles/processing.py, alerts/notify.py, bus/pipeline.py, web/metrics.py). README "Metrics" lists
them all.

Everything here is updated once per batch, per scrape or per event fanned out, never per record
on a hot path.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import orjson
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

CONSUMER_LAG = Gauge(
    "iotmon_consumer_lag_messages",
    "Messages of a partition not yet consumed by the group's member in this process (the last"
    " stable offset minus the consumer's position), updated from librdkafka's statistics",
    ["group", "topic", "partition"],
)
BATCH_MESSAGES = Histogram(
    "iotmon_batch_messages",
    "Messages per batch a consuming role took from the bus",
    ["role"],
    buckets=(1, 5, 10, 50, 100, 500, 1000, 2500, 5000, 10000, 25000),
)
BATCH_SECONDS = Histogram(
    "iotmon_batch_seconds",
    "Time to handle one consumed batch (decode, write, dead-letter)",
    ["role"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
READING_AGE = Histogram(
    "iotmon_reading_age_seconds",
    "Time from a reading's own timestamp to it being stored (ingestion) or counted (processing):"
    " the newest reading of each batch",
    ["role"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
REDIS_ERRORS = Counter(
    "iotmon_redis_errors_total",
    "Redis commands that failed (connection lost, timeout, refused), by component",
    ["component"],
)
DEPENDENCY_UP = Gauge(
    "iotmon_dependency_up",
    "1 if the dependency answered this process's health check at the last scrape, else 0",
    ["dependency"],
)
DEPENDENCY_SECONDS = Gauge(
    "iotmon_dependency_check_seconds",
    "How long the dependency's health check took at the last scrape",
    ["dependency"],
)
ALERTS_OPEN = Gauge(
    "iotmon_alerts_open",
    "Alerts not resolved (active or acknowledged), by severity, read every housekeeping round",
    ["severity"],
)
SOCKETIO_CLIENTS = Gauge("iotmon_socketio_clients", "Socket.IO clients connected to this process")
SOCKETIO_DELIVERY = Histogram(
    "iotmon_socketio_event_delivery_seconds",
    "Time from the timestamp an event carries (a reading's, an alert's) to the event being queued"
    " to this process's clients",
    ["event"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)


class KafkaLag:
    """The ``stats_cb`` of a Kafka consumer: per assigned partition, the lag from librdkafka's
    statistics (``statistics.interval.ms``), served by the consumer's own ``consume`` calls.
    Partitions no longer assigned lose their series."""

    def __init__(self, group: str) -> None:
        self.group = group
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def __call__(self, stats_json: str) -> None:
        try:
            stats = orjson.loads(stats_json)
        except orjson.JSONDecodeError:
            return
        now: dict[tuple[str, str], int] = {}
        for topic, t in (stats.get("topics") or {}).items():
            for pid, p in (t.get("partitions") or {}).items():
                if pid == "-1" or not p.get("desired"):
                    continue
                lag = partition_lag(p)
                if lag is not None:
                    now[(topic, pid)] = lag
        with self._lock:
            for topic, pid in self._seen - now.keys():
                _remove(CONSUMER_LAG, self.group, topic, pid)
            for (topic, pid), lag in now.items():
                CONSUMER_LAG.labels(self.group, topic, pid).set(lag)
            self._seen = set(now)

    def clear(self) -> None:
        with self._lock:
            for topic, pid in self._seen:
                _remove(CONSUMER_LAG, self.group, topic, pid)
            self._seen = set()


def partition_lag(p: dict[str, Any]) -> int | None:
    """The end (last stable offset, as the consumer reads committed transactions only; else
    the high watermark) minus the position (next offset handed to the application; before the
    first message, the committed offset; without one, the low watermark, where
    ``auto.offset.reset=earliest`` starts). None while either is unknown."""
    end = p.get("ls_offset", -1)
    if end is None or end < 0:
        end = p.get("hi_offset", -1)
    pos = -1
    for field in ("app_offset", "committed_offset", "lo_offset"):
        pos = p.get(field, -1)
        if pos is not None and pos >= 0:
            break
    if end is None or pos is None or end < 0 or pos < 0:
        return None
    return max(int(end) - int(pos), 0)


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)


class _Pools(Collector):
    """PostgreSQL pool figures (``psycopg_pool`` ``get_stats``) read at scrape time."""

    def __init__(self) -> None:
        self._pools: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def watch(self, name: str, pool: Any) -> None:
        self._pools[name] = pool

    def collect(self) -> Iterable[GaugeMetricFamily]:
        size = GaugeMetricFamily(
            "iotmon_db_pool_connections",
            "Connections of a PostgreSQL pool, by state (in_use, idle)",
            labels=["pool", "state"],
        )
        limit = GaugeMetricFamily(
            "iotmon_db_pool_max_connections", "A PostgreSQL pool's maximum size", labels=["pool"]
        )
        waiting = GaugeMetricFamily(
            "iotmon_db_pool_waiting_requests",
            "Requests waiting for a connection of a PostgreSQL pool",
            labels=["pool"],
        )
        for name, pool in _items(self._pools):
            st = pool.get_stats()
            total, idle = int(st.get("pool_size", 0)), int(st.get("pool_available", 0))
            size.add_metric([name, "in_use"], max(total - idle, 0))
            size.add_metric([name, "idle"], idle)
            limit.add_metric([name], int(st.get("pool_max", pool.max_size)))
            waiting.add_metric([name], int(st.get("requests_waiting", 0)))
        yield size
        yield limit
        yield waiting


def _items(pools: weakref.WeakValueDictionary[str, Any]) -> Iterator[tuple[str, Any]]:
    return iter(list(pools.items()))


POOLS = _Pools()
REGISTRY.register(POOLS)


def watch_pool(name: str, pool: Any) -> None:
    """Report ``pool`` (a psycopg_pool pool) as ``pool=name`` on /metrics while it lives."""
    POOLS.watch(name, pool)


def dependencies(checks: dict[str, Any]) -> None:
    """Set the dependency gauges from a health check's results (web/health.py ``Probes``)."""
    for name, result in checks.items():
        DEPENDENCY_UP.labels(name).set(1 if result.get("status") == "healthy" else 0)
        DEPENDENCY_SECONDS.labels(name).set(float(result.get("responseTime", 0)) / 1000)


class _Counted(Collector):
    """Counters a role already keeps for its /health status, read at scrape time (the MQTT
    bridge's and decoder's): nothing added to their loops."""

    def __init__(self, read: Any) -> None:
        self._read = read

    def collect(self) -> Iterable[Any]:
        return list(self._read())


def watch_mqtt_bridge(stats: Any) -> None:
    """/metrics of the MQTT bridge from its ``BridgeStats`` (mqtt/bridge.py)."""

    def read() -> Iterator[Any]:
        messages = CounterMetricFamily(
            "iotmon_mqtt_bridge_messages",
            "MQTT messages received from the broker, forwarded to mqtt-raw, acknowledged back",
            labels=["stage"],
        )
        for stage in ("received", "forwarded", "acked"):
            messages.add_metric([stage], int(getattr(stats, stage)))
        yield messages
        yield CounterMetricFamily(
            "iotmon_mqtt_bridge_connects", "Connections made to the broker", value=stats.connects
        )
        yield GaugeMetricFamily(
            "iotmon_mqtt_bridge_connected",
            "1 while the bridge is connected to the broker",
            value=1 if stats.connected else 0,
        )

    _register("mqtt-bridge", _Counted(read))


DECODER_OUTCOMES = {
    "consumed": "consumed",
    "produced": "produced",
    "deadLettered": "dead_lettered",
    "duplicates": "duplicate",
    "replayed": "replayed",
}


def watch_mqtt_decoder(stats: dict[str, float]) -> None:
    """/metrics of the MQTT decoder from its status counters (roles/mqtt_decoder.py)."""

    def read() -> Iterator[Any]:
        messages = CounterMetricFamily(
            "iotmon_mqtt_decoder_messages",
            "mqtt-raw messages consumed, readings produced to sensors-data, messages"
            " dead-lettered, duplicates dropped, redeliveries replayed",
            labels=["outcome"],
        )
        for key, outcome in DECODER_OUTCOMES.items():
            messages.add_metric([outcome], int(stats.get(key, 0)))
        yield messages
        txns = CounterMetricFamily(
            "iotmon_mqtt_decoder_transactions",
            "Kafka transactions of the decoder (readings and offsets together)",
            labels=["outcome"],
        )
        txns.add_metric(["committed"], int(stats.get("transactions", 0)))
        txns.add_metric(["aborted"], int(stats.get("aborted", 0)))
        yield txns
        busy = CounterMetricFamily(
            "iotmon_mqtt_decoder_busy_seconds",
            "CPU time of the decoder's loop decoding, producing and committing transactions",
            labels=["stage"],
        )
        for key, stage in (
            ("decodeSeconds", "decode"),
            ("produceSeconds", "produce"),
            ("commitSeconds", "commit"),
        ):
            busy.add_metric([stage], float(stats.get(key, 0.0)))
        yield busy

    _register("mqtt-decoder", _Counted(read))


_watched: dict[str, Collector] = {}
_watched_lock = threading.Lock()


def _register(key: str, collector: Collector) -> None:
    """One collector per ``key`` in a process: a role built again (tests, embedded restarts)
    replaces the one before, whose figures are gone with it."""
    with _watched_lock:
        old = _watched.pop(key, None)
        if old is not None:
            REGISTRY.unregister(old)
        REGISTRY.register(collector)
        _watched[key] = collector

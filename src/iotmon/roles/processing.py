"""Processing role: ``sensors-data`` (own consumer group) -> live statistics in Redis, stats
snapshots to ``metrics``, alert candidates to ``alerts``, hourly roll-up in PostgreSQL.

On every assignment the state is rebuilt from PostgreSQL and the consumer seeks to where
ingestion stood in that same snapshot (see stats/rebuild.py): a restart counts nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import psycopg
import redis
from fastapi import APIRouter
from prometheus_client import Counter, Gauge

from iotmon import logging as log
from iotmon import metrics, native
from iotmon.bus import OFFSET_BEGINNING, Consumer, Producer, TopicPartition, consume_available
from iotmon.bus.pipeline import DeadLetters, Reasons, Rejection, decode_batch, skipped
from iotmon.cache import keys
from iotmon.db.pool import connect_retrying
from iotmon.malloc import release_memory
from iotmon.profiles.sensors import Ranges, SensorTypes
from iotmon.readings.models import Col, Reason, Row, limits_from, parse_many
from iotmon.realtime.publish import Encoder, LivePublisher, WatchedRooms
from iotmon.roles import ROLES
from iotmon.roles.runtime import Services, run_in_thread, tune_gc
from iotmon.stats import publish, rebuild, rollup
from iotmon.stats.processor import Processor, ProcessorConfig, iso_ms
from iotmon.timefmt import iso_utc

logger = log.get(__name__)

PROCESSED = Counter("iotmon_processing_readings_total", "Readings counted into live statistics")
CANDIDATES = Counter("iotmon_alert_candidates_total", "Alert candidates published", ["type"])
DEVICES = Gauge("iotmon_processing_devices", "Devices with live state")
BATCH_SIZE = metrics.BATCH_MESSAGES.labels("processing")
BATCH_TOOK = metrics.BATCH_SECONDS.labels("processing")
AGE = metrics.READING_AGE.labels("processing")
REDIS_ERRORS = metrics.REDIS_ERRORS.labels("processing")

# Redis writes go out every 100 ms in small slices rather than once a second in one big one:
# at 10,000 devices a one-second flush held the consuming thread for a few hundred ms, which
# is what a reading arriving then waited. System metrics and offset commits stay at 1 s.
FLUSH_INTERVAL_S = 0.1
READ_AHEAD_KBYTES = 32_768  # librdkafka's read-ahead when behind (bounds RSS while catching up)
SYSTEM_INTERVAL_S = 1.0
QUIET_REFRESH_S = 60.0
CONFIG_RELOAD_S = 10.0
ROLLUP_INTERVAL_S = 300.0
# malloc's free pages back to the system this often (malloc.release_memory): the windows and
# each batch's rows churn, and a role that was behind otherwise kept its peak
TRIM_INTERVAL_S = 60.0
ACTIVE_AFTER_S = 300.0


# Each member of the processing group publishes its share of the key figures (the devices of
# its partitions) every SYSTEM_INTERVAL_S; the fleet's figures are the sum of the shares
# published in the last MEMBER_FRESH_S. A share older than MEMBER_STALE_S (a member gone
# without a goodbye) is removed.
MEMBER_FRESH_S = 5.0
MEMBER_STALE_S = 60.0


def combine_shares(
    members: dict[bytes, bytes], me: str, mine: dict[str, Any], now: float
) -> tuple[list[dict[str, Any]], list[bytes]]:
    """The fresh shares of every member (this one's as just computed) and the stale fields.
    A share that does not parse (written by someone else) counts as stale."""
    shares, stale = [mine], []
    for field, raw in members.items():
        if field.decode(errors="replace") == me:
            continue
        try:
            share = orjson.loads(raw)
            at = float(share["at"])
            ok = all(
                isinstance(share[k], int) and share[k] >= 0 for k in ("devices", "active", "points")
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            ok, at = False, 0.0
        age = now - at  # a share from the future (a clock far ahead) is stale too
        if not ok or not -MEMBER_STALE_S <= age <= MEMBER_STALE_S:
            stale.append(field)
        elif abs(age) <= MEMBER_FRESH_S:
            shares.append(share)
    return shares, stale


class ProcessingRole:
    name = "processing"

    def __init__(self, services: Services) -> None:
        s = services.settings
        assert services.database_url is not None
        assert services.redis_url is not None
        self.services = services
        self.endpoints = ROLES["processing"].endpoints(s)
        self.topic = self.endpoints.topic
        self.alerts_topic = s.topic("alerts")
        self.metrics_topic = s.topic("metrics")
        self.group = self.endpoints.group
        self.limits = limits_from(s)
        # The sensor types the profiles declare, as ingestion takes them (else a reading
        # ingestion stored would be skipped here, and never counted).
        self.sensor_types = SensorTypes(
            services.database_url, s.mqtt_profile_refresh_s, self._set_ranges
        )
        self.failed = 0
        self._redis_error_logged = -1e9
        self.processor = Processor(
            {}, ProcessorConfig(anomaly_z=s.anomaly_z, trend_horizon_s=s.trend_horizon_s)
        )
        self.redis = redis.Redis.from_url(services.redis_url)
        # Live events go out in python-socketio's Redis-manager format, batched; the web
        # role's Socket.IO server delivers them to the subscribed rooms (device:<id>, system).
        self.live = LivePublisher(
            self.redis, Encoder(replay_size=s.live_replay_size, replay_ttl_s=s.live_replay_ttl_s)
        )
        self.watched = WatchedRooms(self.redis)
        self.live_interval_s = s.live_min_interval_s
        self._last_emit: dict[str, float] = {}
        self._stats_cache: dict[str, dict[str, Any]] = {}
        self.stats_interval_s = s.stats_interval_s
        self._stats_at: dict[str, float] = {}
        self._quiet_sweep_at = 0.0
        self.processed = 0
        self.candidates = 0
        self._positions: dict[int, int] = {}
        self.partitions: list[int] = []  # of the topic, assigned to this member
        self._configs_fingerprint: str | None = None  # of the configurations last loaded
        self._stop = threading.Event()
        # this member's field in keys.PROCESSING_MEMBERS
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # --- assignment: rebuild, then seek to ingestion's offsets ---
    def _on_assign(self, tps: list[TopicPartition]) -> list[TopicPartition]:
        started = time.perf_counter()
        self._positions = {}  # commit only what this member consumes now
        self.partitions = sorted({tp.partition for tp in tps})
        offsets = self._rebuild(self.partitions)
        self._configs_fingerprint = None  # the rebuild loaded them; the next reload checks
        gc.freeze()  # the rebuilt windows: out of the collector's way (tune_gc)
        logger.info(
            "state rebuilt from PostgreSQL",
            devices=len(self.processor.devices),
            partitions=self.partitions,
            offsets=offsets,
            seconds=round(time.perf_counter() - started, 3),
        )
        out = []
        for tp in tps:
            off = offsets.get(tp.partition)
            out.append(
                TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING if off is None else off)
            )
        return out

    def _rebuild(self, partitions: list[int]) -> dict[int, int | None]:
        """Rebuild the devices of ``partitions`` (the member's assignment: each member of a
        group holds its share of the fleet, and writes the statistics of no other member's
        devices) from PostgreSQL, retrying while it is away. Should the rebuild itself fail
        on what is stored (a row nobody foresaw), processing starts without history at
        ingestion's offsets rather than not at all: the windows fill up again as readings
        arrive, and the error is logged with what to look at."""
        assert self.services.database_url is not None
        backoff, attempt = 0.5, 0
        while True:
            attempt += 1
            self.processor.devices.clear()
            try:
                with connect_retrying(
                    self.services.database_url,
                    application_name="iotmon-processing",
                    stop=self._stop,
                ) as conn:
                    return rebuild.rebuild(
                        conn,
                        self.processor,
                        now=time.time(),
                        bus_id=self.services.bus.bus_id,
                        ingestion_group=self.services.settings.ingestion_group,
                        topic=self.topic,
                        partitions=partitions,
                    )
            except (psycopg.OperationalError, OSError) as exc:
                if self._stop.is_set():  # stopping anyway: nothing will be consumed
                    return {}
                logger.error("rebuild: database unavailable, retrying", error=str(exc))
            except Exception as exc:
                logger.error(
                    "rebuild from PostgreSQL failed; starting without history",
                    error=f"{type(exc).__name__}: {exc}"[:500],
                    attempt=attempt,
                )
                if attempt >= 3:
                    self.processor.devices.clear()
                    return self._ingestion_offsets()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 10)

    def _ingestion_offsets(self) -> dict[int, int | None]:
        assert self.services.database_url is not None
        with connect_retrying(self.services.database_url, stop=self._stop) as conn:
            return rebuild.ingestion_offsets(
                conn,
                bus_id=self.services.bus.bus_id,
                ingestion_group=self.services.settings.ingestion_group,
                topic=self.topic,
            )

    def _decode(self, raws: list[bytes], now: datetime) -> tuple[list[Row], list[Any]]:
        rows, rejected = decode_batch(lambda b: parse_many(b, now, self.limits), raws)
        # Ingestion may have taken a type declared a moment ago: catch up, decode again.
        if (
            any(r.reason == Reason.UNKNOWN_SENSOR_TYPE for _, r in rejected)
            and self.sensor_types.reload_on_miss()
        ):
            rows, rejected = decode_batch(lambda b: parse_many(b, now, self.limits), raws)
        return rows, rejected

    def _add(
        self,
        rows: list[Row],
        msgs: list[Any],
        rejected: list[Any],
        now: float,
        producer: Producer,
        dead: DeadLetters,
    ) -> None:
        """Count each row into the statistics; a row the statistics fail on (none should:
        values are bounded) is dead-lettered and the batch goes on."""
        add = self.processor.add
        for i, row in enumerate(rows):
            device_id, ts, sensor_type, value, unit = row[:5]  # Col order
            try:
                cands = add(device_id, ts.timestamp(), value, now, sensor_type, unit)
            except Exception as exc:
                self.failed += 1
                bad = {k for k, _ in rejected}
                taken = [m for j, m in enumerate(msgs) if j not in bad]
                detail = f"statistics failed: {type(exc).__name__}: {exc}"[:500]
                logger.error("reading not counted", error=detail, device=device_id)
                with contextlib.suppress(Exception):
                    dead.send_all([(taken[i], Rejection(Reasons.DECODER_ERROR, detail))])
                continue
            for cand in cands:
                self._candidate(producer, cand)

    # --- the loop (a worker thread) ---
    def loop(self, stop: threading.Event) -> None:
        self._stop = stop
        # thousands of short-lived rows a batch; with the default thresholds the collector
        # took ~7 % of the role at 20,000 readings/s (py-spy), scanning 10,000 devices' windows
        tune_gc()
        engine = native.status()
        logger.info("statistics engine", compiled=engine.compiled, path=engine.reason)
        # not a drain's read-ahead: a processing role that is behind kept up to 784 MiB of
        # prefetched readings beside its windows (BENCHMARKS.md, sustained)
        consumer = self.services.bus.consumer(
            self.group, name="iotmon-processing", prefetch_kbytes=READ_AHEAD_KBYTES
        )
        producer = self.services.bus.producer(name="iotmon-processing")
        assert self.endpoints.dlq is not None
        dead = DeadLetters(
            self.services.bus.producer(name="iotmon-processing-dlq"),
            self.endpoints.dlq,
            self.group,
        )
        consumer.subscribe([self.topic], on_assign=self._on_assign)
        last_flush = last_system = last_reload = last_rollup = 0.0
        last_trim = time.monotonic()
        try:
            while not stop.is_set():
                msgs = consume_available(consumer, 5000, 0.2)
                if msgs:
                    started = time.perf_counter()
                    now_dt = datetime.now(UTC)
                    now = now_dt.timestamp()
                    rows, rejected = self._decode([m.value() or b"" for m in msgs], now_dt)
                    skipped(self.group, rejected)  # ingestion dead-letters them
                    self._add(rows, msgs, rejected, now, producer, dead)
                    self._emit_live({row[Col.DEVICE_ID] for row in rows})
                    self.processed += len(rows)
                    PROCESSED.inc(len(rows))
                    for m in msgs:
                        self._positions[m.partition()] = m.offset() + 1  # type: ignore[index,operator]
                    BATCH_SIZE.observe(len(msgs))
                    BATCH_TOOK.observe(time.perf_counter() - started)
                    if rows:
                        newest = max(row[Col.TIMESTAMP] for row in rows).timestamp()
                        AGE.observe(max(now - newest, 0.0))
                mono = time.monotonic()
                if mono - last_reload >= CONFIG_RELOAD_S:
                    self._reload_configs()
                    last_reload = mono
                if mono - last_flush >= FLUSH_INTERVAL_S:
                    system = mono - last_system >= SYSTEM_INTERVAL_S
                    self.flush(producer, consumer, system=system)
                    last_flush = mono
                    if system:
                        last_system = mono
                if mono - last_rollup >= ROLLUP_INTERVAL_S:
                    self._rollup()
                    last_rollup = mono
                if mono - last_trim >= TRIM_INTERVAL_S:
                    release_memory()
                    last_trim = time.monotonic()
                    logger.debug("malloc trimmed", took_ms=round((last_trim - mono) * 1000, 1))
        finally:
            self.flush(producer, consumer)
            with contextlib.suppress(redis.RedisError):  # its devices move to the others
                self.redis.hdel(keys.PROCESSING_MEMBERS, self.member)
            producer.flush(10)
            dead.close()
            consumer.close()

    def _emit_live(self, device_ids: set[str]) -> None:
        """``sensor-data`` to the room of each device some client watches, at most once per
        live interval per device, all in one Redis round trip."""
        mono = time.monotonic()
        watched = self.watched.rooms()
        events = []
        for device_id in device_ids:
            if f"device:{device_id}" not in watched:
                continue
            if mono - self._last_emit.get(device_id, -1e9) < self.live_interval_s:
                continue
            self._last_emit[device_id] = mono
            st = self.processor.devices[device_id]
            events.append(
                (
                    "sensor-data",
                    {
                        "deviceId": device_id,
                        "timestamp": iso_ms(st.timestamp),
                        "data": {"value": st.value, "unit": st.config.unit, "status": st.status},
                        "stats": self._stats_cache.get(device_id, {}),
                    },
                    f"device:{device_id}",
                )
            )
        try:
            self.live.emit_many(events)
        except redis.RedisError as exc:  # live events are best effort
            self._redis_down("live events not published", exc)

    def _candidate(self, producer: Producer, cand: dict[str, Any]) -> None:
        producer.produce(self.alerts_topic, orjson.dumps(cand), key=cand["deviceId"].encode())
        self.candidates += 1
        CANDIDATES.labels(cand["type"]).inc()

    def flush(self, producer: Producer, consumer: Consumer, *, system: bool = True) -> None:
        """Write the current value of every device that changed since the last flush, and
        the statistics of those whose last write is older than the stats interval (or that
        went quiet: windows move on without readings); with ``system``, also the system
        metrics, and commit our offsets."""
        proc = self.processor
        if system and self._redis_lost():
            proc.dirty |= proc.devices.keys()
            self._stats_at.clear()
        dirty, proc.dirty = proc.dirty, set()
        now = time.time()
        pipe = self.redis.pipeline(transaction=False)
        current = proc.current
        publish.write_currents(pipe, {d: current(d) for d in dirty})
        publish.write_last_seen(pipe, {d: proc.devices[d].timestamp for d in dirty})
        interval = self.stats_interval_s
        due = [d for d in dirty if now - self._stats_at.get(d, 0.0) >= interval]
        # Spread the work: at most the share of devices one interval asks for per flush (plus
        # slack), most overdue first, so 10,000 devices do not all come due in one flush.
        cap = max(50, int(1.2 * len(proc.devices) * FLUSH_INTERVAL_S / max(interval, 1e-9)))
        if len(due) > cap:
            due.sort(key=lambda d: self._stats_at.get(d, 0.0))
            del due[cap:]
        if now - self._quiet_sweep_at >= QUIET_REFRESH_S:
            self._quiet_sweep_at = now
            due += [
                d
                for d in proc.devices
                if d not in dirty and now - self._stats_at.get(d, 0.0) >= QUIET_REFRESH_S
            ]
        stats = []
        for device_id in due:
            self._stats_at[device_id] = now
            snap = proc.snapshot(device_id, now)
            s1, s24 = snap["stats1h"], snap["stats24h"]
            d1, d24 = s1.as_dict(), s24.as_dict()
            stats.append((device_id, d1, d24))
            self._stats_cache[device_id] = {
                "avg": s1.avg,
                "min": s1.min,
                "max": s1.max,
                "count": s1.count,
                "trend": s1.trend,
            }
            for cand in proc.trend_candidates(device_id, s1):
                self._candidate(producer, cand)
            producer.produce(
                self.metrics_topic,
                orjson.dumps(
                    {
                        "deviceId": device_id,
                        "current": snap["current"],
                        "stats1h": d1,
                        "stats24h": d24,
                    }
                ),
                key=device_id.encode(),
            )
        publish.write_stats_many(pipe, stats)
        metrics = self.system_metrics(now) if system else None
        if metrics is not None:
            publish.write_system(pipe, metrics)
        if system:
            pipe.set(keys.PROCESSING_SYNCED, b"1")
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self._redis_down("redis write failed; will write again", exc)
            proc.dirty |= dirty
            for device_id in due:
                self._stats_at.pop(device_id, None)
            return
        if metrics is None:
            return
        DEVICES.set(len(proc.devices))
        try:
            self.live.emit_many([("system-status", metrics, "system")])
        except redis.RedisError as exc:
            self._redis_down("live events not published", exc)
        if self._positions:
            consumer.commit([TopicPartition(self.topic, p, o) for p, o in self._positions.items()])

    def _redis_down(self, what: str, exc: Exception) -> None:
        """Log a Redis outage once every 10 s, not at every flush (every 100 ms)."""
        REDIS_ERRORS.inc()
        mono = time.monotonic()
        if mono - self._redis_error_logged >= 10:
            self._redis_error_logged = mono
            logger.error(what, error=str(exc)[:300])

    def _redis_lost(self) -> bool:
        """Did Redis lose what processing wrote (restarted without its data)? Then every
        device's current value, statistics and last-seen time are written again: a quiet
        device would otherwise have none until its next reading."""
        try:
            lost = not self.redis.exists(keys.PROCESSING_SYNCED)
        except redis.RedisError:
            return False  # away: the write below fails and is retried
        if lost and self.processor.devices:
            logger.warning(
                "redis lost the live state; writing it all again",
                devices=len(self.processor.devices),
            )
        return lost

    def system_metrics(self, now: float) -> dict[str, Any]:
        """The key figures of the whole fleet: this member's share of the devices, and the
        shares the other members of the group published in the last MEMBER_FRESH_S."""
        proc = self.processor
        mine = {
            "devices": len(proc.devices),
            "active": sum(
                1 for st in proc.devices.values() if now - st.timestamp <= ACTIVE_AFTER_S
            ),
            "points": sum(st.w1h.count(now) for st in proc.devices.values()),
            "at": now,
        }
        alerts, shares = 0, [mine]
        try:
            pipe = self.redis.pipeline(transaction=False)
            pipe.hlen(keys.ACTIVE_ALERTS)
            pipe.hset(keys.PROCESSING_MEMBERS, self.member, orjson.dumps(mine))
            pipe.expire(keys.PROCESSING_MEMBERS, int(MEMBER_STALE_S))
            pipe.hgetall(keys.PROCESSING_MEMBERS)
            alerts, _, _, members = pipe.execute()
            shares, stale = combine_shares(members, self.member, mine, now)
            if stale:
                self.redis.hdel(keys.PROCESSING_MEMBERS, *stale)
        except redis.RedisError:
            pass
        devices = sum(int(x["devices"]) for x in shares)
        active = sum(int(x["active"]) for x in shares)
        total = max(len(proc.configs), devices)
        return {
            "totalDevices": total,
            "activeDevices": active,
            "activeAlertsCount": int(alerts),
            "dataPointsLastHour": sum(int(x["points"]) for x in shares),
            "systemHealth": "healthy" if active == total else "degraded",
            "timestamp": iso_utc(),
        }

    def _reload_configs(self) -> None:
        assert self.services.database_url is not None
        try:
            with connect_retrying(self.services.database_url, attempts=1) as conn:
                fingerprint = rebuild.configs_fingerprint(conn)
                if fingerprint is not None and fingerprint == self._configs_fingerprint:
                    return
                self.processor.reconfigure(rebuild.load_configs(conn))
                self._configs_fingerprint = fingerprint
        except Exception as exc:
            logger.warning("device configuration reload failed", error=str(exc))

    def _rollup(self) -> None:
        assert self.services.database_url is not None
        try:
            with connect_retrying(self.services.database_url, attempts=1) as conn:
                rollup.roll_up(conn)
        except Exception as exc:
            logger.warning("hourly roll-up failed", error=str(exc))

    def _set_ranges(self, ranges: Ranges) -> None:
        self.limits = replace(self.limits, value_range=ranges)  # read once per batch

    async def run(self, stop: asyncio.Event) -> None:
        if not await self.sensor_types.start(stop):
            self.redis.close()
            return
        follow_task = asyncio.create_task(self.sensor_types.follow(stop))
        try:
            await run_in_thread(self.loop, stop)
        finally:
            follow_task.cancel()
            self.redis.close()

    def status(self) -> dict[str, Any]:
        return {
            "processed": self.processed,
            "devices": len(self.processor.devices),
            "candidates": self.candidates,
            "failed": self.failed,
        }

    def routers(self) -> list[APIRouter]:
        return []


def build(services: Services) -> ProcessingRole:
    return ProcessingRole(services)

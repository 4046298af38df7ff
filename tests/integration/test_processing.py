"""Live statistics equal a brute-force recomputation from sensor_readings over the same
window, before and after a restart of the processing role (rebuilt from PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest
import redis

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.roles.processing import ProcessingRole
from iotmon.roles.runtime import Services
from iotmon.stats import rebuild as rebuild_mod
from iotmon.stats.processor import Processor
from tests.integration.helpers import drain, query


def produce_spread(
    bus: KafkaBus,
    topic: str,
    devices: list[str],
    *,
    start: datetime,
    seconds: float,
    per_device: int,
    base: float,
) -> int:
    producer = bus.producer()
    step = seconds / per_device
    for i in range(per_device):
        for k, device in enumerate(devices):
            ts = start + timedelta(seconds=i * step + k * 0.001)
            value = base + k * 10 + (i % 17) * 0.37 + (i / per_device) * 5
            producer.produce(
                topic,
                orjson.dumps(
                    {
                        "deviceId": device,
                        "sensorType": "temperature",
                        "unit": "celsius",
                        "timestamp": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                        "value": round(value, 3),
                    }
                ),
                key=device.encode(),
            )
    assert producer.flush(30) == 0
    return per_device * len(devices)


def brute_force(url: str, device: str, start: str, end: str) -> tuple:  # type: ignore[type-arg]
    return query(
        url,
        """
        SELECT count(*), avg(value), min(value), max(value), stddev(value),
               percentile_cont(0.5) WITHIN GROUP (ORDER BY value)
        FROM sensor_readings WHERE device_id = %s AND "timestamp" >= %s AND "timestamp" < %s
    """,
        (device, start, end),
    )[0]


def check_against_database(r: redis.Redis, url: str, devices: list[str]) -> None:
    for device in devices:
        for window in ("1h", "24h"):
            raw = r.get(f"device:{device}:stats:{window}")
            assert raw, f"no stats for {device} {window}"
            stats = orjson.loads(raw)
            n, avg, lo, hi, std, median = brute_force(
                url, device, stats["windowStart"], stats["windowEnd"]
            )
            assert stats["count"] == n, (device, window)
            assert stats["avg"] == pytest.approx(avg, rel=1e-9)
            assert stats["min"] == lo
            assert stats["max"] == hi
            assert stats["std"] == pytest.approx(std, rel=1e-6)
            assert stats["median"] == pytest.approx(median, rel=0.01)
            assert stats["trend"] in ("increasing", "decreasing", "stable")
        assert orjson.loads(r.get(f"device:{device}:current"))["status"] == "normal"  # type: ignore[arg-type]
        assert r.ttl(f"device:{device}:current") > 3500
        assert r.ttl(f"device:{device}:stats:24h") > 86000


def scene(
    settings: Settings, name: str, count: int
) -> tuple[Settings, list[str], str, str, redis.Redis]:
    """Settings that write statistics at every flush, ``count`` devices of a fresh name, the
    readings topic, the database and Redis."""
    tag = uuid.uuid4().hex[:6]
    return (
        settings.model_copy(update={"stats_interval_s": 0.0}),
        [f"{name}-{tag}-{k}" for k in range(count)],
        settings.topic("sensors-data"),
        settings.database_url.get_secret_value(),  # type: ignore[union-attr]
        redis.Redis.from_url(settings.redis_url.get_secret_value()),  # type: ignore[union-attr]
    )


class Running:
    """The processing role's loop in a thread, as `iotmon run processing` runs it."""

    def __init__(self, settings: Settings, bus: KafkaBus) -> None:
        assert settings.database_url is not None
        assert settings.redis_url is not None
        self.role = ProcessingRole(
            Services(
                settings=settings,
                bus=bus,
                database_url=settings.database_url.get_secret_value(),
                redis_url=settings.redis_url.get_secret_value(),
            )
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.role.loop, args=(self.stop,))
        self.thread.start()

    def wait_processed(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.role.processed < n:
            assert time.monotonic() < deadline, f"processed {self.role.processed} of {n}"
            time.sleep(0.1)
        time.sleep(1.5)  # one flush interval

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)


async def test_statistics_equal_a_recomputation_and_survive_a_restart(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    settings, devices, topic, url, r = scene(settings, "stats", 3)
    now = datetime.now(UTC)
    # Before the role starts: 3 hours of history, stored by ingestion.
    old = produce_spread(
        kafka_bus,
        topic,
        devices,
        start=now - timedelta(hours=3),
        seconds=3 * 3600 - 120,
        per_device=1500,
        base=40,
    )
    await asyncio.to_thread(drain, settings, kafka_bus, kafka_bus.end_offsets(topic))
    assert query(url, "SELECT count(*) FROM sensor_readings") == [(old,)]

    first = await asyncio.to_thread(Running, settings, kafka_bus)
    try:
        # Live: the last minute, consumed by processing and ingestion side by side.
        live = produce_spread(
            kafka_bus,
            topic,
            devices,
            start=now - timedelta(seconds=60),
            seconds=55,
            per_device=300,
            base=45,
        )
        await asyncio.to_thread(drain, settings, kafka_bus, kafka_bus.end_offsets(topic))
        await asyncio.to_thread(first.wait_processed, live)
        check_against_database(r, url, devices)
    finally:
        await asyncio.to_thread(first.close)

    # A restart rebuilds from PostgreSQL and resumes at ingestion's offsets: same figures.
    for device in devices:
        r.delete(f"device:{device}:stats:1h", f"device:{device}:stats:24h")
    second = await asyncio.to_thread(Running, settings, kafka_bus)
    try:
        await asyncio.to_thread(second.wait_processed, 0)
        deadline = time.monotonic() + 30
        while not r.get(f"device:{devices[0]}:stats:24h"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        assert second.role.processed == 0  # nothing re-consumed: all came from the rebuild
        check_against_database(r, url, devices)
        metrics = orjson.loads(r.get("system:metrics"))  # type: ignore[arg-type]
        assert metrics["totalDevices"] >= 3
        assert metrics["dataPointsLastHour"] >= live
    finally:
        await asyncio.to_thread(second.close)
        r.delete(
            *[f"device:{d}:{k}" for d in devices for k in ("current", "stats:1h", "stats:24h")]
        )


def test_hourly_rollup_is_idempotent(database_url: str) -> None:
    from iotmon.stats.rollup import roll_up

    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            'INSERT INTO sensor_readings (device_id, "timestamp", sensor_type, value, unit)'
            " SELECT 'device-001', %s + make_interval(secs => g), 'temperature', g, 'celsius'"
            " FROM generate_series(1, 100) g",
            (hour,),
        )
        first = roll_up(conn)
        rows = conn.execute("SELECT * FROM device_stats_hourly").fetchall()
        assert roll_up(conn) == first
        again = conn.execute("SELECT * FROM device_stats_hourly").fetchall()
    assert len(rows) == 1
    assert [r[:7] for r in rows] == [r[:7] for r in again]
    device, ts, avg, lo, hi, n, _std = rows[0][:7]
    assert (device, ts, avg, lo, hi, n) == ("device-001", hour, 50.5, 1, 100, 100)


async def test_live_sensor_data_events_reach_the_device_room(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    """Processing emits sensor-data (and system-status) through the Socket.IO Redis manager,
    for the devices some client watches (what web processes record in live:watched)."""
    from iotmon.realtime.publish import WATCHED_KEY

    device = f"live-{uuid.uuid4().hex[:6]}"
    unwatched = f"quiet-{uuid.uuid4().hex[:6]}"
    r = redis.Redis.from_url(settings.redis_url.get_secret_value())  # type: ignore[union-attr]
    r.zadd(WATCHED_KEY, {f"device:{device}": time.time() + 60})
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("socketio")
    running = await asyncio.to_thread(Running, settings, kafka_bus)
    try:
        await asyncio.sleep(1.0)  # assigned and rebuilt
        n = produce_spread(
            kafka_bus,
            settings.topic("sensors-data"),
            [device, unwatched],
            start=datetime.now(UTC) - timedelta(seconds=5),
            seconds=4,
            per_device=20,
            base=50,
        )
        await asyncio.to_thread(running.wait_processed, n)
        events: dict[str, list[dict]] = {}  # type: ignore[type-arg]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (
            "sensor-data" in events and "system-status" in events
        ):
            msg = pubsub.get_message(timeout=0.5)
            if msg and msg["type"] == "message":
                data = orjson.loads(msg["data"])
                if data.get("method") == "emit":
                    events.setdefault(data["event"], []).append(data)
    finally:
        await asyncio.to_thread(running.close)
        pubsub.close()
    mine = [e for e in events.get("sensor-data", []) if e["data"][0]["deviceId"] == device]
    assert mine, events.keys()
    assert mine[0]["room"] == f"device:{device}"
    assert not [e for e in events["sensor-data"] if e["data"][0]["deviceId"] == unwatched]
    payload = mine[-1]["data"][0]
    assert set(payload) == {"eventId", "deviceId", "timestamp", "data", "stats"}
    assert set(payload["data"]) == {"value", "unit", "status"}
    assert payload["data"]["unit"] == "celsius"
    # Throttled: far fewer events than readings for a burst.
    assert len(mine) < n
    assert events["system-status"][0]["room"] == "system"


def test_batched_live_events_are_exactly_what_socketio_publishes(infra: dict[str, str]) -> None:
    """The batch publisher writes the python-socketio Redis-manager message, byte for byte
    but for the host id and the event id it adds, so any Socket.IO server on that Redis
    delivers it; the same message is in the room's replay buffer under that id."""
    import socketio

    from iotmon.realtime.publish import LivePublisher, replay_key

    url = infra["IOTMON_REDIS_URL"]
    r = redis.Redis.from_url(url)
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe("socketio")
    payload = {"deviceId": "device-001", "data": {"value": 1.5, "unit": "celsius"}}
    socketio.RedisManager(url, write_only=True).emit(
        "sensor-data", payload, room="device:device-001"
    )
    ids = LivePublisher(r).emit_many([("sensor-data", payload, "device:device-001")])
    got = []
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg:
            got.append(orjson.loads(msg["data"]))
    pubsub.close()
    assert len(got) == 2
    theirs, ours = got
    assert theirs.pop("host_id") != ours.pop("host_id")
    assert ours["data"][0].pop("eventId") == str(ids[0])
    assert ours == theirs
    [(entry_id, fields)] = r.xrange(replay_key("device:device-001"), f"{ids[0]}-0", f"{ids[0]}-0")
    assert entry_id == f"{ids[0]}-0".encode()
    assert orjson.loads(fields[b"m"])["data"][0]["eventId"] == str(ids[0])


def test_configurations_reload_when_anyone_changes_them(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    """Processing reloads device configurations only when a digest of them (computed in
    PostgreSQL) changed, and sees an edit whoever made it: here psql-style, updated_at as it
    was."""
    assert settings.database_url is not None
    assert settings.redis_url is not None
    url = settings.database_url.get_secret_value()
    role = ProcessingRole(
        Services(
            settings=settings,
            bus=kafka_bus,
            database_url=url,
            redis_url=settings.redis_url.get_secret_value(),
        )
    )
    role._reload_configs()
    loaded = role.processor.configs
    assert loaded["device-001"].alert_max is not None
    role._reload_configs()
    assert role.processor.configs is loaded  # unchanged: nothing rebuilt
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE devices SET alert_max = 1234.5 WHERE device_id = 'device-001'")
    role._reload_configs()
    assert role.processor.configs is not loaded
    assert role.processor.configs["device-001"].alert_max == 1234.5
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE devices SET alert_max = NULL WHERE device_id = 'device-001'")
    role._reload_configs()
    assert role.processor.configs["device-001"].alert_max is None
    role.redis.close()


def test_a_rebuild_cut_off_halfway_starts_again_and_counts_everything_once(
    settings: Settings, kafka_bus: KafkaBus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL drops processing's connection while the rebuild streams its cursors (after
    the second device): the rebuild starts again from a clean slate and ends with the windows
    an undisturbed rebuild builds, no device counted twice or left half-built."""
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    devices = [f"cut-{k}" for k in range(6)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO sensor_readings (device_id, "timestamp", sensor_type, value, unit)
            SELECT d, now() - interval '300 seconds' - i * interval '11 seconds',
                   'temperature', 20 + (i %% 37) * 0.5 + length(d), 'celsius'
            FROM unnest(%s::text[]) AS d, generate_series(0, 599) AS i
            """,
            (devices,),
        )
    role = ProcessingRole(
        Services(
            settings=settings,
            bus=kafka_bus,
            database_url=url,
            redis_url=settings.redis_url.get_secret_value(),  # type: ignore[union-attr]
        )
    )
    role._rebuild([0, 1, 2])
    undisturbed = {d: role.processor.devices[d] for d in devices}

    real, cut = rebuild_mod._by_device, []

    def cutting(conn: psycopg.Connection, query: str, params: dict, name: str):  # type: ignore[no-untyped-def,type-arg]
        for i, item in enumerate(real(conn, query, params, name)):
            yield item
            if i == 1 and not cut:
                with psycopg.connect(url, autocommit=True) as admin:
                    admin.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
                cut.append(name)

    monkeypatch.setattr(rebuild_mod, "_by_device", cutting)
    role._rebuild([0, 1, 2])
    assert cut, "the connection was never cut"
    now = time.time()
    for d in devices:
        got, want = role.processor.devices[d], undisturbed[d]
        assert got is not want  # built again
        for window in ("w1h", "w24h"):
            a = getattr(got, window).stats(now, 1.0).as_dict()
            b = getattr(want, window).stats(now, 1.0).as_dict()
            assert a == b, (d, window)
        assert got.w24h.stats(now, 1.0).count == 600


def test_a_member_rebuilds_the_devices_of_its_own_partitions(settings: Settings) -> None:
    """Readings stored through partitions 0 and 1 (device_partitions, as ingestion maps them),
    and one device stored before the mapping existed: a member that owns partition 0 rebuilds
    its device only; one that owns every partition ingestion stored from rebuilds all three."""
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO sensor_readings (device_id, "timestamp", sensor_type, value, unit)
            SELECT d, now() - i * interval '7 seconds', 'temperature', 21.5, 'celsius'
            FROM unnest(ARRAY['on-0', 'on-1', 'legacy']) AS d, generate_series(1, 50) AS i
            """
        )
        conn.execute(
            'INSERT INTO device_partitions (bus_id, topic, device_id, "partition")'
            " VALUES ('bus', 'topic', 'on-0', 0), ('bus', 'topic', 'on-1', 1),"
            " ('other-bus', 'topic', 'legacy', 0)"
        )
        conn.execute(
            'INSERT INTO ingest_offsets (bus_id, group_id, topic, "partition", next_offset)'
            " VALUES ('bus', 'g', 'topic', 0, 60), ('bus', 'g', 'topic', 1, 40)"
        )

    def rebuilt(partitions: list[int] | None) -> dict[str, int]:
        proc = Processor({})
        with psycopg.connect(url) as conn:
            offsets = rebuild_mod.rebuild(
                conn,
                proc,
                now=time.time(),
                bus_id="bus",
                ingestion_group="g",
                topic="topic",
                partitions=partitions,
            )
        assert offsets == {0: 60, 1: 40}
        now = time.time()
        return {d: st.w24h.count(now) for d, st in proc.devices.items()}

    assert rebuilt([0]) == {"on-0": 50}
    assert rebuilt([1, 2]) == {"on-1": 50}
    assert rebuilt([2]) == {}
    everything = {"on-0": 50, "on-1": 50, "legacy": 50}
    assert rebuilt([0, 1]) == everything
    assert rebuilt([0, 1, 2]) == everything
    assert rebuilt(None) == everything


async def test_two_members_share_the_fleet_and_the_key_figures(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    """Two processing members in one group (as the Helm chart runs them): each holds the
    devices of its own partitions only (rebuilt and live), every device's statistics equal a
    recomputation from PostgreSQL, and the key figures count the whole fleet, not a share."""
    settings, devices, topic, url, r = scene(settings, "pair", 12)
    now = datetime.now(UTC)
    history = produce_spread(
        kafka_bus,
        topic,
        devices,
        start=now - timedelta(minutes=30),
        seconds=25 * 60,
        per_device=100,
        base=40,
    )
    await asyncio.to_thread(drain, settings, kafka_bus, kafka_bus.end_offsets(topic))
    a = await asyncio.to_thread(Running, settings, kafka_bus)
    b = await asyncio.to_thread(Running, settings, kafka_bus)
    try:
        deadline = time.monotonic() + 60
        while sorted(a.role.partitions + b.role.partitions) != [0, 1, 2] or not (
            a.role.partitions and b.role.partitions
        ):
            assert time.monotonic() < deadline, (a.role.partitions, b.role.partitions)
            await asyncio.sleep(0.2)

        async def feed(members: list[Running], seconds: int, per_device: int) -> int:
            """Readings of the last ``seconds``, stored, then counted by ``members``; a flush
            of each after (the key figures included)."""
            before = sum(m.role.processed for m in members)
            n = produce_spread(
                kafka_bus,
                topic,
                devices,
                start=datetime.now(UTC) - timedelta(seconds=seconds),
                seconds=seconds - 5,
                per_device=per_device,
                base=45,
            )
            await asyncio.to_thread(drain, settings, kafka_bus, kafka_bus.end_offsets(topic))
            deadline = time.monotonic() + 60
            while sum(m.role.processed for m in members) - before < n:
                assert time.monotonic() < deadline, [m.role.processed for m in members]
                await asyncio.sleep(0.2)
            await asyncio.sleep(2.5)
            return n

        live = await feed([a, b], 60, 50)
        mapped = dict(query(url, 'SELECT device_id, "partition" FROM device_partitions'))
        held_a, held_b = set(a.role.processor.devices), set(b.role.processor.devices)
        assert not held_a & held_b
        assert held_a | held_b == set(devices)
        assert {mapped[d] for d in held_a} <= set(a.role.partitions)
        assert {mapped[d] for d in held_b} <= set(b.role.partitions)
        check_against_database(r, url, devices)
        figures = orjson.loads(r.get("system:metrics"))  # type: ignore[arg-type]
        assert figures["dataPointsLastHour"] == history + live
        assert figures["activeDevices"] == len(devices)

        # One member leaves: the other takes every partition, rebuilds the whole fleet at
        # ingestion's offsets and goes on; nothing is counted twice or lost in the handover.
        await asyncio.to_thread(b.close)
        deadline = time.monotonic() + 60
        while a.role.partitions != [0, 1, 2] or set(a.role.processor.devices) != set(devices):
            assert time.monotonic() < deadline, a.role.partitions
            await asyncio.sleep(0.2)
        more = await feed([a], 20, 20)
        check_against_database(r, url, devices)
        figures = orjson.loads(r.get("system:metrics"))  # type: ignore[arg-type]
        assert figures["dataPointsLastHour"] == history + live + more
    finally:
        await asyncio.to_thread(a.close)
        await asyncio.to_thread(b.close)
        r.delete(
            *[f"device:{d}:{k}" for d in devices for k in ("current", "stats:1h", "stats:24h")]
        )
    left = set(r.hkeys("system:metrics:members"))  # type: ignore[arg-type]
    assert not left & {a.role.member.encode(), b.role.member.encode()}  # both said goodbye

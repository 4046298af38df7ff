"""State alerts (``state_duration``, a profile channel's ``stateAlert``) on the real engine,
PostgreSQL and Redis, with the real SMTP and webhook receivers of test_alerts. Readings are
written where ingestion writes them (``sensor_readings``) and announced where processing does
(``devices:last_seen``); time is the engine's injectable clock: no test waits for it."""

# ruff: noqa: F811 (fixtures imported from other test modules, then used as parameters)

from __future__ import annotations

import asyncio
import copy
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import psycopg
import pytest
import redis.asyncio as aioredis
from psycopg.types.json import Jsonb

from iotmon.alerts import lifecycle
from iotmon.alerts.engine import ACTIVE_KEY, LAST_SEEN_KEY, AlertEngine
from iotmon.alerts.models import Alert
from iotmon.alerts.notify import Notifier, NotifyConfig
from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.profiles.models import ProfileBody
from iotmon.roles.alerts import AlertsRole
from iotmon.roles.runtime import Services
from tests.integration.helpers import drain, read_topic
from tests.integration.test_alerts import (  # noqa: F401 (the fixtures)
    Mailbox,
    Webhooks,
    engine_parts,
    mailbox,
    make_engine,
    webhooks,
)
from tests.integration.test_api import Api, api, sql  # noqa: F401 (the fixture)
from tests.integration.test_processing import Running

F2 = "f2-smart-controller"
DOOR_PROFILE: list[dict[str, Any]] = [
    {
        "name": "door",
        "topic": "devices/{device}/door",
        "path": "open",
        "encoding": "json_boolean",
        "sensorType": "door",
        "unit": "open",
        "stateAlert": {"state": 1, "forSeconds": 5, "severity": "critical"},
    }
]


async def give_profile(conn: psycopg.AsyncConnection[Any], device: str, profile: str) -> None:
    await conn.execute(
        "INSERT INTO devices (device_id, device_type, profile) VALUES (%s, %s, %s)"
        " ON CONFLICT (device_id) DO UPDATE SET profile = EXCLUDED.profile",
        (device, profile, profile),
    )


async def reading(
    conn: psycopg.AsyncConnection[Any], r: aioredis.Redis, device: str, t: float, value: float
) -> None:
    """A reading as ingestion stores it and processing announces it."""
    await conn.execute(
        'INSERT INTO sensor_readings (device_id, "timestamp", sensor_type, value, unit)'
        " VALUES (%s, %s, 'door', %s, 'open')",
        (device, datetime.fromtimestamp(t, UTC), value),
    )
    await r.zadd(LAST_SEEN_KEY, {device: t}, gt=True)


async def opened(engine: AlertEngine, device: str) -> list[Alert]:
    return [
        a
        for a in await lifecycle.open_alerts(engine.conn)
        if a.device_id == device and a.alert_type == "state_duration"
    ]


async def all_alerts(conn: psycopg.AsyncConnection[Any], device: str) -> list[tuple[Any, ...]]:
    cur = await conn.execute(
        "SELECT id, status, metadata->>'stateSince' FROM alerts"
        " WHERE device_id = %s AND alert_type = 'state_duration' ORDER BY id",
        (device,),
    )
    return list(await cur.fetchall())


async def test_the_seeded_f2_profile_has_door_and_siren_defaults(
    engine_parts: dict[str, Any],
) -> None:
    conn = engine_parts["conn"]
    cur = await conn.execute("SELECT channels FROM device_profiles WHERE name = %s", (F2,))
    row = await cur.fetchone()
    assert row is not None
    body = ProfileBody.model_validate({"channels": row[0]})  # what the API accepts
    alerts = {c.name: c.stateAlert for c in body.channels if c.stateAlert is not None}
    assert set(alerts) == {"door-sensor-1", "door-sensor-2", "siren"}
    door, siren = alerts["door-sensor-1"], alerts["siren"]
    assert door is not None
    assert (door.state, door.forSeconds, door.message) == (1, 30, "door open")
    assert siren is not None
    assert (siren.state, siren.severity, siren.message) == (1, "high", "siren on")


async def test_a_door_open_then_silent_alerts_and_goes_through_the_lifecycle(
    engine_parts: dict[str, Any], webhooks: Webhooks, mailbox: tuple[Mailbox, int]
) -> None:
    conn, r, clock = engine_parts["conn"], engine_parts["redis"], engine_parts["clock"]
    await give_profile(conn, "f2-t1", F2)
    engine = make_engine(engine_parts)
    await engine.start()
    t0 = clock.t
    await reading(conn, r, "f2-t1:door-sensor-1", t0, 1.0)  # opened, and nothing after it
    await reading(conn, r, "f2-t1:door-sensor-2", t0, 0.0)  # closed: never alerts
    await reading(conn, r, "f2-t1:siren", t0, 0.0)
    clock.t = t0 + 29
    await engine.check_states()
    assert await lifecycle.open_alerts(conn) == []

    clock.t = t0 + 31  # time alone: no reading came
    await engine.check_states()
    [alert] = await lifecycle.open_alerts(conn)
    assert alert.device_id == "f2-t1:door-sensor-1"
    assert alert.alert_type == "state_duration"
    assert alert.severity == "medium"
    assert alert.message == "f2-t1:door-sensor-1: door open for more than 30 s"
    assert alert.triggered_at == datetime.fromtimestamp(t0 + 30, UTC)
    assert alert.value == 1
    assert alert.status == "triggered"
    assert await r.hexists(ACTIVE_KEY, str(alert.id))
    sent = [(e, p["type"]) for e, p, room in engine_parts["events"] if room == "alerts"]
    assert sent == [("alert-triggered", "state_duration")]

    for later in (40, 50, 200):  # still open: nothing repeats
        clock.t = t0 + later
        await engine.check_states()
    assert (await lifecycle.get(conn, alert.id)).count == 1

    clock.t = t0 + 30 + 301  # unacknowledged for 5 minutes
    [escalated] = await engine.escalate_due()
    assert escalated.id == alert.id
    acked = await engine.acknowledge(alert.id, "operator", "on my way")
    assert acked.status == "acknowledged"

    await reading(conn, r, "f2-t1:door-sensor-1", t0 + 400, 0.0)  # closed
    clock.t = t0 + 401
    await engine.check_states()
    done = await lifecycle.get(conn, alert.id)
    assert done.status == "resolved"
    assert done.resolved_by == "system"
    assert not await r.hexists(ACTIVE_KEY, str(alert.id))
    history = await lifecycle.transitions(conn, alert.id)
    assert [(h["from"], h["to"]) for h in history] == [
        (None, "triggered"),
        ("triggered", "escalated"),
        ("escalated", "acknowledged"),
        ("acknowledged", "resolved"),
    ]
    assert history[-1]["note"] == "state is now 0"
    # Notified on trigger, escalation and resolution, by webhook and by mail (the engine
    # waits for each to be accepted).
    assert len(mailbox[0].messages) == 3
    assert webhooks.events() == ["alert-triggered", "alert-escalated", "alert-resolved"]
    assert webhooks.received[0]["alert"]["type"] == "state_duration"
    assert "door open" in mailbox[0].messages[0]


async def test_the_siren_alerts_with_its_own_severity(engine_parts: dict[str, Any]) -> None:
    conn, r, clock = engine_parts["conn"], engine_parts["redis"], engine_parts["clock"]
    await give_profile(conn, "f2-t2", F2)
    engine = make_engine(engine_parts)
    await engine.start()
    t0 = clock.t
    await reading(conn, r, "f2-t2:siren", t0, 1.0)
    clock.t = t0 + 11
    await engine.check_states()
    [alert] = await opened(engine, "f2-t2:siren")
    assert alert.severity == "high"
    assert alert.message == "f2-t2:siren: siren on for more than 10 s"


async def test_a_restart_reads_the_state_from_the_readings(engine_parts: dict[str, Any]) -> None:
    """The run of a state is read from sensor_readings, not kept in memory: an engine started
    after the door opened (with Redis emptied meanwhile) still alerts on time, and an engine
    started while the alert is open neither loses it nor raises it again."""
    conn, r, clock = engine_parts["conn"], engine_parts["redis"], engine_parts["clock"]
    device = "f2-t3:door-sensor-2"
    await give_profile(conn, "f2-t3", F2)
    t0 = clock.t
    await reading(conn, r, device, t0 - 100, 0.0)
    await reading(conn, r, device, t0, 1.0)
    first = make_engine(engine_parts)
    await first.start()
    clock.t = t0 + 5
    await first.check_states()
    assert await opened(first, device) == []

    await r.flushdb()  # Redis lost its data too
    second = make_engine(engine_parts)  # the role restarted
    await second.start()
    clock.t = t0 + 31
    await second.check_states()
    [alert] = await opened(second, device)
    assert alert.triggered_at == datetime.fromtimestamp(t0 + 30, UTC)  # the run began at t0

    third = make_engine(engine_parts)  # restarted again, the alert open
    await third.start()
    for later in (40, 60):
        clock.t = t0 + later
        await third.check_states()
    assert [a[0] for a in await all_alerts(conn, device)] == [alert.id]
    assert (await lifecycle.get(conn, alert.id)).count == 1
    await reading(conn, r, device, t0 + 70, 0.0)
    clock.t = t0 + 71
    await third.check_states()
    assert (await lifecycle.get(conn, alert.id)).status == "resolved"


async def test_after_a_restart_a_run_older_than_the_look_back_keeps_its_alert(
    engine_parts: dict[str, Any],
) -> None:
    """A door open for days, reporting its state now and then: after a restart the run's start
    is older than the 2-day look-back, so it is not known, and the alert raised for it stays
    open (not taken for a new run). A close and reopen while the role was down is a new run:
    the old alert resolves and a new one is raised."""
    conn, r, clock = engine_parts["conn"], engine_parts["redis"], engine_parts["clock"]
    device = "f2-t6:door-sensor-1"
    await give_profile(conn, "f2-t6", F2)
    t0 = clock.t
    day = 86400.0
    await reading(conn, r, device, t0 - 2.5 * day, 1.0)
    before = make_engine(engine_parts)
    await before.start()
    clock.t = t0 - 2.5 * day + 31
    await before.check_states()
    [alert] = await opened(before, device)
    for ago in (day, 3600):  # the state reported again, unchanged
        await reading(conn, r, device, t0 - ago, 1.0)

    clock.t = t0
    restarted = make_engine(engine_parts)
    await restarted.start()
    await restarted.check_states()
    assert restarted.streaks[device] is not None
    assert not restarted.streaks[device].known  # type: ignore[union-attr]
    assert [a.id for a in await opened(restarted, device)] == [alert.id]

    await reading(conn, r, device, t0 + 10, 0.0)  # while the role is down again
    await reading(conn, r, device, t0 + 20, 1.0)
    clock.t = t0 + 60
    again = make_engine(engine_parts)
    await again.start()
    await again.check_states()
    assert (await lifecycle.get(conn, alert.id)).status == "resolved"
    [new] = await opened(again, device)
    assert new.triggered_at == datetime.fromtimestamp(t0 + 50, UTC)


async def test_a_database_outage_in_the_middle_of_a_check_loses_nothing(
    engine_parts: dict[str, Any], database_url: str
) -> None:
    """The connection breaks just when the alert is to be written, and again when it is to be
    resolved: the role reconnects (here: the test, as AlertsRole._reconnect does) and the next
    check writes what the failed one did not."""
    conn, r, clock = engine_parts["conn"], engine_parts["redis"], engine_parts["clock"]
    device = "f2-t7:door-sensor-1"
    await give_profile(conn, "f2-t7", F2)
    engine = make_engine(engine_parts)
    await engine.start()
    t0 = clock.t
    await reading(conn, r, device, t0, 1.0)
    clock.t = t0 + 25
    await engine.check_states()  # rules and the run read; not yet long enough
    clock.t = t0 + 31  # rules still fresh, nothing new to read: the next query is the write
    broken = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    await broken.close()
    engine.conn = broken
    with pytest.raises(psycopg.OperationalError):
        await engine.check_states()
    engine.conn = conn
    clock.t = t0 + 32
    await engine.check_states()
    [alert] = await opened(engine, device)

    # The resolution refused once (the closing reading is read, the write fails): tried again.
    await conn.execute(
        "CREATE FUNCTION no_resolve() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF NEW.status = 'resolved' THEN RAISE EXCEPTION 'not now'; END IF; RETURN NEW; END $$"
    )
    await conn.execute(
        "CREATE TRIGGER no_resolve BEFORE UPDATE ON alerts"
        " FOR EACH ROW EXECUTE FUNCTION no_resolve()"
    )
    await reading(conn, r, device, t0 + 40, 0.0)
    clock.t = t0 + 41
    with pytest.raises(psycopg.errors.RaiseException):
        await engine.check_states()
    assert (await lifecycle.get(conn, alert.id)).status == "triggered"
    await conn.execute("DROP TRIGGER no_resolve ON alerts")
    clock.t = t0 + 42
    await engine.check_states()
    assert (await lifecycle.get(conn, alert.id)).status == "resolved"


async def test_an_operator_resolution_holds_for_the_run_and_a_new_run_alerts_again(
    engine_parts: dict[str, Any],
) -> None:
    conn, r, clock = engine_parts["conn"], engine_parts["redis"], engine_parts["clock"]
    device = "f2-t4:door-sensor-1"
    await give_profile(conn, "f2-t4", F2)
    engine = make_engine(engine_parts)
    await engine.start()
    t0 = clock.t
    await reading(conn, r, device, t0, 1.0)
    clock.t = t0 + 31
    await engine.check_states()
    [alert] = await opened(engine, device)
    await engine.resolve(alert.id, "operator", "known: door held open for a delivery")
    clock.t = t0 + 40
    await engine.check_states()
    assert await opened(engine, device) == []
    restarted = make_engine(engine_parts)
    await restarted.start()
    clock.t = t0 + 50
    await restarted.check_states()
    assert await opened(restarted, device) == []  # the same run: not raised again

    await reading(conn, r, device, t0 + 60, 0.0)
    await reading(conn, r, device, t0 + 61, 1.0)  # opened again: a new run
    clock.t = t0 + 62
    await restarted.check_states()
    assert await opened(restarted, device) == []
    clock.t = t0 + 92
    await restarted.check_states()
    [again] = await opened(restarted, device)
    assert again.id != alert.id
    assert again.triggered_at == datetime.fromtimestamp(t0 + 91, UTC)


async def test_a_close_and_reopen_between_two_looks_is_a_new_run(
    engine_parts: dict[str, Any],
) -> None:
    conn, r, clock = engine_parts["conn"], engine_parts["redis"], engine_parts["clock"]
    device = "f2-t5:door-sensor-1"
    await give_profile(conn, "f2-t5", F2)
    engine = make_engine(engine_parts)
    await engine.start()
    t0 = clock.t
    await reading(conn, r, device, t0, 1.0)
    clock.t = t0 + 31
    await engine.check_states()
    [alert] = await opened(engine, device)
    await reading(conn, r, device, t0 + 40, 0.0)
    await reading(conn, r, device, t0 + 41, 1.0)
    clock.t = t0 + 42
    await engine.check_states()
    assert (await lifecycle.get(conn, alert.id)).status == "resolved"
    assert await opened(engine, device) == []
    clock.t = t0 + 72
    await engine.check_states()
    [again] = await opened(engine, device)
    assert again.triggered_at == datetime.fromtimestamp(t0 + 71, UTC)
    runs = [since for _, _, since in await all_alerts(conn, device)]
    assert len(set(runs)) == 2


async def test_profile_edits_take_effect_and_silences_apply(
    engine_parts: dict[str, Any], webhooks: Webhooks
) -> None:
    """A single-channel profile (the reading's device id is the device's), with the rule's own
    severity; a silence marks the alert silenced; the rule removed resolves the alert."""
    conn, r, clock = engine_parts["conn"], engine_parts["redis"], engine_parts["clock"]
    await conn.execute(
        "INSERT INTO device_profiles (name, channels) VALUES ('t-door', %s)",
        (Jsonb(DOOR_PROFILE),),
    )
    await give_profile(conn, "door-x", "t-door")
    now = datetime.fromtimestamp(clock.t, UTC)
    await lifecycle.create_silence(
        conn,
        device_id="door-x",
        alert_type="state_duration",
        starts_at=now - timedelta(minutes=1),
        ends_at=now + timedelta(hours=1),
        reason="door under repair",
        created_by="operator",
    )
    engine = make_engine(engine_parts)
    await engine.start()
    t0 = clock.t
    await reading(conn, r, "door-x", t0, 1.0)
    clock.t = t0 + 6
    await engine.check_states()
    [alert] = await opened(engine, "door-x")
    assert alert.severity == "critical"
    assert alert.silenced
    assert alert.message == "door-x: door = 1 (open) for more than 5 s"
    assert webhooks.received == []  # silenced: stored and shown, not notified

    channels = copy.deepcopy(DOOR_PROFILE)
    del channels[0]["stateAlert"]
    await conn.execute(
        "UPDATE device_profiles SET channels = %s WHERE name = 't-door'", (Jsonb(channels),)
    )
    clock.t = t0 + 20  # rules are re-read every 10 s
    await engine.check_states()
    done = await lifecycle.get(conn, alert.id)
    assert done.status == "resolved"
    history = await lifecycle.transitions(conn, alert.id)
    assert history[-1]["note"] == "state rule removed"


async def test_the_api_validates_state_alerts_and_lists_state_alerts(api: Api) -> None:
    body = {"name": "t-door", "description": "", "channels": copy.deepcopy(DOOR_PROFILE)}
    body["channels"][0]["stateAlert"]["severity"] = "warning"
    r = await api.http.post("/api/profiles", json=body, headers=api.h("admin"))
    assert r.status_code == 422, r.text
    assert "stateAlert" in str(r.json()["error"])
    body["channels"][0]["stateAlert"] = {"state": 2, "forSeconds": 5}
    r = await api.http.post("/api/profiles", json=body, headers=api.h("admin"))
    assert r.status_code == 422, r.text
    assert "values are 0 and 1" in str(r.json()["error"])
    body["channels"][0]["stateAlert"] = {"state": 1, "forSeconds": 5, "message": "door open"}
    r = await api.http.post("/api/profiles", json=body, headers=api.h("admin"))
    assert r.status_code == 201, r.text
    assert r.json()["data"]["channels"][0]["stateAlert"] == {
        "state": 1,
        "forSeconds": 5,
        "severity": "medium",
        "message": "door open",
    }
    r = await api.put("/api/devices/door-api/profile", json={"profile": "t-door"})
    assert r.status_code == 200, r.text

    # The alerts role's engine raises it; the web role lists it and acknowledges it.
    async with await psycopg.AsyncConnection.connect(api.db, autocommit=True) as conn:
        engine = AlertEngine(conn=conn, redis=api.redis, notifier=Notifier(NotifyConfig()))
        await engine.start()
        t = datetime.now(UTC).timestamp() - 60
        await reading(conn, api.redis, "door-api", t, 1.0)
        await engine.check_states()
        await engine.notifier.close()
    r = await api.get("/api/alerts", params={"type": "state_duration"})
    assert r.status_code == 200, r.text
    [listed] = r.json()["data"]["alerts"]
    assert listed["type"] == "state_duration"
    assert listed["deviceId"] == "door-api"
    r = await api.put(f"/api/alerts/{listed['id']}/acknowledge", role="operator", json={})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["status"] == "acknowledged"
    assert "state_duration" in str((await api.get("/api/openapi.json")).json())


async def test_a_device_may_have_its_own_state_alert(api: Api) -> None:
    """PUT /api/devices/{id}/config {"stateAlert": ...}: an object replaces the profile
    channel's (validated like one, 422 otherwise), false switches it off for the device, null
    gives it back; the engine follows within its 10 s re-read."""
    device = "f2-t8:door-sensor-1"
    r = await api.put("/api/devices/f2-t8/profile", json={"profile": F2})
    assert r.status_code == 200, r.text
    sql(
        api.db,
        "INSERT INTO devices (device_id, device_type, unit) VALUES (%s, 'door', 'open')",
        device,
    )
    path = f"/api/devices/{device}/config"
    for bad, expected in (
        ({"state": 1, "forSeconds": -1}, "forSeconds"),
        ({"state": 1, "forSeconds": 5, "severity": "warning"}, "severity"),
        (True, "stateAlert"),
        ({"state": 1}, "forSeconds"),
    ):
        r = await api.put(path, json={"stateAlert": bad})
        assert r.status_code == 422, (bad, r.text)
        assert expected in str(r.json()["error"]), (bad, r.text)
    own = {"state": 1, "forSeconds": 120, "severity": "critical", "message": "fire door open"}
    r = await api.put(path, json={"stateAlert": own})
    assert r.status_code == 200, r.text
    assert r.json()["data"]["stateAlert"] == own
    assert (await api.get(f"/api/devices/{device}")).json()["data"]["stateAlert"] == own

    clock = [datetime.now(UTC).timestamp()]
    async with await psycopg.AsyncConnection.connect(api.db, autocommit=True) as conn:
        engine = AlertEngine(
            conn=conn, redis=api.redis, notifier=Notifier(NotifyConfig()), clock=lambda: clock[0]
        )
        await engine.start()
        t0 = clock[0]
        await reading(conn, api.redis, device, t0, 1.0)
        clock[0] = t0 + 31  # past the profile's 30 s, not the device's own 120 s
        await engine.check_states()
        assert await opened(engine, device) == []
        clock[0] = t0 + 121
        await engine.check_states()
        [alert] = await opened(engine, device)
        assert (alert.severity, alert.message) == (
            "critical",
            f"{device}: fire door open for more than 120 s",
        )

        r = await api.put(path, json={"stateAlert": False})  # none for this device
        assert r.status_code == 200, r.text
        assert r.json()["data"]["stateAlert"] is False
        clock[0] = t0 + 140
        await engine.check_states()
        assert (await lifecycle.get(conn, alert.id)).status == "resolved"
        assert engine.state_rules.get(device) is None

        r = await api.put(path, json={"stateAlert": None})  # the profile's again
        assert r.status_code == 200, r.text
        clock[0] = t0 + 160
        await engine.check_states()
        assert engine.state_rules[device].for_s == 30
        await engine.notifier.close()


async def test_the_alerts_role_raises_and_resolves_state_alerts_on_its_own(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    """The role's own poller, no test calling the engine: a door opened once and then silent
    alerts once its second has passed; a state_duration candidate on the bus is refused (only
    the engine decides those); a closing reading resolves the alert."""
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    redis_url = settings.redis_url.get_secret_value()  # type: ignore[union-attr]
    channels = copy.deepcopy(DOOR_PROFILE)
    channels[0]["stateAlert"] = {"state": 1, "forSeconds": 1, "message": "door open"}
    device = f"door-{uuid.uuid4().hex[:8]}"
    r = aioredis.Redis.from_url(redis_url)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO device_profiles (name, channels) VALUES ('t-door', %s)", (Jsonb(channels),)
        )
        await give_profile(conn, device, "t-door")
        role = AlertsRole(
            Services(settings=settings, bus=kafka_bus, database_url=url, redis_url=redis_url)
        )
        stop = asyncio.Event()
        task = asyncio.create_task(role.run(stop))
        forged = orjson.dumps({"deviceId": device, "type": "state_duration", "value": 1})
        producer = kafka_bus.producer()
        producer.produce(settings.topic("alerts"), forged, key=device.encode())
        assert producer.flush(10) == 0

        async def wait_for(status: str) -> None:
            async with asyncio.timeout(60):
                while not [s for _, s, _ in await all_alerts(conn, device) if s == status]:
                    assert not task.done(), f"the alerts role stopped: {task}"
                    await asyncio.sleep(0.2)

        try:
            await reading(conn, r, device, time.time(), 1.0)  # opened, then nothing
            await wait_for("triggered")
            [(alert_id, _, since)] = await all_alerts(conn, device)
            assert since is not None
            (dead,) = await asyncio.to_thread(
                read_topic, kafka_bus, settings.topic("alerts.dlq"), 1
            )
            assert dead.value() == forged
            assert dict(dead.headers())["x-iotmon-reason"] == b"invalid_candidate"
            await reading(conn, r, device, time.time(), 0.0)
            await wait_for("resolved")
            assert [a[0] for a in await all_alerts(conn, device)] == [alert_id]
            assert role.status()["stateRules"] == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await r.aclose()


async def test_from_sensors_data_to_a_state_alert_and_back(
    settings: Settings, kafka_bus: KafkaBus
) -> None:
    """The whole chain on real Kafka: a door's readings on sensors-data, stored by ingestion,
    announced by processing (devices:last_seen, whichever of the two is first), alerted and
    resolved by the alerts role."""
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    redis_url = settings.redis_url.get_secret_value()  # type: ignore[union-attr]
    gate = copy.deepcopy(DOOR_PROFILE[0])
    gate.update(name="gate", stateAlert={"state": 1, "forSeconds": 1, "message": "gate open"})
    light = copy.deepcopy(DOOR_PROFILE[0])
    light.update(name="light", path="light")
    del light["stateAlert"]
    device = f"gate-{uuid.uuid4().hex[:8]}"
    reading_id = f"{device}:gate"  # two channels: <device>:<channel>
    topic = settings.topic("sensors-data")
    producer = kafka_bus.producer()

    async def send(value: float) -> None:
        msg = {
            "deviceId": reading_id,
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "sensorType": "door",
            "value": value,
            "unit": "open",
            "location": "yard",
            "status": "active",
        }
        producer.produce(topic, orjson.dumps(msg), key=reading_id.encode())
        assert producer.flush(10) == 0
        await asyncio.to_thread(drain, settings, kafka_bus, kafka_bus.end_offsets(topic))

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO device_profiles (name, channels) VALUES ('t-gate', %s)",
            (Jsonb([gate, light]),),
        )
        await give_profile(conn, device, "t-gate")
        processing = Running(settings, kafka_bus)
        role = AlertsRole(
            Services(settings=settings, bus=kafka_bus, database_url=url, redis_url=redis_url)
        )
        stop = asyncio.Event()
        task = asyncio.create_task(role.run(stop))

        async def wait_for(status: str) -> None:
            async with asyncio.timeout(90):
                while not [s for _, s, _ in await all_alerts(conn, reading_id) if s == status]:
                    assert not task.done(), f"the alerts role stopped: {task}"
                    await asyncio.sleep(0.2)

        try:
            await send(1.0)
            await wait_for("triggered")
            [(_, _, since)] = await all_alerts(conn, reading_id)
            assert since is not None
            await send(0.0)
            await wait_for("resolved")
            assert len(await all_alerts(conn, reading_id)) == 1
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)
            await asyncio.to_thread(processing.close)

"""The alert engine on real PostgreSQL and Redis, with a real SMTP server and a real HTTP
receiver for webhooks. Time is an injectable clock where waiting would be slow."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis
from aiosmtpd.controller import Controller

from iotmon.alerts import lifecycle
from iotmon.alerts.engine import ACTIVE_KEY, LAST_SEEN_KEY, AlertEngine
from iotmon.alerts.models import SEVERITIES, AlertError
from iotmon.alerts.notify import Notifier, NotifyConfig
from iotmon.alerts.rules import RuleConfig
from tests.integration.helpers import free_port


class Clock:
    def __init__(self) -> None:
        self.t = time.time()

    def __call__(self) -> float:
        return self.t


class Webhooks:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [r["event"] for r in self.received]


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode())
        return "250 OK"

    def subjects(self) -> list[str]:
        return [
            next(line for line in m.splitlines() if line.startswith("Subject:"))
            for m in self.messages
        ]


@pytest.fixture
def webhooks() -> Iterator[Webhooks]:
    hooks = Webhooks()
    yield hooks
    hooks.server.shutdown()


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    yield box, port
    controller.stop()


@pytest.fixture
async def engine_parts(
    database_url: str, infra: dict[str, str], webhooks: Webhooks, mailbox: tuple[Mailbox, int]
) -> AsyncIterator[dict[str, Any]]:
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    r = aioredis.Redis.from_url(infra["IOTMON_REDIS_URL"].rsplit("/", 1)[0] + "/7")
    await r.flushdb()
    events: list[tuple[str, dict[str, Any], str]] = []
    clock = Clock()
    notifier = Notifier(
        NotifyConfig(
            webhook_urls=(webhooks.url,),
            smtp_host="127.0.0.1",
            smtp_port=mailbox[1],
            smtp_to=("ops@example.com",),
            rate_limit_s=0,
        )
    )
    yield {"conn": conn, "redis": r, "events": events, "clock": clock, "notifier": notifier}
    await notifier.close()
    await r.flushdb()
    await r.aclose()
    await conn.close()


def make_engine(parts: dict[str, Any], **rule: Any) -> AlertEngine:
    return AlertEngine(
        conn=parts["conn"],
        redis=parts["redis"],
        notifier=parts["notifier"],
        config=RuleConfig(**rule),
        emit=_collector(parts["events"]),
        clock=parts["clock"],
    )


def _collector(events: list[Any]) -> Any:
    async def emit(event: str, payload: dict[str, Any], room: str) -> None:
        events.append((event, payload, room))

    return emit


def candidate(
    device: str = "device-001",
    kind: str = "threshold_exceeded",
    value: float = 90.0,
    threshold: float | None = 85.0,
    state: str = "active",
) -> dict[str, Any]:
    return {
        "deviceId": device,
        "type": kind,
        "value": value,
        "threshold": threshold,
        "state": state,
        "unit": "celsius",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }


async def test_a_burst_of_breaches_is_one_alert_counted_and_auto_resolved(
    engine_parts: dict[str, Any], webhooks: Webhooks, mailbox: tuple[Mailbox, int]
) -> None:
    engine = make_engine(engine_parts)
    await engine.start()
    for i in range(1000):
        await engine.handle(candidate(value=86 + i % 10))
    alerts = await lifecycle.open_alerts(engine_parts["conn"])
    assert len(alerts) == 1
    alert = alerts[0]
    assert alert.count == 1000
    assert alert.status == "triggered"
    assert alert.last_value == 86 + 999 % 10
    assert alert.severity == "high"  # 95 is 10/60 of the normal span past 85
    # Triggered at 86 (medium); an event each time the severity rose, none per repeat.
    sent = [(e, p["severity"]) for e, p, room in engine_parts["events"] if room == "alerts"]
    assert sent[0] == ("alert-triggered", "medium")
    assert [e for e, _ in sent[1:]] == ["alert-updated"] * (len(sent) - 1)
    assert [sev for _, sev in sent] == sorted({sev for _, sev in sent}, key=SEVERITIES.index)
    assert sent[-1] == ("alert-updated", "high")
    assert await engine_parts["redis"].hexists(ACTIVE_KEY, str(alert.id))

    # Back inside the normal range (processing sends "clear" only then: hysteresis).
    resolved = await engine.handle(candidate(value=70, state="clear"))
    assert resolved is not None
    assert resolved.status == "resolved"
    assert resolved.resolved_by == "system"
    assert not await engine_parts["redis"].hexists(ACTIVE_KEY, str(alert.id))
    history = await lifecycle.transitions(engine_parts["conn"], alert.id)
    assert [(h["from"], h["to"]) for h in history] == [
        (None, "triggered"),
        ("triggered", "resolved"),
    ]
    # An email and a webhook for the trigger and for the resolution, nothing per repeat.
    await asyncio.sleep(0.2)
    assert webhooks.events() == ["alert-triggered", "alert-resolved"]
    assert webhooks.received[0]["alert"]["deviceId"] == "device-001"
    subjects = mailbox[0].subjects()
    assert len(subjects) == 2
    assert "TRIGGERED" in subjects[0]
    assert "RESOLVED" in subjects[1]


async def test_a_rise_to_critical_is_notified_a_rise_below_it_is_not(
    engine_parts: dict[str, Any], webhooks: Webhooks, mailbox: tuple[Mailbox, int]
) -> None:
    """Even within the notification rate limit (an hour here): once per alert at most."""
    engine_parts["notifier"].config = dataclasses.replace(
        engine_parts["notifier"].config, rate_limit_s=3600
    )
    engine = make_engine(engine_parts)
    await engine.start()
    for value in (86, 95, 95, 100, 101):  # medium, high, (repeat), critical, (repeat)
        await engine.handle(candidate(value=value))
    sent = [(e, p["severity"]) for e, p, room in engine_parts["events"] if room == "alerts"]
    assert sent == [
        ("alert-triggered", "medium"),
        ("alert-updated", "high"),
        ("alert-updated", "critical"),
    ]
    await asyncio.sleep(0.2)
    assert webhooks.events() == ["alert-triggered", "alert-updated"]
    assert webhooks.received[1]["alert"]["severity"] == "critical"
    subjects = mailbox[0].subjects()
    assert "TRIGGERED: medium" in subjects[0]
    assert "SEVERITY RAISED: critical" in subjects[1]


async def test_a_batch_counts_its_repeats_in_one_update_and_keeps_order(
    engine_parts: dict[str, Any],
) -> None:
    """What the role hands the engine: one consumed batch. Repeats are counted into one
    update, the worst severity wins, a clear splits the run, malformed candidates are
    skipped without losing the rest."""
    engine = make_engine(engine_parts)
    await engine.start()
    first = candidate(value=86)
    batch: list[Any] = [first, *(candidate(value=86 + i % 10) for i in range(1, 500))]
    batch += [{"deviceId": 7}, "not a candidate", candidate(kind="no_such_type")]
    batch += [candidate(value=100), candidate(value=87)]  # 100 is critical: 15/60 of the span
    out = await engine.handle_many(batch)
    assert len(out) == 1
    alert = out[0]
    assert alert.count == 502
    assert alert.severity == "critical"
    assert alert.last_value == 87
    assert alert.triggered_at == datetime.fromisoformat(first["timestamp"])
    assert engine.stats["invalid"] == 3
    # A clear inside a batch resolves the run before it; what follows opens a new alert.
    out = await engine.handle_many(
        [candidate(value=90), candidate(value=70, state="clear"), candidate(value=91)]
    )
    assert [a.status for a in out] == ["triggered", "resolved", "triggered"]
    assert out[0].id == out[1].id == alert.id
    assert out[1].count == 503
    assert out[2].id != alert.id
    assert out[2].count == 1


async def test_duration_condition_needs_repeated_breaches(engine_parts: dict[str, Any]) -> None:
    engine = make_engine(engine_parts, min_readings=3)
    assert await engine.handle(candidate()) is None
    assert await engine.handle(candidate()) is None
    alert = await engine.handle(candidate())
    assert alert is not None
    assert alert.count == 1


async def test_silenced_alerts_are_recorded_but_not_notified(
    engine_parts: dict[str, Any], webhooks: Webhooks, mailbox: tuple[Mailbox, int]
) -> None:
    conn = engine_parts["conn"]
    await lifecycle.create_silence(
        conn,
        device_id="device-002",
        alert_type=None,
        starts_at=datetime.now(UTC) - timedelta(minutes=1),
        ends_at=datetime.now(UTC) + timedelta(hours=1),
        reason="maintenance",
        created_by="op",
    )
    engine = make_engine(engine_parts)
    alert = await engine.handle(candidate(device="device-002", value=60, threshold=55))
    assert alert is not None
    assert alert.silenced
    await engine.handle(candidate(device="device-002", value=40, state="clear"))
    await asyncio.sleep(0.2)
    assert webhooks.received == []
    assert mailbox[0].messages == []
    # Another device is not muted.
    await engine.handle(candidate(device="device-001"))
    await asyncio.sleep(0.2)
    assert webhooks.events() == ["alert-triggered"]


async def test_acknowledge_then_resolve_records_who_and_when(engine_parts: dict[str, Any]) -> None:
    engine = make_engine(engine_parts)
    alert = await engine.handle(candidate())
    assert alert is not None
    acked = await engine.acknowledge(alert.id, "olivia", "on my way")
    assert acked.status == "acknowledged"
    assert acked.acknowledged_by == "olivia"
    assert acked.acknowledged_at is not None
    with pytest.raises(AlertError, match="cannot become acknowledged"):
        await engine.acknowledge(alert.id, "olivia")
    done = await engine.resolve(alert.id, "olivia")
    assert done.resolved_by == "olivia"
    with pytest.raises(AlertError, match="is resolved"):
        await engine.resolve(alert.id, "olivia")
    events = [e for e, _, room in engine_parts["events"] if room == "alerts"]
    assert events == ["alert-triggered", "alert-acknowledged", "alert-resolved"]
    # A new breach after resolution opens a new alert.
    again = await engine.handle(candidate())
    assert again is not None
    assert again.id != alert.id


async def test_unacknowledged_alerts_escalate_after_five_minutes(
    engine_parts: dict[str, Any], webhooks: Webhooks
) -> None:
    clock: Clock = engine_parts["clock"]
    engine = make_engine(engine_parts)
    alert = await engine.handle(candidate())
    assert alert is not None
    clock.t = alert.triggered_at.timestamp() + 299
    assert await engine.escalate_due() == []
    clock.t = alert.triggered_at.timestamp() + 301
    escalated = await engine.escalate_due()
    assert [a.id for a in escalated] == [alert.id]
    assert escalated[0].status == "escalated"
    assert escalated[0].escalated_at is not None
    assert await engine.escalate_due() == []  # once
    acked = await engine.acknowledge(alert.id, "night-shift")
    assert acked.status == "acknowledged"
    await asyncio.sleep(0.2)
    assert webhooks.events() == ["alert-triggered", "alert-escalated"]


async def test_device_offline_fires_at_the_deadline_and_resolves_on_data(
    engine_parts: dict[str, Any],
) -> None:
    clock: Clock = engine_parts["clock"]
    r = engine_parts["redis"]
    engine = make_engine(engine_parts, offline_timeout_s=30)
    await engine.start()
    last = clock.t
    await r.zadd(LAST_SEEN_KEY, {"device-004": last})
    clock.t = last + 29.9
    await engine.check_offline()
    assert await lifecycle.find_open(engine_parts["conn"], "device-004", "device_offline") is None
    clock.t = last + 30.1  # the role polls every 200 ms: it fires within 0.2 s of the deadline
    await engine.check_offline()
    alert = await lifecycle.find_open(engine_parts["conn"], "device-004", "device_offline")
    assert alert is not None
    assert alert.severity == "high"
    await engine.check_offline()  # still offline: no second alert, no second event
    statuses = [
        p["status"]
        for e, p, room in engine_parts["events"]
        if e == "device-status" and room == "system"
    ]
    assert statuses == ["offline"]
    await r.zadd(LAST_SEEN_KEY, {"device-004": clock.t})
    await engine.check_offline()
    assert await lifecycle.find_open(engine_parts["conn"], "device-004", "device_offline") is None
    statuses = [
        p["status"]
        for e, p, room in engine_parts["events"]
        if e == "device-status" and room == "system"
    ]
    assert statuses == ["offline", "online"]


async def test_after_downtime_devices_get_a_timeout_before_they_are_offline(
    engine_parts: dict[str, Any],
) -> None:
    """A restart after an hour down: every device's last reading is an hour old. None is
    offline until it stays silent for its timeout after the engine started; one that does
    is offline then, once."""
    clock: Clock = engine_parts["clock"]
    r = engine_parts["redis"]
    await r.zadd(LAST_SEEN_KEY, {"device-001": clock.t - 3600, "device-002": clock.t - 3600})
    engine = make_engine(engine_parts, offline_timeout_s=30)
    await engine.start()
    started = clock.t
    await engine.check_offline()
    clock.t = started + 2
    await r.zadd(LAST_SEEN_KEY, {"device-001": clock.t})  # reports again
    clock.t = started + 29.9
    await engine.check_offline()
    assert await lifecycle.open_alerts(engine_parts["conn"]) == []
    clock.t = started + 30.1
    await engine.check_offline()
    await engine.check_offline()
    opened = await lifecycle.open_alerts(engine_parts["conn"])
    assert [(a.device_id, a.alert_type) for a in opened] == [("device-002", "device_offline")]


async def test_open_alerts_survive_a_restart(engine_parts: dict[str, Any]) -> None:
    first = make_engine(engine_parts)
    alert = await first.handle(candidate())
    assert alert is not None
    await engine_parts["redis"].delete(ACTIVE_KEY)
    second = make_engine(engine_parts)
    await second.start()
    assert await engine_parts["redis"].hexists(ACTIVE_KEY, str(alert.id))
    repeat = await second.handle(candidate())
    assert repeat is not None
    assert (repeat.id, repeat.count) == (alert.id, 2)


async def test_each_device_has_its_own_offline_timeout(engine_parts: dict[str, Any]) -> None:
    clock: Clock = engine_parts["clock"]
    conn, r = engine_parts["conn"], engine_parts["redis"]
    await conn.execute("UPDATE devices SET offline_timeout_s = 10 WHERE device_id = 'device-003'")
    engine = make_engine(engine_parts, offline_timeout_s=30)
    last = clock.t
    await r.zadd(LAST_SEEN_KEY, {"device-003": last, "device-001": last})
    clock.t = last + 9.9
    await engine.check_offline()
    assert engine.offline == set()
    clock.t = last + 10.1
    await engine.check_offline()
    assert engine.offline == {"device-003"}  # device-001 keeps the default 30 s
    alert = await lifecycle.find_open(conn, "device-003", "device_offline")
    assert alert is not None
    assert "10 s" in alert.message


async def _outcome(parts: dict[str, Any], engine: AlertEngine) -> dict[str, Any]:
    """Everything a run of candidates left: alerts, their transitions, the Redis mirror, the
    triggered/resolved events per (device, type), the engine's counters; then wiped for the next."""
    conn, r = parts["conn"], parts["redis"]
    cur = await conn.execute(
        "SELECT device_id, alert_type, status, count, severity, value, threshold, last_value,"
        " triggered_at, last_seen_at, message, silenced, flapping, resolved_by,"
        " array(SELECT (from_status, to_status, actor, note, created_at)::text"
        "       FROM alert_transitions t WHERE t.alert_id = a.id ORDER BY t.id)"
        " FROM alerts a ORDER BY device_id, alert_type, id"
    )
    alerts = await cur.fetchall()
    mirror = sorted(
        (json.loads(v)["deviceId"], json.loads(v)["type"], json.loads(v)["count"])
        for v in (await r.hgetall(ACTIVE_KEY)).values()
    )
    events: dict[tuple[str, str], list[str]] = {}
    for event, payload, room in parts["events"]:
        if room.startswith("device:") and event in ("alert-triggered", "alert-resolved"):
            key = (payload["deviceId"], payload["type"])
            events.setdefault(key, []).append(event)
    stats = dict(engine.stats)
    await conn.execute("TRUNCATE alerts, alert_transitions")
    await r.flushdb()
    parts["events"].clear()
    return {"alerts": alerts, "mirror": mirror, "events": events, "stats": stats}


async def test_a_batch_gives_the_alerts_one_at_a_time_gives(engine_parts: dict[str, Any]) -> None:
    """Many candidates for the same and for different (device, type)s, with clears between
    breaches, a pending condition and flap detection: handed over one at a time, as one
    batch, and in batches of 7, they leave the same alerts (counts, severities, first and
    last values, times, flapping marks), the same transitions, the same mirror, and the
    same triggered/resolved events per (device, type) in the same order (a batch opens the
    runs no clear ended after the rest, so the order across types may differ)."""
    import random

    rng = random.Random(14)
    base = engine_parts["clock"].t - 600
    batch: list[dict[str, Any]] = []
    for i in range(400):
        device = f"device-00{rng.randint(1, 5)}"
        kind = rng.choice(("threshold_exceeded", "threshold_exceeded", "data_anomaly"))
        c = candidate(device, kind, value=85 + rng.random() * 20, threshold=85.0)
        if kind == "data_anomaly":
            c["zscore"] = rng.choice((4.5, 7.0))
        elif rng.random() < 0.15:
            c.update(state="clear", value=70.0)
        c["timestamp"] = datetime.fromtimestamp(base + i * 0.5, UTC).isoformat()
        batch.append(c)
    batch.insert(100, {"deviceId": 7})  # malformed: skipped alike
    rule = {"min_readings": 2, "flap_changes": 3}
    outcomes = []
    for chunk in (1, len(batch), 7):
        engine = make_engine(engine_parts, **rule)
        await engine.start()
        for i in range(0, len(batch), chunk):
            part = batch[i : i + chunk]
            if chunk == 1:
                await engine.handle(part[0])
            else:
                await engine.handle_many(part)
        outcomes.append(await _outcome(engine_parts, engine))
    one, whole, sevens = outcomes
    assert one["stats"]["triggered"] > 20
    assert one["stats"]["resolved"] > 10
    assert one["stats"]["flapStarted"] > 0
    assert any(a[2] != "resolved" for a in one["alerts"])
    for other in (whole, sevens):
        assert other["alerts"] == one["alerts"]
        assert other["mirror"] == one["mirror"]
        assert other["events"] == one["events"]
        for counter in ("candidates", "invalid", "triggered", "resolved", "flapStarted"):
            assert other["stats"][counter] == one["stats"][counter], counter


async def test_a_failed_batch_is_rolled_back_whole_and_counts_once_when_handed_again(
    engine_parts: dict[str, Any],
) -> None:
    """A statement of the batch fails (the database refuses it): nothing of the batch is
    stored and the pending condition has not moved, so the batch handed again (as the role
    does) counts once."""
    engine = make_engine(engine_parts, min_readings=2)
    await engine.start()
    batch = [candidate(d) for d in ("device-001", "device-002") * 2]
    conn = engine_parts["conn"]
    await conn.execute(
        "ALTER TABLE alert_transitions ADD CONSTRAINT no_d2 CHECK (note NOT LIKE 'device-002%%')"
    )
    with pytest.raises(psycopg.errors.CheckViolation):
        await engine.handle_many(batch)
    assert await lifecycle.open_alerts(conn) == []
    assert await engine_parts["redis"].hlen(ACTIVE_KEY) == 0
    assert engine.stats["triggered"] == 0
    await conn.execute("ALTER TABLE alert_transitions DROP CONSTRAINT no_d2")
    # Each (device, type)'s second reading meets the pending condition, as the first time:
    # one reading counted each (had the failed try moved it, both would count two).
    out = await engine.handle_many(batch)
    assert sorted((a.device_id, a.count) for a in out) == [("device-001", 1), ("device-002", 1)]
    assert engine.stats["triggered"] == 2

"""The web role's Socket.IO service (DESIGN.md 4.8) on the real PostgreSQL, Redis and Kafka,
every role a child process (`iotmon run <role>`), clients speaking python-socketio over a
websocket.

Nothing here waits a fixed time: every wait polls a condition against a deadline. "Nothing
else arrived" is shown with a marker: an event published *after* the one that must not
arrive, on a room the client is in; the web process receives both from one Redis channel, in
order, so once the marker is there anything published before it would be too.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
import redis
import socketio

from iotmon.config import Settings
from iotmon.realtime.publish import WATCHED_KEY, Encoder, LivePublisher, replay_key
from iotmon.users.service import create_user
from iotmon.web import auth
from tests.integration.helpers import free_port, query

DEADLINE_S = 30.0  # generous: two cores, shared with other work
PASSWORD = "correct-horse-battery"  # noqa: S105 (a test user's)
T = TypeVar("T")


# --- processes ---------------------------------------------------------------------------
class Proc:
    def __init__(self, role: str, popen: subprocess.Popen[bytes], log: Path, port: int) -> None:
        self.role, self.popen, self.log, self.port = role, popen, log, port
        self.url = f"http://127.0.0.1:{port}"

    def tail(self, chars: int = 2500) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return (
            f"--- {self.role} (pid {self.popen.pid}, rc {self.popen.poll()}) ---\n{text[-chars:]}"
        )


class Procs:
    """Roles started as child processes on this test's database, topics and Redis; all
    stopped (SIGTERM, then each must exit cleanly) when the test ends."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.running: list[Proc] = []

    def start(self, role: str) -> Proc:
        port = free_port()
        log = self.logs / f"{role}-{len(self.running)}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "iotmon", "run", role],
                env=self.env | {"IOTMON_HTTP_PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        proc = Proc(role, popen, log, port)
        self.running.append(proc)
        return proc

    def tails(self) -> str:
        return "\n".join(p.tail() for p in self.running)

    def check_alive(self) -> None:
        dead = [p for p in self.running if p.popen.poll() is not None]
        if dead:
            pytest.fail("role process exited:\n" + "\n".join(p.tail() for p in dead))

    def stop_all(self) -> list[str]:
        for p in self.running:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        problems = []
        for p in self.running:
            try:
                p.popen.wait(30)
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(10)
                problems.append(f"{p.role} did not stop within 30 s of SIGTERM\n{p.tail()}")
                continue
            if p.popen.returncode != 0:
                problems.append(f"{p.role} exited with {p.popen.returncode}\n{p.tail()}")
        return problems


@pytest.fixture
def procs(settings: Settings, subprocess_env: dict[str, str], tmp_path: Path) -> Iterator[Procs]:
    prefix = settings.topic_prefix
    env = subprocess_env | {
        "IOTMON_PROCESSING_GROUP": f"{prefix}processing",
        "IOTMON_ALERTS_GROUP": f"{prefix}alerts",
        # The API's rate limiter counts per client address in the shared Redis: logins from
        # other tests running in the same minute must not make these fail.
        "IOTMON_RATE_LIMIT_PER_MINUTE": "0",
    }
    running = Procs(env, tmp_path)
    yield running
    problems = running.stop_all()
    assert not problems, "\n".join(problems)


async def until(
    check: Callable[[], T | None], what: str, procs: Procs, within_s: float = DEADLINE_S
) -> T:
    """Poll ``check`` until it returns something truthy; fail with the roles' logs at the
    deadline or as soon as a role process died."""
    deadline = time.monotonic() + within_s
    while True:
        value = check()
        if value:
            return value
        procs.check_alive()
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within_s:g} s: {what}\n{procs.tails()}")
        await asyncio.sleep(0.02)


async def web_ready(procs: Procs, web: Proc) -> None:
    deadline = time.monotonic() + 60
    async with httpx.AsyncClient(timeout=5) as http:
        while True:
            procs.check_alive()
            try:
                if (await http.get(f"{web.url}/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"web did not answer /health within 60 s\n{web.tail()}")
            await asyncio.sleep(0.1)


async def socket_clients(web: Proc) -> int:
    async with httpx.AsyncClient(timeout=5) as http:
        body = (await http.get(f"{web.url}/health")).json()
    return int(body["roles"]["web"]["socketClients"])


# --- users and tokens ----------------------------------------------------------------------
def db_url(settings: Settings) -> str:
    assert settings.database_url is not None
    return settings.database_url.get_secret_value()


def redis_url(settings: Settings) -> str:
    assert settings.redis_url is not None
    return settings.redis_url.get_secret_value()


def add_user(settings: Settings, name: str, role: str) -> None:
    with psycopg.connect(db_url(settings), autocommit=True) as conn:
        create_user(conn, name, PASSWORD, role)


async def login(web: Proc, name: str, password: str = PASSWORD) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.post(
            f"{web.url}/api/auth/token", json={"username": name, "password": password}
        )
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["accessToken"])


def add_device(settings: Settings) -> str:
    """A device of this test only: no other test publishes to its room."""
    device = f"rt-{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db_url(settings), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, device_type, location, unit, normal_min,"
            " normal_max, alert_min, alert_max, interval_ms)"
            " VALUES (%s, 'temperature', 'test-bench', 'celsius', 20, 80, 15, 85, 1000)",
            (device,),
        )
    return device


@pytest.fixture
def rooms(settings: Settings) -> Iterator[list[str]]:
    """Rooms a test publishes to; their replay buffers and watch entries are removed after."""
    made: list[str] = []
    yield made
    if made:
        r = redis.Redis.from_url(redis_url(settings))
        r.delete(*[replay_key(room) for room in made])
        r.zrem(WATCHED_KEY, *made)
        r.close()


@pytest.fixture
def publisher(settings: Settings) -> Iterator[LivePublisher]:
    client = redis.Redis.from_url(redis_url(settings))
    yield LivePublisher(client)
    client.close()


# --- a Socket.IO client that records what it receives ---------------------------------------
class Client:
    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[tuple[str, Any]] = []  # (event, payload), in arrival order
        self.refusals: list[Any] = []
        self.sio.on("*", self._record)
        self.sio.on("connect_error", self._refused)

    async def _record(self, event: str, data: Any = None) -> None:
        self.events.append((event, data))

    async def _refused(self, data: Any = None) -> None:
        self.refusals.append(data)

    async def connect(self, web: Proc, auth_data: dict[str, Any] | None) -> None:
        await self.sio.connect(
            web.url, auth=auth_data, transports=["websocket"], wait_timeout=DEADLINE_S
        )

    async def call(self, event: str, data: Any = None) -> Any:
        return await self.sio.call(event, data, timeout=DEADLINE_S)

    async def close(self) -> None:
        await self.sio.disconnect()

    def errors(self, code: str) -> list[dict[str, Any]]:
        return [e for e in self.of("error") if e.get("code") == code]

    def of(self, event: str, device: str | None = None) -> list[Any]:
        return [
            d
            for e, d in self.events
            if e == event
            and (device is None or (isinstance(d, dict) and d.get("deviceId") == device))
        ]


@pytest.fixture
async def clients() -> AsyncIterator[Callable[[], Client]]:
    made: list[Client] = []

    def make() -> Client:
        made.append(Client())
        return made[-1]

    yield make
    for c in made:
        await c.close()


def publish(
    publisher: LivePublisher,
    device: str,
    marks: list[str],
    event: str = "sensor-data",
    room: str | None = None,
) -> list[dict[str, Any]]:
    """One event per mark to the device's room (or ``room``), in one batch, as the roles
    publish them; returns each as a client must receive it (the payload with its eventId)."""
    payloads = [
        {"deviceId": device, "mark": m, "data": {"value": float(i)}} for i, m in enumerate(marks)
    ]
    ids = publisher.emit_many([(event, p, room or f"device:{device}") for p in payloads])
    assert len(ids) == len(payloads)
    return [{"eventId": str(i), **p} for i, p in zip(ids, payloads, strict=True)]


def keep_publishing(
    settings: Settings, device: str, out: list[dict[str, Any]], stop: threading.Event
) -> None:
    """Publish to the device's room every ~2 ms until ``stop`` (a thread), into a replay
    buffer large enough to keep them all."""
    client = redis.Redis.from_url(redis_url(settings))
    try:
        pub = LivePublisher(client, Encoder(replay_size=100_000))
        n = 0
        while not stop.is_set():
            out += publish(pub, device, [f"flow-{n}"])
            n += 1
            time.sleep(0.002)
    finally:
        client.close()


def at_least(n: int, items: list[T]) -> list[T] | None:
    return items if len(items) >= n else None


# --- 1. the token is checked on connect -----------------------------------------------------
async def test_connect_needs_a_valid_unexpired_token(
    settings: Settings, procs: Procs, clients: Callable[[], Client]
) -> None:
    web = procs.start("web")
    add_user(settings, "rt-viewer", "viewer")
    add_user(settings, "rt-operator", "operator")
    await web_ready(procs, web)
    with psycopg.connect(db_url(settings), autocommit=True) as conn:
        key = auth.signing_key(conn, None)  # the one the web process created and signs with
    viewer = auth.Principal("rt-viewer", "viewer")
    expired, _ = auth.Tokens(key, 3600).issue(viewer, now=time.time() - 7200)
    forged, _ = auth.Tokens("not-the-signing-key-of-this-deployment", 3600).issue(viewer)
    refused: list[tuple[dict[str, Any] | None, str]] = [
        (None, "token is required"),
        ({}, "token is required"),
        ({"token": ""}, "token is required"),
        ({"token": "not-a-jwt"}, "not valid"),
        ({"token": forged}, "not valid"),
        ({"token": expired}, "expired"),
    ]
    for auth_data, why in refused:
        client = clients()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(web, auth_data)
        assert not client.sio.connected
        # The refusal says why: socket.io's {message, data}, data in the error envelope.
        [refusal] = client.refusals
        assert why in refusal["message"], (auth_data, refusal)
        assert refusal["data"]["code"] == "unauthorized", refusal
        assert why in refusal["data"]["message"], refusal
        assert not [e for e, _ in client.events if e == "connection-status"]

    for name, role in (("rt-viewer", "viewer"), ("rt-operator", "operator")):
        client = clients()
        await client.connect(web, {"token": await login(web, name)})
        [status] = await until(partial(client.of, "connection-status"), "connection-status", procs)
        assert status["status"] == "connected"
        assert (status["user"], status["role"]) == (name, role)
        assert status["sid"] == client.sio.get_sid()
        assert status["lastEventId"].isdecimal()
    # The refused attempts never counted as clients; the two accepted ones do.
    assert await socket_clients(web) == 2


# --- 2. live sensor-data from the simulator, through every role -----------------------------
async def test_a_subscribed_client_receives_live_sensor_data_from_the_simulator(
    settings: Settings, procs: Procs, clients: Callable[[], Client]
) -> None:
    """simulator -> Kafka -> processing -> Redis -> web -> client, each role its own process;
    the readings the client sees are the ones ingestion stored."""
    web = procs.start("web")
    for role in ("ingestion", "processing", "simulator"):
        procs.start(role)
    add_user(settings, "rt-viewer", "viewer")
    await web_ready(procs, web)
    client = clients()
    await client.connect(web, {"token": await login(web, "rt-viewer")})

    # Refused subscriptions: an `error` event and an ack that says no.
    for data, code in (
        ({"deviceId": "device-999"}, "unknown_device"),
        ({"deviceId": "no spaces allowed"}, "invalid_device_id"),
        ({}, "invalid_device_id"),
    ):
        ack = await client.call("subscribe-device", data)
        assert ack["ok"] is False, ack
        assert ack["error"]["code"] == code, ack
        errors = await until(partial(client.errors, code), f"error {code}", procs)
        assert errors[0]["message"], errors
    await client.sio.emit("no-such-event", {"x": 1})
    [unknown] = await until(partial(client.errors, "unknown_event"), "unknown_event", procs)
    assert "no-such-event" in unknown["message"]

    # device-003 reports every second (DESIGN.md 4.1). Processing publishes only the rooms
    # some web process watches: subscribing is what starts the flow.
    ack = await client.call("subscribe-device", {"deviceId": "device-003"})
    assert ack == {"ok": True, "room": "device:device-003", "replayed": 0}, ack
    # The first event of a device can come before its first statistics: wait for two with.
    with_stats = await until(
        lambda: at_least(2, [e for e in client.of("sensor-data") if e["stats"]]),
        "two sensor-data events with statistics for device-003",
        procs,
        within_s=90,
    )
    events = client.of("sensor-data")
    assert {e["deviceId"] for e in events} == {"device-003"}  # only the subscribed room
    ids = [int(e["eventId"]) for e in events]
    assert ids == sorted(set(ids)), ids  # one system-wide sequence, in order, no repeats
    for event in events:
        assert set(event) == {"eventId", "deviceId", "timestamp", "data", "stats"}, event
        assert event["eventId"].isdecimal()
        assert set(event["data"]) == {"value", "unit", "status"}, event
        assert isinstance(event["data"]["value"], float)
        assert event["data"]["unit"] == "hz"
        assert event["data"]["status"] in ("normal", "warning", "critical")
        assert event["timestamp"].endswith("Z")
        stamp = datetime.fromisoformat(event["timestamp"])
        assert abs((datetime.now(UTC) - stamp).total_seconds()) < 600, event
    for event in with_stats:
        stats = event["stats"]
        assert set(stats) == {"avg", "min", "max", "count", "trend"}, stats
        assert isinstance(stats["count"], int)
        assert stats["count"] >= 1
        assert stats["min"] <= stats["avg"] <= stats["max"], stats

    # What the client saw is what ingestion stored: same device, timestamp and value.
    last = events[-1]
    stored = await until(
        lambda: query(
            db_url(settings),
            "SELECT value FROM sensor_readings WHERE device_id = 'device-003'"
            ' AND "timestamp" = %s',
            (datetime.fromisoformat(last["timestamp"]),),
        ),
        f"the reading of {last} in sensor_readings",
        procs,
    )
    assert [v for (v,) in stored] == [last["data"]["value"]]


# --- 3. two web processes share rooms through Redis -----------------------------------------
async def test_two_web_processes_deliver_what_is_published_to_their_clients(
    settings: Settings,
    procs: Procs,
    clients: Callable[[], Client],
    publisher: LivePublisher,
    rooms: list[str],
) -> None:
    web_a, web_b = procs.start("web"), procs.start("web")
    add_user(settings, "rt-viewer", "viewer")
    device, other = add_device(settings), add_device(settings)
    room = f"device:{device}"
    rooms += [room, f"device:{other}"]
    await web_ready(procs, web_a)
    await web_ready(procs, web_b)
    token = await login(web_a, "rt-viewer")  # a token from one process is good on the other
    on_a, on_b = clients(), clients()
    await on_a.connect(web_a, {"token": token})
    await on_b.connect(web_b, {"token": token})

    assert (await on_a.call("subscribe-device", {"deviceId": device}))["ok"]
    # Processing publishes the rooms any web process watches: the room is in live:watched.
    r = redis.Redis.from_url(redis_url(settings))
    try:
        watched_until = r.zscore(WATCHED_KEY, room)
    finally:
        r.close()
    assert watched_until is not None
    assert watched_until > time.time()

    # Only A's client is in the room: it gets the event, B's client does not.
    first = publish(publisher, device, ["before-b"])
    await until(lambda: on_a.of("sensor-data", device) == first, "before-b at A", procs)

    assert (await on_b.call("subscribe-device", {"deviceId": device}))["ok"]
    assert (await on_b.call("subscribe-device", {"deviceId": other}))["ok"]
    both = publish(publisher, device, ["both-1", "both-2", "both-3"])
    await until(lambda: on_a.of("sensor-data", device) == first + both, "both-* at A", procs)
    await until(lambda: on_b.of("sensor-data", device) == both, "both-* at B", procs)

    # B's client leaves; A's still gets the room's events, B's only its other room's.
    assert (await on_b.call("unsubscribe-device", {"deviceId": device}))["ok"]
    after = publish(publisher, device, ["after-b"])
    marker = publish(publisher, other, ["marker"])
    await until(lambda: on_b.of("sensor-data", other) == marker, "marker at B", procs)
    await until(lambda: on_a.of("sensor-data", device) == first + both + after, "after-b", procs)
    assert on_b.of("sensor-data", device) == both
    assert on_a.of("sensor-data", other) == []

    # Redis pub/sub is server-wide: what a deployment in another database of the same Redis
    # publishes to a room of the same name must not reach these clients.
    foreign_url = redis_url(settings).rsplit("/", 1)[0] + "/15"
    foreign = redis.Redis.from_url(foreign_url)
    try:
        publish(LivePublisher(foreign), device, ["foreign"])
        foreign.delete(replay_key(room))
    finally:
        foreign.close()
    marker = publish(publisher, device, ["marker-2"])
    await until(lambda: on_a.of("sensor-data", device)[-1:] == marker, "marker-2 at A", procs)
    mine = first + both + after + marker

    # The replay buffers are in Redis too: a client that leaves A and comes back on B gets
    # what it missed there.
    assert on_a.of("sensor-data", device) == mine
    seen = max(int(e["eventId"]) for e in on_a.of("sensor-data"))
    await on_a.close()
    missed = publish(publisher, device, ["missed-1", "missed-2"])
    back = clients()
    await back.connect(web_b, {"token": token, "lastEventId": str(seen)})
    ack = await back.call("subscribe-device", {"deviceId": device})
    assert ack == {"ok": True, "room": room, "replayed": 2}, ack
    await until(lambda: back.of("sensor-data", device) == missed, "missed-* on B", procs)


# --- 4. replay after a reconnect ------------------------------------------------------------
async def test_a_reconnecting_client_gets_exactly_what_it_missed(
    settings: Settings,
    procs: Procs,
    clients: Callable[[], Client],
    publisher: LivePublisher,
    rooms: list[str],
) -> None:
    web = procs.start("web")
    add_user(settings, "rt-viewer", "viewer")
    device, other, flowing = add_device(settings), add_device(settings), add_device(settings)
    rooms += [f"device:{device}", f"device:{other}", f"device:{flowing}"]
    await web_ready(procs, web)
    token = await login(web, "rt-viewer")

    first = clients()
    await first.connect(web, {"token": token})
    ack = await first.call("subscribe-device", {"deviceId": device})
    assert ack == {"ok": True, "room": f"device:{device}", "replayed": 0}, ack
    live = publish(publisher, device, [f"live-{i}" for i in range(3)])
    await until(lambda: first.of("sensor-data", device) == live, "the live events", procs)
    seen = max(int(e["eventId"]) for e in first.of("sensor-data"))
    await first.close()
    deadline = time.monotonic() + DEADLINE_S
    while await socket_clients(web):  # the server has seen it leave
        assert time.monotonic() < deadline, "the server still counts the client"
        await asyncio.sleep(0.05)

    # While it is away: events for its room, and for a room it will not rejoin.
    missed = publish(publisher, device, [f"missed-{i}" for i in range(5)])
    publish(publisher, other, ["elsewhere"])

    again = clients()
    await again.connect(web, {"token": token, "lastEventId": str(seen)})
    ack = await again.call("subscribe-device", {"deviceId": device})
    assert ack == {"ok": True, "room": f"device:{device}", "replayed": 5}, ack
    await until(lambda: at_least(5, again.of("sensor-data")), "the replay", procs)
    # Replayed events go out before the ack; a marker published now shows nothing else
    # is on its way for the room.
    marker = publish(publisher, device, ["marker"])
    await until(lambda: again.of("sensor-data")[-1:] == marker, "the marker", procs)
    assert again.of("sensor-data") == missed + marker  # ids, payloads, order; nothing else
    assert [e for e, _ in again.events if e not in ("sensor-data", "connection-status")] == []

    # Without lastEventId: no replay, only what is published from then on.
    fresh = clients()
    await fresh.connect(web, {"token": token})
    ack = await fresh.call("subscribe-device", {"deviceId": device})
    assert ack == {"ok": True, "room": f"device:{device}", "replayed": 0}, ack
    marker2 = publish(publisher, device, ["marker-2"])
    await until(lambda: fresh.of("sensor-data") == marker2, "marker-2 alone", procs)

    # The id can also come with the subscription (an int works as well as a string).
    late = clients()
    await late.connect(web, {"token": token})
    ack = await late.call(
        "subscribe-device", {"deviceId": device, "lastEventId": int(missed[2]["eventId"])}
    )
    assert ack == {"ok": True, "room": f"device:{device}", "replayed": 4}, ack
    await until(
        lambda: late.of("sensor-data") == missed[3:] + marker + marker2, "the later replay", procs
    )

    # Events keep coming while it reconnects: still what it missed first, then the live
    # ones, each once and in order (no live event overtakes the replay or repeats it).
    gone = clients()
    await gone.connect(web, {"token": token})
    assert (await gone.call("subscribe-device", {"deviceId": flowing}))["ok"]
    start = publish(publisher, flowing, ["start"])
    await until(lambda: gone.of("sensor-data") == start, "start", procs)
    await gone.close()
    missed_flow = publish(publisher, flowing, [f"missed-{i}" for i in range(30)])
    pumped: list[dict[str, Any]] = []
    stop = threading.Event()
    pump = threading.Thread(target=keep_publishing, args=(settings, flowing, pumped, stop))
    pump.start()
    try:
        back = clients()
        await back.connect(web, {"token": token, "lastEventId": start[0]["eventId"]})
        ack = await back.call("subscribe-device", {"deviceId": flowing})
        assert ack["ok"], ack
        assert ack["replayed"] >= 30, ack
        await until(
            lambda: at_least(ack["replayed"] + 20, back.of("sensor-data")),
            "live events after the replay",
            procs,
        )
    finally:
        stop.set()
        await asyncio.to_thread(pump.join)
    marker = publish(publisher, flowing, ["marker"])
    await until(lambda: back.of("sensor-data")[-1:] == marker, "the marker", procs)
    got = back.of("sensor-data")
    assert [e["eventId"] for e in got] == [e["eventId"] for e in missed_flow + pumped + marker]
    assert got == missed_flow + pumped + marker


# --- 5. unsubscribing, ping -----------------------------------------------------------------
async def test_unsubscribe_stops_delivery_and_ping_answers(
    settings: Settings,
    procs: Procs,
    clients: Callable[[], Client],
    publisher: LivePublisher,
    rooms: list[str],
) -> None:
    web = procs.start("web")
    add_user(settings, "rt-viewer", "viewer")
    device, other = add_device(settings), add_device(settings)
    rooms += [f"device:{device}", f"device:{other}"]
    await web_ready(procs, web)
    client = clients()
    await client.connect(web, {"token": await login(web, "rt-viewer")})

    pong = await client.call("ping", {})
    assert pong["pong"] is True, pong
    assert datetime.fromisoformat(pong["timestamp"])

    for d in (device, other):
        assert (await client.call("subscribe-device", {"deviceId": d}))["ok"]
    assert (await client.call("subscribe-alerts", {}))["ok"]
    before = publish(publisher, device, ["before"])
    # The alerts room is everyone's: only this test's device counts.
    alert = publish(publisher, device, ["alert-1"], event="alert-triggered", room="alerts")
    await until(lambda: client.of("sensor-data", device) == before, "before", procs)
    await until(lambda: client.of("alert-triggered", device) == alert, "alert-1", procs)

    ack = await client.call("unsubscribe-device", {"deviceId": device})
    assert ack == {"ok": True, "room": f"device:{device}"}, ack
    ack = await client.call("unsubscribe-alerts", {})
    assert ack == {"ok": True, "room": "alerts"}, ack
    publish(publisher, device, ["after"])
    publish(publisher, device, ["alert-2"], event="alert-triggered", room="alerts")
    marker = publish(publisher, other, ["marker"])
    await until(lambda: client.of("sensor-data", other) == marker, "the marker", procs)
    assert client.of("sensor-data", device) == before
    assert client.of("alert-triggered", device) == alert
    assert (await client.call("ping"))["pong"] is True

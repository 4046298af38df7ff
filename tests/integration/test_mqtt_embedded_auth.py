"""The embedded broker of ``iotmon up`` (amqtt, ``iotmon.mqtt.embedded``) checks credentials
like the deployment's Mosquitto: devices with the credentials provisioning recorded in
PostgreSQL (record only, no broker admin), on their own topics only; the bridge with its
in-memory password; nobody anonymous. A real amqtt on a free port, in a thread of its own (its
own event loop, as in ``iotmon up``), on the test's own database."""

from __future__ import annotations

import asyncio
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from iotmon.mqtt import provisioning
from iotmon.mqtt.credentials import BRIDGE_USER
from iotmon.mqtt.embedded import EmbeddedBroker, filter_within, topic_matches
from tests.integration.helpers import free_port

TTL_S = 0.5  # short, so that a revocation shows quickly (the default is 2 s)


def new_device(db: str) -> str:
    device = f"t-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO devices (device_id, device_type, location, unit, normal_min,"
            " normal_max, alert_min, alert_max)"
            " VALUES (%s, 'temperature', 'lab-1', 'celsius', 20, 80, 15, 85)",
            (device,),
        )
    return device


class Running:
    """An embedded broker on its own event loop in a thread."""

    def __init__(self, database_url: str, root: str = "") -> None:
        self.db = database_url
        self.root = root
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.broker = EmbeddedBroker(free_port(), root=root, ttl_s=TTL_S, database_url=database_url)
        self.call(self.broker.start)
        self.port = self.broker.port

    def call(self, make: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
        async def run() -> Any:
            return await make()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def provision(self, device: str) -> tuple[str, str]:
        issued = asyncio.run(self._provision(device))
        return issued["username"], issued["password"]

    async def _provision(self, device: str) -> dict[str, Any]:
        async with await psycopg.AsyncConnection.connect(self.db, autocommit=True) as conn:
            return await provisioning.provision(
                conn, admin_url=self.broker.admin_url, device_id=device, root=self.root, by="t"
            )

    def revoke(self, device: str) -> dict[str, Any]:
        async def run() -> dict[str, Any]:
            async with await psycopg.AsyncConnection.connect(self.db, autocommit=True) as conn:
                return await provisioning.revoke(
                    conn, admin_url=self.broker.admin_url, device_id=device, by="t"
                )

        return asyncio.run(run())

    def stop(self) -> None:
        self.call(self.broker.stop)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def running(database_url: str) -> Iterator[Running]:
    r = Running(database_url, root=f"r{uuid.uuid4().hex[:6]}/")
    yield r
    r.stop()


class Refused(Exception):
    pass


class Client:
    """A paho MQTT 3.1.1 client, connected (or Refused with the CONNACK's reason)."""

    def __init__(
        self,
        port: int,
        username: str | None,
        password: str | None,
        *,
        client_id: str | None = None,
        will: str | None = None,
    ) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.cond = threading.Condition()
        self.disconnected = threading.Event()
        self.c = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"t-{uuid.uuid4().hex[:10]}",
            protocol=mqtt.MQTTv311,
        )
        self.c.reconnect_delay_set(30, 30)  # no reconnect within a test's waits
        if username is not None:
            self.c.username_pw_set(username, password)
        if will is not None:
            self.c.will_set(will, b"gone", qos=1)
        connected = threading.Event()
        outcome: list[str] = []

        def on_connect(c: Any, ud: Any, flags: Any, reason: Any, props: Any) -> None:
            outcome.append(str(reason) if reason.is_failure else "")
            connected.set()

        def on_disconnect(c: Any, ud: Any, flags: Any, reason: Any, props: Any) -> None:
            if not connected.is_set():
                outcome.append(str(reason) or "disconnected")
                connected.set()
            self.disconnected.set()

        def on_message(c: Any, ud: Any, m: Any) -> None:
            with self.cond:
                self.got.append((m.topic, m.payload))
                self.cond.notify_all()

        self.c.on_connect = on_connect
        self.c.on_disconnect = on_disconnect
        self.c.on_message = on_message
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()
        if not connected.wait(10):
            self.close()
            raise Refused("no CONNACK within 10 s")
        if outcome[0]:
            self.close()
            raise Refused(outcome[0])
        self.disconnected.clear()

    def subscribe(self, topic: str) -> list[Any]:
        done = threading.Event()
        codes: list[Any] = []

        def on_subscribe(c: Any, ud: Any, mid: Any, rc: Any, props: Any) -> None:
            codes.extend(rc)
            done.set()

        self.c.on_subscribe = on_subscribe
        self.c.subscribe(topic, qos=1)
        assert done.wait(10), "no SUBACK"
        return codes

    def publish(self, topic: str, payload: bytes) -> None:
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def wait_for(self, payload: bytes, within: float = 10) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + within
        with self.cond:
            while not any(p == payload for _, p in self.got):
                left = deadline - time.monotonic()
                assert left > 0, f"{payload!r} never arrived; got {self.got}"
                self.cond.wait(left)
            return list(self.got)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def bridge(r: Running) -> Client:
    """A subscriber with the bridge's credentials (from the URL the bridge role is given)."""
    from urllib.parse import unquote, urlsplit

    u = urlsplit(r.broker.client_url())
    assert u.username == BRIDGE_USER
    assert u.password
    c = Client(r.port, unquote(u.username), unquote(u.password))
    assert [x.is_failure for x in c.subscribe(f"{r.root}#")] == [False]
    return c


def test_a_provisioned_device_publishes_and_the_bridge_gets_it(running: Running) -> None:
    device = new_device(running.db)
    user, password = running.provision(device)
    assert user == device
    sub = bridge(running)
    dev = Client(running.port, user, password)
    try:
        dev.publish(f"{running.root}devices/{device}/telemetry", b'{"value": 1}')
        got = sub.wait_for(b'{"value": 1}')
        assert (f"{running.root}devices/{device}/telemetry", b'{"value": 1}') in got
    finally:
        dev.close()
        sub.close()


def test_wrong_password_anonymous_and_unknown_users_are_refused(running: Running) -> None:
    device = new_device(running.db)
    user, password = running.provision(device)
    for username, pw in [
        (user, password + "x"),  # wrong password
        (user, ""),
        (None, None),  # anonymous
        ("", ""),
        ("nobody", password),  # not provisioned
        (new_device(running.db), password),  # a device without credentials
        (BRIDGE_USER, password),  # the bridge's name, not its password
        ("_iotmon_admin", "x"),
    ]:
        with pytest.raises(Refused, match=r"Not authorized|Bad user name"):
            Client(running.port, username, pw)
    Client(running.port, user, password).close()  # the right ones still work


def test_a_revoked_device_is_disconnected_and_refused(running: Running) -> None:
    device = new_device(running.db)
    user, password = running.provision(device)
    dev = Client(running.port, user, password)
    done = running.revoke(device)
    assert done["revoked"] is True
    # The live session is closed within the cache's TTL; a new connection is refused.
    assert dev.disconnected.wait(15), "the revoked device's session stayed open"
    dev.close()
    with pytest.raises(Refused):
        Client(running.port, user, password)
    # New credentials: the old password is refused, the new one works.
    user2, password2 = running.provision(device)
    deadline = time.monotonic() + 15
    while True:
        try:
            Client(running.port, user2, password2).close()
            break
        except Refused:
            assert time.monotonic() < deadline, "the new credentials were never accepted"
            time.sleep(0.2)
    with pytest.raises(Refused):
        Client(running.port, user, password)


def test_a_device_reaches_only_its_own_topics(running: Running) -> None:
    mine, theirs = new_device(running.db), new_device(running.db)
    user, password = running.provision(mine)
    sub = bridge(running)
    dev = Client(running.port, user, password)
    try:
        # Publishing under another device's topics (or outside the root): acknowledged by
        # amqtt (MQTT 3.1.1) and dropped; the bridge never gets it.
        dev.publish(f"{running.root}devices/{theirs}/telemetry", b"spoofed")
        dev.publish(f"{running.root}cmnd/{theirs}/x", b"spoofed")
        dev.publish(f"devices/{mine}/telemetry", b"spoofed")  # outside the root
        dev.publish(f"{running.root}devices/{mine}/telemetry", b"mine")
        got = sub.wait_for(b"mine")  # QoS 1 on one connection: what came before is here
        assert [p for _, p in got] == [b"mine"]
        assert dev.disconnected.is_set() is False  # not cut off, only dropped
        # Its subscriptions: its own topics only.
        assert [c.is_failure for c in dev.subscribe(f"{running.root}cmnd/{mine}/#")] == [False]
        assert [c.is_failure for c in dev.subscribe(f"{running.root}cmnd/{theirs}/#")] == [True]
        assert [c.is_failure for c in dev.subscribe(f"{running.root}#")] == [True]
        assert [c.is_failure for c in dev.subscribe("#")] == [True]
    finally:
        dev.close()
        sub.close()
    # A will on another device's topic: the connection is refused.
    with pytest.raises(Refused):
        Client(running.port, user, password, will=f"{running.root}devices/{theirs}/status")


def test_a_refused_client_cannot_take_over_the_bridges_session(running: Running) -> None:
    """amqtt alone drops a client id's session (and disconnects it) before authentication;
    the embedded broker authenticates first."""
    device = new_device(running.db)
    user, password = running.provision(device)
    sub_id = f"bridge-{uuid.uuid4().hex[:6]}"
    from urllib.parse import unquote, urlsplit

    u = urlsplit(running.broker.client_url())
    sub = Client(
        running.port, unquote(u.username or ""), unquote(u.password or ""), client_id=sub_id
    )
    assert [x.is_failure for x in sub.subscribe(f"{running.root}#")] == [False]
    try:
        for username, pw in [(None, None), (user, "wrong"), (BRIDGE_USER, "wrong")]:
            with pytest.raises(Refused):
                Client(running.port, username, pw, client_id=sub_id)
        dev = Client(running.port, user, password)
        dev.publish(f"{running.root}devices/{device}/telemetry", b"after")
        sub.wait_for(b"after")
        dev.close()
        assert not sub.disconnected.is_set()
    finally:
        sub.close()


def _connect_packet(client_id: bytes, username: bytes | None, password: bytes | None) -> bytes:
    """A raw MQTT 3.1.1 CONNECT (any bytes as username and password, UTF-8 or not)."""

    def field(b: bytes) -> bytes:
        return struct.pack("!H", len(b)) + b

    flags = 0x02 | (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    body = field(b"MQTT") + bytes([4, flags]) + struct.pack("!H", 30) + field(client_id)
    body += field(username) if username is not None else b""
    body += field(password) if password is not None else b""
    length, n = b"", len(body)
    while True:
        byte, n = n % 128, n // 128
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return b"\x10" + length + body


def _raw_connack(port: int, packet: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(packet)
        got = b""
        while len(got) < 4:
            chunk = s.recv(4 - len(got))
            if not chunk:
                break
            got += chunk
        return got


garbage = st.one_of(
    st.none(),
    st.binary(max_size=70_000).map(lambda b: b[:65535]),
    st.text(max_size=300).map(lambda t: t.encode()),
    st.sampled_from([b"", b"\x00", b"\xff\xfe", b"a\x00b", BRIDGE_USER.encode(), b"' OR 1=1 --"]),
)


def test_garbage_credentials_are_refused_and_the_broker_goes_on(running: Running) -> None:
    device = new_device(running.db)
    user, password = running.provision(device)
    sub = bridge(running)

    @hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(username=garbage, password=garbage)
    def refused(username: bytes | None, password: bytes | None) -> None:
        got = _raw_connack(running.port, _connect_packet(b"fuzz", username, password))
        # CONNACK with 0x04 (bad user name or password) or 0x05 (not authorized)
        assert got[:2] == b"\x20\x02", got
        assert got[3] in (4, 5), got

    try:
        refused()
        # A device's own name with a wrong password, as raw bytes too.
        got = _raw_connack(running.port, _connect_packet(b"f", user.encode(), b"\xff" * 40))
        assert got[3] == 5
        dev = Client(running.port, user, password)  # the broker still serves
        dev.publish(f"{running.root}devices/{device}/telemetry", b"still here")
        sub.wait_for(b"still here")
        dev.close()
    finally:
        sub.close()


def test_without_its_database_only_the_bridge_gets_in(database_url: str) -> None:
    r = Running(database_url)
    try:
        device = new_device(database_url)
        user, password = r.provision(device)
        r.broker.use_database(None)  # as in `iotmon up` before its services are up
        r.broker.guard.forget([user])
        with pytest.raises(Refused):
            Client(r.port, user, password)
        bridge(r).close()
    finally:
        r.stop()


def test_topic_matching() -> None:
    assert topic_matches("r/devices/d1/telemetry", "r/+/d1/#")
    assert topic_matches("r/cmnd/d1", "r/+/d1/#")  # '#' matches the parent level too
    assert not topic_matches("r/devices/d2/telemetry", "r/+/d1/#")
    assert not topic_matches("devices/d1/telemetry", "r/+/d1/#")
    assert topic_matches("a/b", "a/b")
    assert not topic_matches("a/b/c", "a/b")
    assert filter_within("r/cmnd/d1/#", "r/+/d1/#")
    assert filter_within("r/+/d1/x", "r/+/d1/#")
    assert not filter_within("r/+/+/x", "r/+/d1/#")
    assert not filter_within("r/#", "r/+/d1/#")
    assert not filter_within("#", "r/#")
    assert filter_within("r/a/#", "r/#")
    assert filter_within("#", "#")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotmon", "devices", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_provisions_for_the_embedded_broker(
    running: Running, subprocess_env: dict[str, str]
) -> None:
    """``iotmon devices provision`` in another shell, with no broker configured: it records
    the credentials in the database the embedded broker reads (record only)."""
    device = new_device(running.db)
    env = subprocess_env | {
        "IOTMON_DATABASE_URL": running.db,
        "IOTMON_MQTT_EMBEDDED_PORT": str(running.port),
        "IOTMON_MQTT_TOPIC_ROOT": running.root,
    }
    env = {k: v for k, v in env.items() if k not in ("IOTMON_MQTT_URL", "IOTMON_MQTT_ADMIN_URL")}
    done = _cli(env, "provision", device)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    username, password = lines["username"].strip(), lines["password"].strip()
    assert f"-V mqttv311 -q 1 -h 127.0.0.1 -p {running.port}" in lines["try"]
    assert f"-u '{username}' -P '{password}'" in lines["try"]
    sub = bridge(running)
    dev = Client(running.port, username, password)
    dev.publish(f"{running.root}devices/{device}/telemetry", b"from the cli")
    sub.wait_for(b"from the cli")
    sub.close()

    done = _cli(env, "revoke", device)
    assert done.returncode == 0, done.stderr
    assert dev.disconnected.wait(15)
    dev.close()
    again = _cli(env, "revoke", device)
    assert again.returncode == 1
    assert "has no MQTT credentials" in again.stderr

    # No broker of any kind: provisioning is off, and says how to turn it on.
    off = _cli(env | {"IOTMON_MQTT_EMBEDDED_PORT": "0"}, "provision", device)
    assert off.returncode == 1
    assert "IOTMON_MQTT_ADMIN_URL" in off.stderr
    assert "IOTMON_MQTT_EMBEDDED_PORT" in off.stderr

"""Device credentials on the real Mosquitto of ``scripts/infra.sh`` (dynamic security plugin):
anonymous and wrong passwords refused, a device publishes only under its own topics, revoking
disconnects it; provisioning through the admin API and the CLI.

Each test runs under a topic root of its own and provisions devices with ids of its own (the
broker is shared by every test), and revokes them at the end."""

# ruff: noqa: F811 (the api fixture of test_api is imported, then used as a parameter)
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import SecretStr
from typer.testing import CliRunner

from iotmon.cli import app
from iotmon.config import Settings
from iotmon.mqtt.credentials import verify_password
from tests.integration.helpers import free_port
from tests.integration.test_api import Api, api, new_device, sql, web_app  # noqa: F401
from tests.mqtt_support import ConnectRefused, bridge_url, close, connect, revoke

CREDENTIALS = "/api/devices/{}/mqtt-credentials"


@pytest.fixture
def settings(settings: Settings, infra: dict[str, str]) -> Settings:
    """The conftest settings with the broker's admin and a topic root of this test's own."""
    admin = infra.get("IOTMON_MQTT_ADMIN_URL")
    if not admin:
        pytest.fail("IOTMON_MQTT_ADMIN_URL not set: `scripts/infra.sh up` configures Mosquitto")
    return settings.model_copy(
        update={
            "mqtt_admin_url": SecretStr(admin),
            "mqtt_url": SecretStr(infra["IOTMON_MQTT_URL"]),
            "mqtt_topic_root": f"t{uuid.uuid4().hex[:8]}/",
        }
    )


@pytest.fixture
def issued() -> Iterator[list[str]]:
    """Usernames a test provisioned: deleted from the broker at the end."""
    names: list[str] = []
    yield names
    revoke(*names)


class Bridge:
    """A subscriber with the bridge's credentials, as the bridge subscribes (shared)."""

    def __init__(self, root: str) -> None:
        u = urlsplit(bridge_url())
        self.got: list[tuple[str, bytes]] = []
        self.client = connect(u.username, u.password)
        self.client.on_message = lambda c, ud, m: self.got.append((m.topic, m.payload))
        granted = threading.Event()
        reasons: list[Any] = []

        def on_subscribe(c: Any, ud: Any, mid: Any, rc: Any, props: Any) -> None:
            reasons.extend(rc)
            granted.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(
            f"$share/g{uuid.uuid4().hex[:6]}/{root}#", options=SubscribeOptions(qos=1)
        )
        assert granted.wait(10)
        assert not reasons[0].is_failure, reasons


class Device:
    """A connected device that records each PUBACK's reason and its disconnection."""

    def __init__(self, username: str, password: str) -> None:
        self.client = connect(username, password)
        self.acks: dict[int, str] = {}
        self.disconnected = threading.Event()
        self.disconnect_reason = ""

        def on_publish(c: Any, ud: Any, mid: int, rc: Any, props: Any) -> None:
            self.acks[mid] = str(rc)

        def on_disconnect(c: Any, ud: Any, flags: Any, rc: Any, props: Any) -> None:
            self.disconnect_reason = str(rc)
            self.disconnected.set()

        self.client.on_publish = on_publish
        self.client.on_disconnect = on_disconnect
        self.client.reconnect_delay_set(60, 60)  # no quiet reconnect behind the test's back

    def publish(self, topic: str, payload: bytes = b"{}") -> str:
        """QoS 1; the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        until(lambda: info.mid in self.acks)
        return self.acks[info.mid]

    def subscribe(self, topic: str) -> str:
        done = threading.Event()
        reasons: list[Any] = []

        def on_subscribe(c: Any, ud: Any, mid: Any, rc: Any, props: Any) -> None:
            reasons.extend(rc)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, options=SubscribeOptions(qos=1))
        assert done.wait(10)
        return str(reasons[0])

    def close(self) -> None:
        close(self.client)


def until(check: Callable[[], bool], within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


async def provision(api: Api, device: str, issued: list[str]) -> dict[str, Any]:
    r = await api.http.post(CREDENTIALS.format(device), headers=api.h("admin"))
    assert r.status_code == 201, r.text
    data: dict[str, Any] = r.json()["data"]
    issued.append(data["username"])
    return data


async def test_anonymous_and_wrong_passwords_are_refused(api: Api, issued: list[str]) -> None:
    device = new_device(api.db)
    creds = await provision(api, device, issued)
    with pytest.raises(ConnectRefused, match="Not authorized"):
        connect(None, None)
    with pytest.raises(ConnectRefused, match="Not authorized"):
        connect(creds["username"], creds["password"] + "x")
    with pytest.raises(ConnectRefused, match="Not authorized"):
        connect("nobody-at-all", creds["password"])
    close(connect(creds["username"], creds["password"]))  # the right one works


async def test_a_device_publishes_only_under_its_own_topics(
    api: Api, settings: Settings, issued: list[str]
) -> None:
    root = settings.mqtt_topic_root
    mine, other = new_device(api.db), new_device(api.db)
    creds = await provision(api, mine, issued)
    assert creds["username"] == mine
    assert creds["topics"] == [f"{root}+/{mine}/#"]
    bridge = Bridge(root)
    device = Device(creds["username"], creds["password"])
    try:
        assert device.publish(f"{root}devices/{mine}/telemetry", b"1") == "Success"
        assert device.publish(f"{root}cmnd/{mine}/access-control-mode/J1/door-sensors") == (
            "Success"
        )
        # Another device's topics, a topic without a device level, and its own topic outside
        # the root: the broker answers the PUBACK with "Not authorized" and drops the message.
        for topic in (
            f"{root}cmnd/{other}/access-control-mode/J1/door-sensors",
            f"{root}devices/{other}/telemetry",
            f"{root}devices",
            f"devices/{mine}/telemetry",
            f"{root}devices/{mine}x/telemetry",
        ):
            assert device.publish(topic, b"2") == "Not authorized", topic
        # Nor may it listen to another device's topics.
        assert device.subscribe(f"{root}cmnd/{other}/#") == "Not authorized"
        assert device.subscribe(f"{root}cmnd/{mine}/#") == "Granted QoS 1"
        assert device.publish(f"{root}devices/{mine}/telemetry", b"3") == "Success"
        # One publisher, one subscriber: messages arrive in order, so once the last one is
        # here a refused one that had got through would be here too.
        until(lambda: any(p == b"3" for _, p in bridge.got))
    finally:
        device.close()
        close(bridge.client)
    assert bridge.got == [
        (f"{root}devices/{mine}/telemetry", b"1"),
        (f"{root}cmnd/{mine}/access-control-mode/J1/door-sensors", b"{}"),
        (f"{root}devices/{mine}/telemetry", b"3"),
    ]


async def test_revoking_disconnects_and_refuses_the_next_connect(
    api: Api, issued: list[str]
) -> None:
    device_id = new_device(api.db)
    first = await provision(api, device_id, issued)
    # Provisioning again replaces the credentials: a client on the old ones is cut off.
    old = Device(first["username"], first["password"])
    second = await provision(api, device_id, issued)
    await asyncio.to_thread(old.disconnected.wait, 10)
    assert old.disconnect_reason == "Administrative action"
    old.close()
    with pytest.raises(ConnectRefused):
        connect(first["username"], first["password"])

    device = Device(second["username"], second["password"])
    r = await api.http.delete(CREDENTIALS.format(device_id), headers=api.h("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["data"]["revoked"] is True
    await asyncio.to_thread(device.disconnected.wait, 10)
    assert device.disconnect_reason == "Administrative action"
    device.close()
    with pytest.raises(ConnectRefused, match="Not authorized"):
        connect(second["username"], second["password"])
    # Revoked is revoked: nothing more to revoke, nothing live to show.
    r = await api.http.delete(CREDENTIALS.format(device_id), headers=api.h("admin"))
    assert r.status_code == 404
    r = await api.get(CREDENTIALS.format(device_id), role="admin")
    assert r.status_code == 404
    rows = sql(
        api.db,
        "SELECT revoked_at IS NOT NULL, revoked_by FROM mqtt_credential WHERE device_id = %s",
        device_id,
    )
    assert rows == [(True, "admin"), (True, "admin")]


async def test_the_api_keeps_only_a_hash_and_is_for_admins(api: Api, issued: list[str]) -> None:
    device = new_device(api.db)
    for role in ("viewer", "operator"):
        for method in ("POST", "GET", "DELETE"):
            r = await api.http.request(method, CREDENTIALS.format(device), headers=api.h(role))
            assert r.status_code == 403, (role, method, r.text)
    r = await api.http.post(CREDENTIALS.format(device))
    assert r.status_code == 401
    creds = await provision(api, device, issued)
    (stored,) = sql(
        api.db, "SELECT password_hash FROM mqtt_credential WHERE device_id = %s", device
    )
    assert stored[0].startswith("$7$101$")
    assert creds["password"] not in stored[0]
    assert verify_password(creds["password"], stored[0])
    r = await api.get(CREDENTIALS.format(device), role="admin")
    assert r.status_code == 200
    assert "password" not in r.json()["data"]
    assert r.json()["data"]["username"] == device
    assert creds["password"] not in r.text
    r = await api.http.post(CREDENTIALS.format("no-such-device"), headers=api.h("admin"))
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = await api.http.post(CREDENTIALS.format("bad%2Bid"), headers=api.h("admin"))
    assert r.status_code == 422


async def test_a_broker_that_is_away_is_a_503_and_nothing_is_written(
    api: Api, settings: Settings
) -> None:
    device = new_device(api.db)
    away = settings.model_copy(
        update={
            "mqtt_admin_url": SecretStr(f"mqtt://a:b@127.0.0.1:{free_port()}"),
            "rate_limit_per_minute": 0,
        }
    )
    async with other_app(away, api.db) as http:
        r = await http.post(CREDENTIALS.format(device), headers=api.h("admin"))
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "broker_unavailable"
        assert "unreachable" in r.json()["error"]["message"]
    unset = settings.model_copy(update={"mqtt_admin_url": None, "rate_limit_per_minute": 0})
    async with other_app(unset, api.db) as http:
        r = await http.post(CREDENTIALS.format(device), headers=api.h("admin"))
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "mqtt_not_configured"
        assert "IOTMON_MQTT_ADMIN_URL" in r.json()["error"]["message"]
    assert sql(api.db, "SELECT count(*) FROM mqtt_credential") == [(0,)]


class other_app:
    """Another web role on the same database (the api fixture's tokens work on it)."""

    def __init__(self, settings: Settings, db: str) -> None:
        self.settings, self.db = settings, db

    async def __aenter__(self) -> Any:
        import httpx

        self.role, app = web_app(self.settings, self.db)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.role.run(self.stop))
        await asyncio.sleep(0.2)
        transport = httpx.ASGITransport(app=app, client=("10.9.9.9", 40000))
        self.http = httpx.AsyncClient(transport=transport, base_url="http://test")
        return self.http

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()
        self.stop.set()
        await self.task


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "iotmon", "devices", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_cli_provisions_and_revokes(
    settings: Settings, subprocess_env: dict[str, str], database_url: str, issued: list[str]
) -> None:
    device = new_device(database_url)
    env = subprocess_env | {
        "IOTMON_MQTT_ADMIN_URL": settings.mqtt_admin_url.get_secret_value(),  # type: ignore[union-attr]
        "IOTMON_MQTT_TOPIC_ROOT": settings.mqtt_topic_root,
    }
    done = _cli(env, "provision", device)
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(":", 1) for line in done.stdout.splitlines())
    username, password = lines["username"].strip(), lines["password"].strip()
    issued.append(username)
    assert username == device
    assert "mosquitto_pub" in lines["try"]
    assert password in lines["try"]
    assert f"{settings.mqtt_topic_root}devices/{device}/telemetry" in lines["try"]
    assert "shown this once" in done.stderr
    dev = Device(username, password)
    # Accepted: nobody subscribes here, a success reason all the same.
    assert dev.publish(f"{settings.mqtt_topic_root}devices/{device}/telemetry") == (
        "No matching subscribers"
    )

    done = _cli(env, "revoke", device)
    assert done.returncode == 0, done.stderr
    dev.disconnected.wait(10)
    dev.close()
    with pytest.raises(ConnectRefused):
        connect(username, password)

    # Clear failures, exit status 1, nothing recorded (in-process: no interpreter start each).
    other = new_device(database_url)
    runner = CliRunner()
    for extra, args, message in (
        ({}, ("provision", "no-such-device"), "does not exist"),
        ({}, ("provision", "bad/id"), "invalid device id"),
        ({}, ("revoke", other), "has no MQTT credentials"),
        ({"IOTMON_MQTT_ADMIN_URL": ""}, ("provision", other), "IOTMON_MQTT_ADMIN_URL"),
        (
            {"IOTMON_MQTT_ADMIN_URL": f"mqtt://a:b@127.0.0.1:{free_port()}"},
            ("provision", other),
            "unreachable",
        ),
    ):
        done = runner.invoke(app, ["devices", *args], env=env | extra)
        assert done.exit_code == 1, (args, done.stdout, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "password" not in done.stdout
    assert sql(
        database_url, "SELECT count(*) FROM mqtt_credential WHERE device_id = %s", other
    ) == [(0,)]


device_ids = st.one_of(
    st.text(max_size=80),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,60}", fullmatch=True),
    st.sampled_from(["..", ".", "%", "a/b", "a+b", "#", "+", "$share", "ä", "a" * 51, " x"]),
)


async def test_device_ids_in_the_path_get_a_clear_4xx(api: Api) -> None:
    """Any text as the path's device id: a 4xx in the error envelope, never a 5xx (none of
    these devices exists). Hypothesis drives from a thread; the requests run on this loop."""
    loop = asyncio.get_running_loop()
    seen: list[int] = []

    @given(device=device_ids, method=st.sampled_from(["POST", "GET", "DELETE"]))
    @hypothesis_settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
    )
    def check(device: str, method: str) -> None:
        path = CREDENTIALS.format(quote(device, safe=""))
        request = api.http.request(method, path, headers=api.h("admin"))
        r = asyncio.run_coroutine_threadsafe(request, loop).result(30)
        seen.append(r.status_code)
        assert 400 <= r.status_code < 500, (device, method, r.status_code, r.text)
        assert r.json()["success"] is False, r.text

    await asyncio.to_thread(check)
    assert {404, 422} <= set(seen), seen

"""MQTT for tests and benchmarks: the broker of ``scripts/infra.sh`` refuses anonymous clients,
so whoever publishes as a device provisions it first and connects with its credentials.

    from tests.mqtt_support import bridge_url, connect, provision
    user, password = provision("f2-t0000001", root="t1234abcd/")
    pub = connect(user, password)           # MQTT 5, network loop running
    pub.publish("t1234abcd/cmnd/f2-t0000001/...", b"...", qos=1).wait_for_publish(10)

A device may publish only on topics whose level after ``root`` and the first level is its id
(``<root>cmnd/<device>/#``, ``<root>devices/<device>/#``); the bridge (``bridge_url()``) may
subscribe to everything. Each ``provision`` makes a new client with a username of its own
(``<device>~<random>``), so tests running at once never disconnect each other.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]


def _env(key: str) -> str | None:
    """IOTMON_* from the environment, else from what `scripts/infra.sh up` wrote."""
    if key in os.environ:
        return os.environ[key]
    state = Path(os.environ.get("IOTMON_INFRA_DIR", REPO / "var" / "infra")) / "env"
    if state.exists():
        for line in state.read_text().splitlines():
            k, _, v = line.partition("=")
            if k.strip() == key:
                return v.strip()
    return None


def bridge_url() -> str:
    """The broker URL the bridge uses (credentials included): IOTMON_MQTT_URL."""
    url = _env("IOTMON_MQTT_URL")
    if not url:
        raise RuntimeError("IOTMON_MQTT_URL not set: `scripts/infra.sh up` starts Mosquitto")
    return url


def admin_url() -> str | None:
    """The broker's dynamic-security admin (IOTMON_MQTT_ADMIN_URL), None when not configured."""
    return _env("IOTMON_MQTT_ADMIN_URL")


def broker_address() -> tuple[str, int]:
    u = urlsplit(bridge_url())
    return u.hostname or "127.0.0.1", u.port or 1883


def _username(device_id: str) -> str:
    # Its own username per call: concurrent tests publishing as one device id must not replace
    # each other's client. '~' is no device id's character, so no real device is touched.
    return f"{device_id}~{uuid.uuid4().hex[:10]}"


def provision(device_id: str, root: str = "") -> tuple[str, str]:
    """A client of the broker that may publish as ``device_id`` (under ``root``): (username,
    password). Each call makes a new one; ``revoke(username)`` deletes it."""
    return provision_many([device_id], root)[0]


def provision_many(device_ids: list[str], root: str = "") -> list[tuple[str, str]]:
    """``provision`` for many devices in one round trip (e.g. a benchmark's fleet)."""
    url = admin_url()
    if url is None:  # a broker that still admits anyone: any credentials do
        return [(_username(d), secrets.token_urlsafe(18)) for d in device_ids]
    from iotmon.mqtt.credentials import DynsecAdmin

    with DynsecAdmin(url, timeout_s=60) as admin:
        issued = admin.issue_many(device_ids, root, usernames=[_username(d) for d in device_ids])
    if not _live:
        atexit.register(_revoke_leftovers)
    _live.update(i.username for i in issued)
    return [(i.username, i.password) for i in issued]


_live: set[str] = set()  # provisioned here and not revoked yet: revoked when the process ends


def _revoke_leftovers() -> None:
    """Keep the broker's client list (and the file it rewrites on each change) small."""
    with contextlib.suppress(Exception):
        revoke(*sorted(_live))


def revoke(*usernames: str) -> None:
    """Delete clients made by ``provision`` (a connected one is disconnected)."""
    url = admin_url()
    if url is None or not usernames:
        return
    from iotmon.mqtt.credentials import DynsecAdmin

    with DynsecAdmin(url, timeout_s=60) as admin:
        admin.revoke_many(list(usernames))
    _live.difference_update(usernames)


class ConnectRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(f"broker refused the connection: {reason}")
        self.reason = reason


def connect(
    username: str | None, password: str | None, client_id: str | None = None, timeout: float = 10
) -> mqtt.Client:
    """An MQTT 5 client connected to the broker with its network loop running; raises
    ConnectRefused with the CONNACK's reason when the broker says no."""
    host, port = broker_address()
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id or f"t-{uuid.uuid4().hex[:10]}",
        protocol=mqtt.MQTTv5,
    )
    if username is not None:
        c.username_pw_set(username, password)
    done = threading.Event()
    outcome: list[str] = []

    def on_connect(
        client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        outcome.append("" if not getattr(reason, "is_failure", False) else str(reason))
        done.set()

    def on_disconnect(
        client: mqtt.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if not done.is_set():
            outcome.append(str(reason) or "disconnected")
            done.set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    c.connect(host, port)
    c.loop_start()
    if not done.wait(timeout):
        c.loop_stop()
        raise ConnectRefused(f"no CONNACK within {timeout} s")
    if outcome[0]:
        c.loop_stop()
        c.disconnect()
        raise ConnectRefused(outcome[0])
    c.on_connect = None
    c.on_disconnect = None
    return c


_provisioned: dict[int, str] = {}  # id(client) -> its username, revoked by close()


def device_client(device_id: str, root: str = "") -> mqtt.Client:
    """Provision ``device_id`` and return a connected client publishing as it; ``close()``
    disconnects it and deletes its credentials."""
    user, password = provision(device_id, root=root)
    c = connect(user, password)
    _provisioned[id(c)] = user
    return c


def close(c: mqtt.Client) -> None:
    c.disconnect()
    c.loop_stop()
    user = _provisioned.pop(id(c), None)
    if user is not None:
        revoke(user)

"""Device credentials on the broker: Mosquitto's dynamic security plugin, driven through its
control topic ``$CONTROL/dynamic-security/v1`` (changes apply at once, no broker restart).

Each device is a dynsec client whose username is its device id, with a role of its own that
allows publishing and subscribing only under ``<root>+/<device>/#``: the topics whose level
after the topic root and the first level is the device's id (``cmnd/<device>/...``,
``devices/<device>/...``). Mosquitto 2.0's dynsec has no ``%u`` substitution for publish
ACLs, hence one role per device.

The system's own clients have usernames no device id can take (device ids start with a letter
or digit): ``_iotmon_admin`` (the plugin's administrator) and ``_iotmon_bridge``.

Passwords are random (24 bytes from ``secrets``); the broker keeps its own salted PBKDF2 hash,
PostgreSQL keeps ours in Mosquitto's ``$7$`` format (PBKDF2-HMAC-SHA512), which a password
file (``mosquitto_passwd``) accepts as is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = f"{CONTROL_TOPIC}/response"
ROLE_PREFIX = "device:"
ADMIN_USER = "_iotmon_admin"
BRIDGE_USER = "_iotmon_bridge"
HASH_ITERATIONS = 101  # Mosquitto's own default; the passwords are 192 random bits
NOT_FOUND = ("Client not found", "Role not found")


class CredentialsError(Exception):
    """Base of what provisioning raises."""


class BrokerUnavailable(CredentialsError):
    """The broker cannot be reached, refused the admin, or did not answer in time."""


class BrokerRefused(CredentialsError):
    """The dynamic security plugin answered a command with an error."""


@dataclass(frozen=True, slots=True)
class Issued:
    username: str
    password: str
    password_hash: str
    topics: tuple[str, ...]


def hash_password(password: str, *, iterations: int = HASH_ITERATIONS) -> str:
    """Mosquitto's ``$7$<iterations>$<salt b64>$<hash b64>`` (PBKDF2-HMAC-SHA512)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        _, kind, iterations, salt, digest = encoded.split("$")
        if kind != "7":
            return False
        got = hashlib.pbkdf2_hmac(
            "sha512", password.encode(), base64.b64decode(salt), int(iterations)
        )
        return hmac.compare_digest(got, base64.b64decode(digest))
    except ValueError:
        return False


def device_topics(device_id: str, root: str = "") -> tuple[str, ...]:
    """The topic filters a device may publish and subscribe to."""
    return (f"{root}+/{device_id}/#",)


def role_name(device_id: str) -> str:
    return f"{ROLE_PREFIX}{device_id}"


class DynsecAdmin:
    """A short-lived admin connection: ``with DynsecAdmin(url) as admin: admin.provision(...)``.
    Thread-blocking (paho); call it from a worker thread in async code."""

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        u = urlsplit(url)
        try:
            port = u.port or 1883
        except ValueError:  # a port out of range or not a number
            port = 0
        if u.scheme not in ("mqtt", "tcp") or not u.username or not port:
            raise CredentialsError("the MQTT admin URL must be mqtt://<user>:<password>@host:port")
        self._host, self._port = u.hostname or "127.0.0.1", port
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._waiting: dict[str, threading.Event] = {}
        self._answers: dict[str, list[dict[str, Any]]] = {}
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"iotmon-admin-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(unquote(u.username), unquote(u.password or ""))
        self._client.on_message = self._on_message

    # --- connection ---
    def __enter__(self) -> DynsecAdmin:
        self.open()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> None:
        where = f"{self._host}:{self._port}"
        connected = threading.Event()
        subscribed = threading.Event()
        refused: list[str] = []

        def on_connect(c: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            if reason.is_failure:
                refused.append(str(reason))
            connected.set()

        def on_subscribe(c: Any, userdata: Any, mid: Any, reasons: Any, props: Any) -> None:
            if any(r.is_failure for r in reasons):
                refused.append(f"subscribe to {RESPONSE_TOPIC}: {reasons[0]}")
            subscribed.set()

        self._client.on_connect = on_connect
        self._client.on_subscribe = on_subscribe
        try:
            self._client.connect(self._host, self._port, keepalive=30)
        except OSError as exc:
            raise BrokerUnavailable(f"MQTT broker {where} unreachable: {exc}") from exc
        self._client.loop_start()
        if not connected.wait(self._timeout):
            self.close()
            raise BrokerUnavailable(f"MQTT broker {where}: no CONNACK in {self._timeout:g} s")
        if refused:
            self.close()
            raise BrokerUnavailable(f"MQTT broker {where} refused the admin: {refused[0]}")
        self._client.subscribe(RESPONSE_TOPIC, options=SubscribeOptions(qos=1))
        if not subscribed.wait(self._timeout) or refused:
            self.close()
            why = refused[0] if refused else f"no SUBACK in {self._timeout:g} s"
            raise BrokerUnavailable(f"MQTT broker {where}: {why} (is dynsec loaded?)")

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            responses = orjson.loads(msg.payload).get("responses", [])
        except (orjson.JSONDecodeError, AttributeError):
            return
        with self._lock:
            for r in responses:
                key = r.get("correlationData") if isinstance(r, dict) else None
                if key in self._waiting:
                    self._answers.setdefault(key, []).append(r)
                    self._waiting[key].set()

    # --- commands ---
    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send commands in one message; their responses, in order (``error`` set on failure).
        The plugin applies them in order; one that fails does not stop the next ones."""
        keys = [uuid.uuid4().hex for _ in commands]
        events = {k: threading.Event() for k in keys}
        with self._lock:
            self._waiting.update(events)
        body = [{**c, "correlationData": k} for c, k in zip(commands, keys, strict=True)]
        try:
            info = self._client.publish(CONTROL_TOPIC, orjson.dumps({"commands": body}), qos=1)
            for k in keys:
                if not events[k].wait(self._timeout):
                    raise BrokerUnavailable(
                        f"the broker's dynamic security plugin did not answer in "
                        f"{self._timeout:g} s (is it loaded? mid {info.mid})"
                    )
            with self._lock:
                return [self._answers[k][0] for k in keys]
        finally:
            with self._lock:
                for k in keys:
                    self._waiting.pop(k, None)
                    self._answers.pop(k, None)

    def _check(self, responses: list[dict[str, Any]], tolerated: tuple[str, ...] = ()) -> None:
        for r in responses:
            err = r.get("error")
            if err and err not in tolerated:
                raise BrokerRefused(f"dynamic security {r.get('command')}: {err}")

    def provision(self, device_id: str, root: str = "") -> tuple[str, str]:
        """Create (or replace) the device's client and role: (username, password). A client
        already connected with the old credentials is disconnected."""
        issued = self.issue(device_id, root)
        return issued.username, issued.password

    def issue(self, device_id: str, root: str = "", *, username: str | None = None) -> Issued:
        """``username`` defaults to the device id (tests give each connection its own, so that
        concurrent tests publishing as one device do not replace each other's client)."""
        return self.issue_many([device_id], root, usernames=[username or device_id])[0]

    def issue_many(
        self, device_ids: list[str], root: str = "", *, usernames: list[str] | None = None
    ) -> list[Issued]:
        """Several devices in one round trip to the broker."""
        names = usernames or device_ids
        issued: list[Issued] = []
        commands: list[dict[str, Any]] = []
        for device_id, username in zip(device_ids, names, strict=True):
            password = secrets.token_urlsafe(24)
            topics = device_topics(device_id, root)
            role = role_name(username)
            acls = [
                {"acltype": kind, "topic": t, "allow": True}
                for t in topics
                for kind in ("publishClientSend", "subscribePattern")
            ]
            commands += [
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": role},
                {"command": "createRole", "rolename": role, "acls": acls},
                {
                    "command": "createClient",
                    "username": username,
                    "password": password,
                    "textname": f"iotmon device {device_id}",
                    "roles": [{"rolename": role}],
                },
            ]
            issued.append(Issued(username, password, hash_password(password), topics))
        responses = self.run(commands)
        for i in range(0, len(responses), 4):
            self._check(responses[i : i + 2], tolerated=NOT_FOUND)
            self._check(responses[i + 2 : i + 4])
        return issued

    def revoke(self, username: str) -> bool:
        """Delete the client (disconnecting it) and its role; False if there was none."""
        return self.revoke_many([username])[0]

    def revoke_many(self, usernames: list[str]) -> list[bool]:
        commands: list[dict[str, Any]] = []
        for username in usernames:
            commands += [
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": role_name(username)},
            ]
        responses = self.run(commands)
        self._check(responses, tolerated=NOT_FOUND)
        return [responses[i].get("error") is None for i in range(0, len(responses), 2)]

    def has_client(self, device_id: str) -> bool:
        (r,) = self.run([{"command": "getClient", "username": device_id}])
        self._check([r], tolerated=NOT_FOUND)
        return r.get("error") is None

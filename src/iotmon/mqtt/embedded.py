"""The MQTT broker ``iotmon up`` runs in its own process when no broker is configured
(``IOTMON_MQTT_URL`` unset): amqtt, an asyncio MQTT 3.1.1 broker, on the event loop of the
roles, listening on 127.0.0.1 only (``IOTMON_MQTT_EMBEDDED_PORT``, 1883).

It speaks MQTT 3.1.1: no ``$share`` subscriptions and no MQTT 5 properties, so the bridge runs
in its 3.1.1 mode against it (one bridge, a plain subscription, a persistent session).

It checks credentials like the Mosquitto of a deployment (``credentials.py``); anonymous
clients are refused:

- a device connects with the username and password ``iotmon devices provision DEVICE`` (or
  ``POST /api/devices/{id}/mqtt-credentials``) issued: provisioning in embedded mode only
  records them (``mqtt_credential``, the password as a ``$7$`` PBKDF2 hash; ``provisioning``'s
  record-only path), and this broker reads that table. A device may publish, and subscribe,
  only on its own topics (the record's ``topics``: ``<root>+/<device>/#``). Verified passwords
  are cached ``ttl_s`` (2 s); a revoked or replaced credential is refused at the next connect
  after that, and a session connected with it is closed within ``ttl_s`` too.
- the bridge connects as ``_iotmon_bridge`` with a random password made at each start and kept
  in memory only (``EmbeddedBroker.client_url``); it may subscribe to anything under the topic
  root, and publish nothing. The simulator's MQTT devices are devices like any other: the
  simulator provisions them (record only) at its start.

What amqtt does with a refusal (MQTT 3.1.1 has no reason codes on PUBLISH):
- a CONNECT: CONNACK 0x05 (not authorized), then the connection is closed. Checked before the
  broker touches its session table, so a client that fails cannot take over (disconnect) or
  wipe the session of a client connected with the same client id (amqtt itself authenticates
  only after doing both: ``_GuardedBroker``);
- a PUBLISH on a topic the client may not use: acknowledged as usual (PUBACK for QoS 1) and
  silently dropped; no subscriber gets it, the client is not told and stays connected;
- a SUBSCRIBE: SUBACK 0x80 (failure) for that filter;
- a will message on a topic the client may not publish to: the CONNECT is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from amqtt.broker import Broker  # type: ignore[import-untyped]
from amqtt.contexts import Action  # type: ignore[import-untyped]
from amqtt.errors import AMQTTError, BrokerError, MQTTError, NoDataError  # type: ignore[import-untyped]
from amqtt.mqtt.connack import NOT_AUTHORIZED, ConnackPacket  # type: ignore[import-untyped]
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler  # type: ignore[import-untyped]
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin  # type: ignore[import-untyped]
from amqtt.utils import gen_client_id  # type: ignore[import-untyped]

from iotmon import logging as log
from iotmon.mqtt.credentials import BRIDGE_USER, verify_password

logger = log.get(__name__)

HOST = "127.0.0.1"
TTL_S = 2.0  # a verified password, a credential record: how long they are believed
MAX_CACHED = 50_000  # verified passwords kept; past it the cache starts over
# What a device's username can be (provisioning makes it the device id); anything else is
# refused without asking PostgreSQL (which refuses NUL characters, among others).
USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
PRINCIPAL = "iotmon.principal"  # the key of a session's principal in ``Session.attributes``


class PortInUse(OSError):
    """Something else listens on the embedded broker's port."""


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on (as asyncio's server binds: SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


# --- topics ------------------------------------------------------------------------------------
def topic_matches(topic: str, allowed: str) -> bool:
    """Whether a topic name matches the filter ``allowed`` (``+`` one level, ``#`` the rest)."""
    levels, pattern = topic.split("/"), allowed.split("/")
    for i, p in enumerate(pattern):
        if p == "#":
            return True
        if i >= len(levels) or (p != "+" and p != levels[i]):
            return False
    return len(levels) == len(pattern)


def filter_within(wanted: str, allowed: str) -> bool:
    """Whether every topic the filter ``wanted`` matches is matched by ``allowed``."""
    levels, pattern = wanted.split("/"), allowed.split("/")
    for i, p in enumerate(pattern):
        if p == "#":
            return True
        if i >= len(levels):
            return False
        w = levels[i]
        if w == "#" or (p != "+" and (w == "+" or w != p)):
            return False
    return len(levels) == len(pattern)


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a connected client is, and what it may do."""

    kind: str  # "device" or "bridge"
    username: str
    publish: tuple[str, ...] = ()  # topic filters it may publish to
    subscribe: tuple[str, ...] = ()  # filters its subscriptions must stay within
    password_hash: str | None = None  # a device: the record it was let in with

    def may_publish(self, topic: str) -> bool:
        return any(topic_matches(topic, f) for f in self.publish)

    def may_subscribe(self, wanted: str) -> bool:
        return any(filter_within(wanted, f) for f in self.subscribe)


@dataclass(slots=True)
class _Record:
    at: float
    rows: list[tuple[str, str, list[str]]]  # (device_id, password_hash, topics), live ones


@dataclass
class Guard:
    """Credentials and ACLs of the embedded broker: its internal principals (in memory) and the
    devices' records in PostgreSQL (``mqtt_credential``, read when ``database_url`` is set)."""

    root: str = ""
    ttl_s: float = TTL_S
    database_url: str | None = None
    internal: dict[str, str] = field(default_factory=dict)  # username -> password
    _records: dict[str, _Record] = field(default_factory=dict)
    _verified: dict[tuple[str, bytes], tuple[float, bool]] = field(default_factory=dict)
    _conn: Any = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def bridge(self) -> Principal:
        return Principal("bridge", BRIDGE_USER, subscribe=(f"{self.root}#",))

    async def authenticate(self, username: str | None, password: str | None) -> Principal | None:
        """The principal these credentials are, or None (refused)."""
        if not username or password is None:
            return None
        expected = self.internal.get(username)
        if expected is not None:
            if secrets.compare_digest(expected.encode(), password.encode("utf-8", "replace")):
                return self.bridge() if username == BRIDGE_USER else None
            return None
        if not USERNAME.match(username) or self.database_url is None:
            return None
        for _device, password_hash, topics in await self.records(username):
            if await self._verify(password, password_hash):
                topics_t = tuple(topics)
                return Principal("device", username, topics_t, topics_t, password_hash)
        return None

    async def records(self, username: str) -> list[tuple[str, str, list[str]]]:
        """The live credential records of ``username`` (cached ``ttl_s``)."""
        now = time.monotonic()
        cached = self._records.get(username)
        if cached is not None and now - cached.at < self.ttl_s:
            return cached.rows
        rows = await self._query(
            "SELECT username, device_id, password_hash, topics FROM mqtt_credential"
            " WHERE username = ANY(%s) AND revoked_at IS NULL",
            [username],
        )
        found = [(d, h, t) for _, d, h, t in rows]
        if len(self._records) >= MAX_CACHED:
            self._records.clear()
        self._records[username] = _Record(now, found)
        return found

    async def live_hashes(self, usernames: list[str]) -> dict[str, set[str]]:
        """The password hashes of the live records of ``usernames`` (not cached)."""
        out: dict[str, set[str]] = {u: set() for u in usernames}
        for username, _, password_hash, _ in await self._query(
            "SELECT username, device_id, password_hash, topics FROM mqtt_credential"
            " WHERE username = ANY(%s) AND revoked_at IS NULL",
            usernames,
        ):
            out[username].add(password_hash)
        return out

    async def _query(self, sql: str, usernames: list[str]) -> list[Any]:
        import psycopg

        assert self.database_url is not None
        async with self._lock:  # one connection, one query at a time
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = await psycopg.AsyncConnection.connect(
                            self.database_url,
                            autocommit=True,
                            connect_timeout=5,
                            application_name="iotmon-mqtt-auth",
                        )
                    cur = await self._conn.execute(sql, (usernames,))
                    rows: list[Any] = await cur.fetchall()
                    return rows
                except psycopg.OperationalError:
                    await self._drop_connection()
                    if attempt == 2:
                        raise
        raise AssertionError("unreachable")

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()

    async def _verify(self, password: str, password_hash: str) -> bool:
        """PBKDF2 in a worker thread (not on the broker's loop), its answer cached ``ttl_s``
        per (hash, password digest): a connect storm with one password computes it once."""
        key = (password_hash, hashlib.sha256(password.encode("utf-8", "replace")).digest())
        now = time.monotonic()
        hit = self._verified.get(key)
        if hit is not None and now - hit[0] < self.ttl_s:
            return hit[1]
        ok = await asyncio.to_thread(verify_password, password, password_hash)
        if len(self._verified) >= MAX_CACHED:
            self._verified.clear()
        self._verified[key] = (now, ok)
        return ok

    def forget(self, usernames: list[str]) -> None:
        for u in usernames:
            self._records.pop(u, None)

    async def close(self) -> None:
        async with self._lock:
            await self._drop_connection()


def principal_of(session: Any) -> Principal | None:
    if session is None:
        return None
    p = session.attributes.get(PRINCIPAL)
    return p if isinstance(p, Principal) else None


# Each broker's Guard, by key: amqtt builds its plugins from a configuration of plain values.
_GUARDS: dict[str, Guard] = {}


class IotmonAuthPlugin(BaseAuthPlugin):  # type: ignore[misc]
    """Lets in the internal principals and the devices with live credentials; nobody else
    (anonymous clients included). The principal is kept in the session's attributes."""

    @dataclass
    class Config:
        guard: str = ""

    async def authenticate(self, *, session: Any) -> bool:
        guard = _GUARDS.get(self.config.guard)
        principal: Principal | None = None
        if guard is not None:
            try:
                principal = await guard.authenticate(session.username, session.password)
            except Exception as exc:  # PostgreSQL away: refuse, say why, keep serving
                logger.warning("mqtt credentials could not be checked", error=str(exc))
        if principal and session.will_flag and not principal.may_publish(session.will_topic or ""):
            principal = None  # a will on a topic it may not publish to
        session.attributes[PRINCIPAL] = principal
        return principal is not None


class IotmonTopicPlugin(BaseTopicPlugin):  # type: ignore[misc]
    """A device publishes and subscribes on its own topics only; the bridge subscribes under
    the topic root. A publish that is refused is acknowledged and dropped (amqtt, MQTT 3.1.1);
    a subscription that is refused gets 0x80 in the SUBACK."""

    @dataclass
    class Config:
        pass

    async def topic_filtering(
        self, *, session: Any = None, topic: str | None = None, action: Any = None
    ) -> bool:
        principal = principal_of(session)
        if principal is None or not topic:
            return False
        if action == Action.PUBLISH:
            return principal.may_publish(topic)
        if action == Action.SUBSCRIBE:
            return principal.may_subscribe(topic)
        return bool(action == Action.RECEIVE)  # what it subscribed to (checked then)


class _GuardedBroker(Broker):  # type: ignore[misc]
    """amqtt's Broker, authenticating a CONNECT before it touches its session table.

    amqtt 0.12 deletes the session of a clean-session CONNECT's client id (its subscriptions
    with it), or hands a persistent one the new username, and takes over a connected client
    with that id, all before it asks the authentication plugins: a client that is then refused
    would have disconnected the bridge, or wiped its subscription. This checks first, and then
    does what amqtt does (``Broker._initialize_client_session``, amqtt 0.12.1)."""

    async def _initialize_client_session(
        self, reader: Any, writer: Any, remote_address: str, remote_port: int
    ) -> tuple[Any, Any]:
        where = f"{remote_address}:{remote_port}"
        try:
            handler, client_session = await BrokerProtocolHandler.init_from_connect(
                reader, writer, self.plugins_manager
            )
        except AMQTTError as exc:
            self.logger.warning(f"{where}: can't read first packet as CONNECT: {exc}")
            raise AMQTTError(exc) from exc
        except MQTTError as exc:
            self.logger.warning(f"invalid connection from {where}")
            await writer.close()
            raise MQTTError(exc) from exc
        except NoDataError as exc:
            raise AMQTTError(exc) from exc

        if not await self._authenticate(client_session, None):
            await ConnackPacket.build(0, NOT_AUTHORIZED).to_stream(writer)
            await writer.close()
            raise MQTTError(f"{where}: not authorized (username {client_session.username!r})")

        if client_session.clean_session:
            if client_session.client_id:
                await self._delete_session(client_session.client_id)
            else:
                client_session.client_id = gen_client_id()
            client_session.parent = 0
        elif client_session.client_id in self._sessions:
            existing, _ = self._sessions[client_session.client_id]
            for attr in RENEWED:
                setattr(existing, attr, getattr(client_session, attr))
            existing.attributes[PRINCIPAL] = client_session.attributes.get(PRINCIPAL)
            client_session = existing
            client_session.parent = 1
        else:
            client_session.parent = 0

        delay = self.config.get("timeout-disconnect-delay", 0)
        if client_session.keep_alive > 0 and isinstance(delay, int):
            client_session.keep_alive += delay
        return handler, client_session


# What a persistent session takes from the CONNECT that resumes it (as amqtt does).
RENEWED = (
    "will_flag",
    "will_message",
    "will_topic",
    "will_qos",
    "keep_alive",
    "username",
    "password",
)


class EmbeddedBroker:
    def __init__(
        self,
        port: int = 1883,
        host: str = HOST,
        max_connections: int = 10_000,
        *,
        root: str = "",
        ttl_s: float = TTL_S,
        database_url: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.max_connections = max_connections
        # The bridge's password: made here, kept in memory, handed over in client_url().
        self.guard = Guard(
            root=root,
            ttl_s=ttl_s,
            database_url=database_url,
            internal={BRIDGE_USER: secrets.token_urlsafe(24)},
        )
        self._key = secrets.token_hex(8)
        self._broker: Any = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """The broker's address (no credentials: what the banner shows)."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        """What ``IOTMON_MQTT_ADMIN_URL`` is in the process: provisioning records only."""
        from iotmon.mqtt.provisioning import embedded_admin_url

        return embedded_admin_url(self.host, self.port)

    def client_url(self, username: str = BRIDGE_USER) -> str:
        """The URL an internal principal connects with (its password in it)."""
        password = self.guard.internal[username]
        return (
            f"mqtt://{quote(username, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}"
        )

    def use_database(self, url: str | None) -> None:
        """Where the devices' credentials are (known once the services are up); until it is
        set, only the internal principals are let in."""
        self.guard.database_url = url

    async def start(self) -> None:
        """Listen; raises ``PortInUse`` when the port is taken."""
        # amqtt logs every connection and packet at INFO/DEBUG; keep its warnings only.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if not port_free(self.host, self.port):
            raise PortInUse(errno.EADDRINUSE, f"{self.host}:{self.port} is already in use")
        _GUARDS[self._key] = self.guard
        config = {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": f"{self.host}:{self.port}",
                    "max_connections": self.max_connections,
                }
            },
            # Our two plugins only: no anonymous access, no $SYS publisher, no packet logging.
            "plugins": {
                f"{__name__}.IotmonAuthPlugin": {"guard": self._key},
                f"{__name__}.IotmonTopicPlugin": {},
            },
        }
        broker = _GuardedBroker(config)
        try:
            await broker.start()
        except BrokerError as exc:
            _GUARDS.pop(self._key, None)
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise PortInUse(
                    errno.EADDRINUSE, f"{self.host}:{self.port} is already in use"
                ) from exc
            raise
        self._broker = broker
        self._sweeper = asyncio.create_task(self._sweep(), name="mqtt-auth-sweep")
        logger.info("embedded MQTT broker listening", address=f"{self.host}:{self.port}")

    async def _sweep(self) -> None:
        """Every ``ttl_s``: close the sessions of devices whose credentials were revoked or
        replaced since they connected."""
        while True:
            await asyncio.sleep(self.guard.ttl_s)
            try:
                await self.disconnect_revoked()
            except Exception as exc:  # PostgreSQL away: try again next time
                logger.warning("mqtt credentials could not be rechecked", error=str(exc))

    async def disconnect_revoked(self) -> list[str]:
        """Close the sessions whose credentials are no longer live; their client ids."""
        if self._broker is None or self.guard.database_url is None:
            return []
        connected: list[tuple[str, Principal, Any]] = []
        for client_id, (session, handler) in list(self._broker.sessions.items()):
            p = principal_of(session)
            if p is not None and p.kind == "device" and session.transitions.is_connected():
                connected.append((client_id, p, handler))
        if not connected:
            return []
        usernames = sorted({p.username for _, p, _ in connected})
        live = await self.guard.live_hashes(usernames)
        gone = [(c, p, h) for c, p, h in connected if p.password_hash not in live[p.username]]
        self.guard.forget([p.username for _, p, _ in gone])
        for client_id, p, handler in gone:
            logger.info(
                "mqtt session closed: credentials revoked", client=client_id, user=p.username
            )
            with contextlib.suppress(Exception):
                await handler.handle_connection_closed()
        return [c for c, _, _ in gone]

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()
        await self.guard.close()
        _GUARDS.pop(self._key, None)

"""The Socket.IO service (DESIGN.md 4.8): python-socketio over ASGI, rooms shared by every web
process through Redis (``AsyncRedisManager``), a token checked on connect, replay of missed
events on subscribe.

Rooms: ``device:<id>``, ``alerts``, ``system``. Client events: ``subscribe-device``,
``unsubscribe-device``, ``subscribe-alerts``, ``unsubscribe-alerts``, ``subscribe-system``,
``unsubscribe-system``, ``ping``. Server events come from the roles (sensor-data, system-status
from processing; alert-*, device-status from alerts) plus ``connection-status`` and ``error``
from here.

Replay: a client connects with ``auth = {"token": ..., "lastEventId": ...}`` (or passes
``lastEventId`` with a subscribe); each room it joins then sends it that room's buffered
events after that id, then the live ones, each once and in order (the room's live events are
held back from that client while its replay goes out). Ids grow system-wide, so a client keeps
one number: the highest ``eventId`` it has seen. Across rooms the order is per room: a client
that rejoins two rooms gets the first's replay, then the second's.

Storms and abuse: every Redis read or write of a handler goes through one bounded, blocking
pool shared by all connections (a handler waits for a connection, never fails for want of
one), and the reads every connect makes (``live:seq``) and the writes every subscription makes
(``live:watched``) are coalesced: one round trip for all that arrive together
(realtime/coalesce.py). Whatever fails in a handler is answered: a connect with a
``connect_error`` whose ``details.retry`` is true (the client tries again), an event with an
ack ``{"ok": false, "error"}``; never silence, never a traceback. Payloads are limited
(``max_payload_bytes``), sessions that never send CONNECT are closed, replays are limited per
connection, and a connection ends with its token or its user's sessions
(realtime/sessions.py, realtime/protocol.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import engineio  # type: ignore[import-untyped]
import jwt
import orjson
import redis.asyncio as aioredis
import socketio
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from iotmon import logging as log
from iotmon.metrics import SOCKETIO_CLIENTS, SOCKETIO_DELIVERY
from iotmon.readings.models import DEVICE_ID
from iotmon.realtime import replay
from iotmon.realtime.coalesce import Coalesced
from iotmon.realtime.protocol import GuardedServer, LenientJson, Throttled, error
from iotmon.realtime.publish import WATCHED_KEY, channel_for, db_of
from iotmon.realtime.sessions import SocketSessions, listen_revocations
from iotmon.timefmt import iso_utc
from iotmon.users.models import AuthError, Principal
from iotmon.web.auth import bearer

logger = log.get(__name__)

WATCH_REFRESH_S = 30.0
REDIS_CONNECTIONS = 16  # the service's Redis connections, shared by every client
REDIS_WAIT_S = 5.0  # a handler waits this long for one; then the client is told to retry
REDIS_TIMEOUT_S = 5.0

Authenticate = Callable[[str | None], Principal]  # raises AuthError
DeviceExists = Callable[[str], Awaitable[bool]]
Current = Callable[[Principal], Awaitable[bool]]  # is the token's session still current?
Handler = Callable[..., Awaitable[Any]]


class LiveManager(socketio.AsyncRedisManager):  # type: ignore[misc]
    """``AsyncRedisManager`` that drops an event at once when no client of this process is in
    its room: the stock manager encodes every event before it looks for recipients, which at
    10,000 devices costs a core per web process for events nobody here will receive.

    It also holds a room's live events back from a client while that client is sent the
    room's replay (``hold``, ``take``, ``release``), so it gets what it missed before what is
    new."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (namespace, room) -> sid -> the room's messages held back from that client
        self._held: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}

    async def stop(self) -> None:
        """Stop listening to Redis (python-socketio has no way to: its listener task would
        outlive the web role and retry against a Redis already stopped at shutdown)."""
        task = getattr(self, "thread", None)
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.thread = None
        for closing in (getattr(self, "pubsub", None), getattr(self, "redis", None)):
            if closing is not None:
                with contextlib.suppress(Exception):
                    await closing.aclose()
        self.pubsub = self.redis = None

    async def _handle_emit(self, message: dict[str, Any]) -> None:
        room = message.get("room")
        if room is not None:
            namespace = message.get("namespace") or "/"
            members = self.rooms.get(namespace, {}).get(room)
            if not members:
                return
            held = self._held.get((namespace, room)) if self._held else None
            if held:
                skip = [sid for sid in held if sid in members]
                for sid in skip:
                    held[sid].append(message)
                if len(skip) == len(members):
                    return
                if skip:
                    before = message.get("skip_sid")
                    before = before if isinstance(before, list) else [before] if before else []
                    message = {**message, "skip_sid": before + skip}
            if not message.get("callback") and not message.get("binary"):
                await self._fan_out(message, namespace, room)
                return
        await super()._handle_emit(message)

    async def _fan_out(self, message: dict[str, Any], namespace: str, room: str) -> None:
        """Deliver a room's event to this process's clients: encoded once, then put on each
        client's send queue in one pass. The stock path starts a task per recipient (1,000
        tasks per event for a room of 1,000), which is most of a fan-out's time."""
        pkt = self.server.packet_class(
            socketio.packet.EVENT, namespace=namespace, data=[message["event"], *message["data"]]
        )
        encoded = pkt.encode()
        frames = [
            engineio.packet.Packet(engineio.packet.MESSAGE, e)
            for e in (encoded if isinstance(encoded, list) else [encoded])
        ]
        skip = message.get("skip_sid")
        skipped = set(skip if isinstance(skip, list) else [skip] if skip else [])
        for sid, eio_sid in list(self.get_participants(namespace, room)):
            if sid in skipped:
                continue
            try:
                sock = self.server.eio._get_socket(eio_sid)
            except KeyError:  # gone meanwhile
                continue
            for frame in frames:
                await sock.send(frame)
        _delivered(message)

    def local_rooms(self, namespace: str = "/") -> list[str]:
        return [r for r, members in self.rooms.get(namespace, {}).items() if r and members]

    def hold(self, sid: str, room: str, namespace: str = "/") -> None:
        self._held.setdefault((namespace, room), {}).setdefault(sid, [])

    def take(self, sid: str, room: str, namespace: str = "/") -> list[dict[str, Any]]:
        """The messages held for ``sid`` so far (it stays held)."""
        held = self._held.get((namespace, room))
        if not held or not held.get(sid):
            return []
        taken, held[sid] = held[sid], []
        return taken

    def release(self, sid: str, room: str, namespace: str = "/") -> None:
        held = self._held.get((namespace, room))
        if held is not None:
            held.pop(sid, None)
            if not held:
                del self._held[(namespace, room)]

    async def deliver(self, message: dict[str, Any], sid: str) -> None:
        """A held message, to that one client."""
        await super()._handle_emit({**message, "room": sid, "skip_sid": None})


class LiveService:
    def __init__(
        self,
        redis_url: str,
        *,
        authenticate: Authenticate,
        device_exists: DeviceExists,
        current: Current | None = None,
        cors_origins: list[str] | str = "*",
        watch_grace_s: float = 300.0,
        channel: str | None = None,
        max_payload_bytes: int = 64 << 10,
        connect_timeout_s: float = 10.0,
        replays_per_minute: int = 30,
    ) -> None:
        self.redis_url = redis_url
        # One bounded pool for every handler: a storm waits for a connection (at most
        # REDIS_WAIT_S, then the client is told to retry) instead of failing for want of one.
        self.redis = aioredis.Redis(
            connection_pool=aioredis.BlockingConnectionPool.from_url(
                redis_url,
                max_connections=REDIS_CONNECTIONS,
                timeout=REDIS_WAIT_S,
                socket_timeout=REDIS_TIMEOUT_S,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                # One immediate retry (a connection Redis closed), not redis-py's default of
                # three with up to 10 s back-off each: the client is told to retry instead.
                retry=Retry(NoBackoff(), 1),
            )
        )
        # The channel of this Redis database (the one the roles publish on): Redis pub/sub is
        # server-wide, and a deployment in another database must not reach these clients.
        channel = channel_for(db_of(self.redis)) if channel is None else channel
        self.manager = LiveManager(redis_url, channel=channel, json=LenientJson)
        self.sio = GuardedServer(
            async_mode="asgi",
            client_manager=self.manager,
            json=LenientJson,
            cors_allowed_origins=cors_origins,
            max_http_buffer_size=max_payload_bytes,
            connect_timeout_s=connect_timeout_s,
            on_bad_packet=self._bad_packet,
        )
        self.authenticate = authenticate
        self.device_exists = device_exists
        self.current = current
        self.watch_grace_s = watch_grace_s
        self.app = socketio.ASGIApp(self.sio, socketio_path="socket.io")
        self.sessions = SocketSessions(self._end, replays_per_minute)
        me = weakref.ref(self)
        SOCKETIO_CLIENTS.set_function(lambda: float(len(s.sessions)) if (s := me()) else 0.0)
        self.last_id: Coalesced[None, int] = Coalesced(lambda _: replay.last_id(self.redis))
        self.watch: Coalesced[str, None] = Coalesced(self._watch)
        self.log = Throttled()
        self._tasks: list[asyncio.Task[None]] = []
        self._revocations_heard = asyncio.Event()
        self._register()

    @property
    def connected(self) -> int:
        return len(self.sessions)

    # --- lifecycle ---
    async def start(self) -> None:
        # Listen to Redis now, not at the first client's connect (python-socketio's default):
        # otherwise a new process's first client could miss events published meanwhile.
        if not self.sio.manager_initialized:
            self.sio.manager_initialized = True
            self.manager.initialize()
        self._tasks = [
            asyncio.create_task(self._keep_watching()),
            asyncio.create_task(
                listen_revocations(
                    self.redis_url, self._revoked, self._revocations_heard, self.log.warn
                )
            ),
        ]
        with contextlib.suppress(TimeoutError):  # Redis down: it keeps trying meanwhile
            await asyncio.wait_for(self._revocations_heard.wait(), REDIS_TIMEOUT_S)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.manager.stop()
        await self.redis.aclose()

    async def _keep_watching(self) -> None:
        """Keep this process's device rooms in ``live:watched`` (processing publishes those)."""
        while True:
            await asyncio.sleep(WATCH_REFRESH_S)
            rooms = [r for r in self.manager.local_rooms() if r.startswith("device:")]
            if rooms:
                with contextlib.suppress(Exception):
                    until = time.time() + WATCH_REFRESH_S + self.watch_grace_s
                    await self.redis.zadd(WATCHED_KEY, dict.fromkeys(rooms, until))

    async def _watch(self, rooms: set[str]) -> None:
        until = time.time() + WATCH_REFRESH_S + self.watch_grace_s
        await self.redis.zadd(WATCHED_KEY, dict.fromkeys(rooms, until))

    # --- events ---
    def _register(self) -> None:
        on = self.sio.on
        on("connect", handler=self.on_connect)
        on("disconnect", handler=self.on_disconnect)
        events: dict[str, Handler] = {
            "subscribe-device": self.subscribe_device,
            "unsubscribe-device": self.unsubscribe_device,
            "subscribe-alerts": self.subscribe_alerts,
            "unsubscribe-alerts": self.unsubscribe_alerts,
            "subscribe-system": self.subscribe_system,
            "unsubscribe-system": self.unsubscribe_system,
            "refresh-token": self.refresh_token,
            "ping": self.ping,
        }
        for event, handler in events.items():
            on(event, handler=self._answering(event, handler))
        on("*", handler=self.unknown)

    def _answering(self, event: str, handler: Handler) -> Handler:
        """``handler(sid, data)`` for any number of arguments the client sent (the first is
        the data); whatever it raises is answered with an error ack, not a traceback."""

        async def answer(sid: str, *args: Any) -> Any:
            try:
                return await handler(sid, args[0] if args else None)
            except Exception as exc:
                self.log.warn(
                    f"event:{event}:{type(exc).__name__}",
                    "Socket.IO event failed; the client was told to retry",
                    socket_event=event,
                    error=f"{type(exc).__name__}: {exc}"[:300],
                )
                return await self._refuse(
                    sid, "unavailable", f"{event} failed: try again", None, retry=True
                )

        return answer

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        try:
            await self._connect(sid, environ, auth)
        except socketio.exceptions.ConnectionRefusedError:
            raise
        except Exception as exc:  # Redis, the database: the client must retry, not hang
            self.log.warn(
                f"connect:{type(exc).__name__}",
                "Socket.IO connect failed; the client was told to retry",
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            message = "the server is busy: try again"
            raise socketio.exceptions.ConnectionRefusedError(
                message, error("unavailable", message, retry=True)
            ) from None

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any) -> None:
        auth = auth if isinstance(auth, dict) else {}
        token = auth.get("token")
        token = token if isinstance(token, str) else None
        token = token or bearer(environ.get("HTTP_AUTHORIZATION"))
        principal, exp = await self._verify(token)
        last = await self.last_id(None)
        await self.sio.save_session(
            sid,
            {
                "user": principal.username,
                "role": principal.role,
                "lastEventId": replay.parse_event_id(auth.get("lastEventId")),
            },
        )
        self.sessions.add(sid, principal.username, principal.role, exp)
        status = {
            "status": "connected",
            "sid": sid,
            "user": principal.username,
            "role": principal.role,
            "lastEventId": str(last),
            "expiresAt": iso_utc(exp),
            "timestamp": iso_utc(),
        }
        # After the CONNECT packet (python-socketio sends it when this handler returns,
        # without yielding first): a task started now runs after that.
        self.sio.spawn(self._send(sid, "connection-status", status))

    async def _verify(self, token: str | None) -> tuple[Principal, float]:
        """The token's user and expiry; a refusal (unauthorized) when it will not do."""
        try:
            if token is not None and (not token.isascii() or len(token) > 8192):
                raise AuthError("the token is not valid")  # a JWT is short ASCII
            principal = self.authenticate(token)
            exp = float(jwt.decode(token or "", options={"verify_signature": False})["exp"])
            if self.current is not None and not await self.current(principal):
                raise AuthError("the session has ended: log in again")
        except AuthError as exc:
            # Two arguments: the client's connect_error gets {"message", "data"} (one would
            # be sent as {"message": str(the dict)}, a Python repr).
            raise socketio.exceptions.ConnectionRefusedError(
                str(exc), error("unauthorized", str(exc))
            ) from None
        return principal, exp

    async def on_disconnect(self, sid: str, *_: Any) -> None:
        self.sessions.remove(sid)

    async def _send(self, sid: str, event: str, data: Any) -> None:
        """An event to a client of this process (not through Redis: it is here)."""
        try:
            await self.sio.emit(event, data, to=sid, ignore_queue=True)
        except Exception as exc:  # gone meanwhile
            self.log.warn("send", "could not send to a client", error=f"{exc!r}"[:200])

    def _end(self, sid: str, code: str, message: str) -> None:
        """End a connection's session: an ``error`` event saying why, then disconnected."""
        self.sessions.remove(sid)

        async def end() -> None:
            await self._send(sid, "error", error(code, message))
            with contextlib.suppress(Exception):
                await self.sio.disconnect(sid, ignore_queue=True)

        self.sio.spawn(end())

    def _revoked(self, user: str) -> None:
        ended = self.sessions.revoked(user)
        if ended:
            logger.info("sessions revoked", user=user, sockets=ended)

    async def _bad_packet(self, eio_sid: str, data: Any, why: str) -> None:
        self.log.warn(
            f"bad-packet:{why.split(':', 1)[0][:40]}",
            "malformed Socket.IO packet",
            why=why,
            packet=repr(data)[:120],
        )
        sid = self.sio.manager.sid_from_eio_sid(eio_sid, "/")
        if sid is not None and sid in self.sessions:
            await self._send(sid, "error", error("bad_packet", why))
        elif isinstance(data, str) and data.startswith("0"):  # a CONNECT it could not read
            refusal = {"message": why, "data": error("bad_packet", why)}
            packet = self.sio.packet_class(socketio.packet.CONNECT_ERROR, data=refusal)
            with contextlib.suppress(Exception):  # it may send a good CONNECT next
                await self.sio._send_packet(eio_sid, packet)
        else:  # before CONNECT: nothing to talk to
            with contextlib.suppress(Exception):
                await self.sio.drop(eio_sid)

    async def refresh_token(self, sid: str, data: Any) -> dict[str, Any]:
        token = data.get("token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not token:
            return await self._refuse(sid, "invalid_token", "token is required", data)
        try:
            principal, exp = await self._verify(token)
        except socketio.exceptions.ConnectionRefusedError as exc:
            return await self._refuse(sid, "unauthorized", str(exc), None)
        why = self.sessions.refresh(sid, principal.username, principal.role, exp)
        if why is not None:
            return await self._refuse(sid, "unauthorized", why, None)
        session = await self.sio.get_session(sid)
        session["role"] = principal.role
        return {"ok": True, "expiresAt": iso_utc(exp)}

    async def subscribe_device(self, sid: str, data: Any) -> dict[str, Any]:
        device = data.get("deviceId") if isinstance(data, dict) else data
        if not isinstance(device, str) or not DEVICE_ID.match(device):
            return await self._refuse(sid, "invalid_device_id", "deviceId is required", data)
        if not await self.device_exists(device):
            return await self._refuse(
                sid, "unknown_device", f"device {device!r} does not exist", data
            )
        room = f"device:{device}"
        await self.watch(room)
        return await self._join(sid, room, data)

    async def unsubscribe_device(self, sid: str, data: Any) -> dict[str, Any]:
        device = data.get("deviceId") if isinstance(data, dict) else data
        if not isinstance(device, str) or not DEVICE_ID.match(device):
            return await self._refuse(sid, "invalid_device_id", "deviceId is required", data)
        await self.sio.leave_room(sid, f"device:{device}")
        return {"ok": True, "room": f"device:{device}"}

    async def subscribe_alerts(self, sid: str, data: Any) -> dict[str, Any]:
        return await self._join(sid, "alerts", data)

    async def unsubscribe_alerts(self, sid: str, data: Any) -> dict[str, Any]:
        await self.sio.leave_room(sid, "alerts")
        return {"ok": True, "room": "alerts"}

    async def subscribe_system(self, sid: str, data: Any) -> dict[str, Any]:
        return await self._join(sid, "system", data)

    async def unsubscribe_system(self, sid: str, data: Any) -> dict[str, Any]:
        await self.sio.leave_room(sid, "system")
        return {"ok": True, "room": "system"}

    async def ping(self, sid: str, data: Any) -> dict[str, Any]:
        return {"pong": True, "timestamp": iso_utc()}

    async def unknown(self, event: Any, sid: str, *_: Any) -> dict[str, Any]:
        name = event[:64] if isinstance(event, str) else None
        return await self._refuse(sid, "unknown_event", f"unknown event {name!r}", None)

    async def _refuse(
        self, sid: str, code: str, message: str, data: Any, **details: Any
    ) -> dict[str, Any]:
        problem = error(code, message, received=_echo(data), **details)
        await self._send(sid, "error", problem)
        return {"ok": False, "error": problem}

    async def _join(self, sid: str, room: str, data: Any) -> dict[str, Any]:
        session = await self.sio.get_session(sid)
        after = replay.parse_event_id(data.get("lastEventId")) if isinstance(data, dict) else None
        if after is None:
            after = session.get("lastEventId")
        if after is None:
            await self.sio.enter_room(sid, room)
            return {"ok": True, "room": room, "replayed": 0}
        wait_s = self.sessions.replay_allowed(sid)
        if wait_s is not None:
            limit = self.sessions.replays_per_minute
            return await self._refuse(
                sid,
                "rate_limited",
                f"at most {limit} replays a minute per connection: subscribe without"
                f" lastEventId, or try again in {wait_s:.0f} s",
                None,
                retryAfterS=round(wait_s, 1),
            )
        # What it missed, then what is new, each once: the room's live events are held back
        # from this client until its replay is out. Ids grow: a held event is new when its id
        # is above the last one sent (below, it was in the replay too).
        replayed, last = 0, after
        self.manager.hold(sid, room)
        try:
            await self.sio.enter_room(sid, room)
            for event, payload in await replay.missed(self.redis, room, after):
                await self.sio.emit(event, payload, to=sid, ignore_queue=True)  # sid is here
                replayed += 1
                last = max(last, _event_id(payload) or last)
            while held := self.manager.take(sid, room):
                for message in held:
                    payload = (message.get("data") or [None])[0]
                    event_id = _event_id(payload)
                    if event_id is not None and event_id <= last:
                        continue
                    await self.manager.deliver(message, sid)
                    last = max(last, event_id or last)
        finally:
            self.manager.release(sid, room)  # no await since the last empty take
        return {"ok": True, "room": room, "replayed": replayed}


def _echo(data: Any) -> Any:
    """What a refused request carried, as far as it is worth sending back: short strings
    (lone surrogates replaced) and small objects; None otherwise."""
    if isinstance(data, str):
        return data[:100].encode("utf-8", "replace").decode()
    if isinstance(data, dict):
        try:
            encoded = orjson.dumps(data)
        except (orjson.JSONEncodeError, TypeError):
            return None
        return data if len(encoded) <= 512 else None
    return None


def _delivered(message: dict[str, Any]) -> None:
    """The event's delivery latency, from the timestamp it carries (once per event fanned out,
    whatever the number of recipients)."""
    data = message.get("data")
    payload = data[0] if isinstance(data, list) and data else None
    stamp = payload.get("timestamp") if isinstance(payload, dict) else None
    if not isinstance(stamp, str):
        return
    try:
        at = datetime.fromisoformat(stamp).timestamp()
    except ValueError:
        return
    SOCKETIO_DELIVERY.labels(str(message.get("event"))).observe(max(time.time() - at, 0.0))


def _event_id(payload: Any) -> int | None:
    return replay.parse_event_id(payload.get("eventId")) if isinstance(payload, dict) else None

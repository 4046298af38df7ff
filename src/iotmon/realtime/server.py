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
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import engineio  # type: ignore[import-untyped]
import orjson
import redis.asyncio as aioredis
import socketio

from iotmon import logging as log
from iotmon.readings.models import DEVICE_ID
from iotmon.realtime import replay
from iotmon.realtime.publish import WATCHED_KEY, channel_for, db_of
from iotmon.timefmt import iso_utc
from iotmon.web.auth import AuthError, Principal, bearer

logger = log.get(__name__)

WATCH_REFRESH_S = 30.0

Authenticate = Callable[[str | None], Principal]  # raises AuthError
DeviceExists = Callable[[str], Awaitable[bool]]


class _OrJson:
    """python-socketio's ``json`` hook: orjson, ~5x faster than the standard module."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        return orjson.dumps(obj).decode()

    @staticmethod
    def loads(s: str | bytes, **_: Any) -> Any:
        return orjson.loads(s)


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


def _error(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "details": details, "timestamp": iso_utc()}


class LiveService:
    def __init__(
        self,
        redis_url: str,
        *,
        authenticate: Authenticate,
        device_exists: DeviceExists,
        cors_origins: list[str] | str = "*",
        watch_grace_s: float = 300.0,
        channel: str | None = None,
    ) -> None:
        self.redis = aioredis.Redis.from_url(redis_url)
        # The channel of this Redis database (the one the roles publish on): Redis pub/sub is
        # server-wide, and a deployment in another database must not reach these clients.
        channel = channel_for(db_of(self.redis)) if channel is None else channel
        self.manager = LiveManager(redis_url, channel=channel, json=_OrJson)
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            client_manager=self.manager,
            json=_OrJson,
            cors_allowed_origins=cors_origins,
        )
        self.authenticate = authenticate
        self.device_exists = device_exists
        self.watch_grace_s = watch_grace_s
        self.app = socketio.ASGIApp(self.sio, socketio_path="socket.io")
        self._watch_task: asyncio.Task[None] | None = None
        self.connected = 0
        self._register()

    # --- lifecycle ---
    async def start(self) -> None:
        # Listen to Redis now, not at the first client's connect (python-socketio's default):
        # otherwise a new process's first client could miss events published meanwhile.
        if not self.sio.manager_initialized:
            self.sio.manager_initialized = True
            self.manager.initialize()
        self._watch_task = asyncio.create_task(self._keep_watching())

    async def close(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
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

    async def _watch(self, room: str) -> None:
        until = time.time() + WATCH_REFRESH_S + self.watch_grace_s
        await self.redis.zadd(WATCHED_KEY, {room: until})

    # --- events ---
    def _register(self) -> None:
        on = self.sio.on
        on("connect", handler=self.on_connect)
        on("disconnect", handler=self.on_disconnect)
        on("subscribe-device", handler=self.subscribe_device)
        on("unsubscribe-device", handler=self.unsubscribe_device)
        on("subscribe-alerts", handler=self.subscribe_alerts)
        on("unsubscribe-alerts", handler=self.unsubscribe_alerts)
        on("subscribe-system", handler=self.subscribe_system)
        on("unsubscribe-system", handler=self.unsubscribe_system)
        on("ping", handler=self.ping)
        on("*", handler=self.unknown)

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        auth = auth if isinstance(auth, dict) else {}
        token = auth.get("token") or bearer(environ.get("HTTP_AUTHORIZATION"))
        try:
            principal = self.authenticate(token)
        except AuthError as exc:
            # Two arguments: the client's connect_error gets {"message", "data"} (one would
            # be sent as {"message": str(the dict)}, a Python repr).
            raise socketio.exceptions.ConnectionRefusedError(
                str(exc), _error("unauthorized", str(exc))
            ) from None
        session = {
            "user": principal.username,
            "role": principal.role,
            "lastEventId": replay.parse_event_id(auth.get("lastEventId")),
        }
        await self.sio.save_session(sid, session)
        self.connected += 1
        await self.sio.emit(
            "connection-status",
            {
                "status": "connected",
                "sid": sid,
                "user": principal.username,
                "role": principal.role,
                "lastEventId": str(await replay.last_id(self.redis)),
                "timestamp": iso_utc(),
            },
            to=sid,
        )

    async def on_disconnect(self, sid: str, *_: Any) -> None:
        self.connected -= 1

    async def subscribe_device(self, sid: str, data: Any = None) -> dict[str, Any]:
        device = data.get("deviceId") if isinstance(data, dict) else data
        if not isinstance(device, str) or not DEVICE_ID.match(device):
            return await self._refuse(sid, "invalid_device_id", "deviceId is required", data)
        if not await self.device_exists(device):
            return await self._refuse(
                sid, "unknown_device", f"device {device!r} does not exist", data
            )
        room = f"device:{device}"
        await self._watch(room)
        return await self._join(sid, room, data)

    async def unsubscribe_device(self, sid: str, data: Any = None) -> dict[str, Any]:
        device = data.get("deviceId") if isinstance(data, dict) else data
        if not isinstance(device, str):
            return await self._refuse(sid, "invalid_device_id", "deviceId is required", data)
        await self.sio.leave_room(sid, f"device:{device}")
        return {"ok": True, "room": f"device:{device}"}

    async def subscribe_alerts(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._join(sid, "alerts", data)

    async def unsubscribe_alerts(self, sid: str, data: Any = None) -> dict[str, Any]:
        await self.sio.leave_room(sid, "alerts")
        return {"ok": True, "room": "alerts"}

    async def subscribe_system(self, sid: str, data: Any = None) -> dict[str, Any]:
        return await self._join(sid, "system", data)

    async def unsubscribe_system(self, sid: str, data: Any = None) -> dict[str, Any]:
        await self.sio.leave_room(sid, "system")
        return {"ok": True, "room": "system"}

    async def ping(self, sid: str, data: Any = None) -> dict[str, Any]:
        return {"pong": True, "timestamp": iso_utc()}

    async def unknown(self, event: str, sid: str, data: Any = None) -> None:
        await self.sio.emit("error", _error("unknown_event", f"unknown event {event!r}"), to=sid)

    async def _refuse(self, sid: str, code: str, message: str, data: Any) -> dict[str, Any]:
        error = _error(code, message, received=data if isinstance(data, str | dict) else None)
        await self.sio.emit("error", error, to=sid)
        return {"ok": False, "error": error}

    async def _join(self, sid: str, room: str, data: Any) -> dict[str, Any]:
        session = await self.sio.get_session(sid)
        after = replay.parse_event_id(data.get("lastEventId")) if isinstance(data, dict) else None
        if after is None:
            after = session.get("lastEventId")
        if after is None:
            await self.sio.enter_room(sid, room)
            return {"ok": True, "room": room, "replayed": 0}
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


def _event_id(payload: Any) -> int | None:
    return replay.parse_event_id(payload.get("eventId")) if isinstance(payload, dict) else None

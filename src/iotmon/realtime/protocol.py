"""What the Socket.IO server does with what it cannot use: JSON it cannot read, packets it does
not understand, sessions that never say CONNECT. Whatever a client sends, it gets an answer
(an ack, an ``error`` event or a closed session), and the log gets at most one line per kind
of trouble every ``LOG_EVERY_S`` (never a traceback per frame: that is log flooding).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import socketio
from engineio.async_drivers import asgi as engineio_asgi  # type: ignore[import-untyped]

from iotmon import logging as log
from iotmon.timefmt import iso_utc

logger = log.get(__name__)

LOG_EVERY_S = 10.0


def error(code: str, message: str, **details: Any) -> dict[str, Any]:
    """The error envelope of every ``error`` event, refusal and failed ack."""
    return {"code": code, "message": message, "details": details, "timestamp": iso_utc()}


class Throttled:
    """A warning per key at most every ``every_s``, with how many were left out meanwhile."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}

    def warn(self, key: str, message: str, **fields: Any) -> None:
        now = time.monotonic()
        at, skipped = self._last.get(key, (-1e18, 0))
        if now - at < self.every_s:
            self._last[key] = (at, skipped + 1)
            return
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = (now, 0)
        logger.warning(message, suppressed=skipped, **fields)

    @property
    def seen(self) -> list[str]:
        """The keys warned about (since the last clear)."""
        return list(self._last)


class _OneLine(logging.Filter):
    """For python-socketio's and python-engineio's loggers: what they log with a traceback
    (``logger.exception`` on a frame they could not handle) becomes one line, and each message
    at most once every ``LOG_EVERY_S``, with how many were left out."""

    def __init__(self, every_s: float = LOG_EVERY_S) -> None:
        super().__init__()
        self.every_s = every_s
        self._last: dict[str, tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)[:80]
        now = time.monotonic()
        at, skipped = self._last.get(key, (-1e18, 0))
        if now - at < self.every_s:
            self._last[key] = (at, skipped + 1)
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = (now, 0)
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"[:300]
            record.args = None
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        if skipped:
            record.msg = f"{record.getMessage()} ({skipped} more like it left out)"
            record.args = None
        return True


def quiet_logger(name: str) -> logging.Logger:
    """A logger for a library that narrates every packet at INFO and logs a traceback per
    malformed frame: warnings and up, one line each, throttled."""
    quiet = logging.getLogger(name)
    quiet.setLevel(logging.WARNING)
    if not any(isinstance(f, _OneLine) for f in quiet.filters):
        quiet.addFilter(_OneLine())
    return quiet


_frames = Throttled()


def _engineio_frame_ok(data: Any) -> bool:
    """Whether a websocket frame is an Engine.IO packet this server can take: text, a packet
    type 0-6 first (python-engineio indexes a table with it unchecked, or fails on an empty
    frame outside any handler, which drops the connection with a traceback). Binary frames
    are refused: no event here takes any."""
    return isinstance(data, str) and data[:1] in ("0", "1", "2", "3", "4", "5", "6")


class CheckedWebSocket(engineio_asgi.WebSocket):  # type: ignore[misc]
    """python-engineio's ASGI websocket; a frame that is not an Engine.IO packet ends the
    connection as if the client had closed it (one throttled log line, no traceback)."""

    async def wait(self) -> Any:
        data = await super().wait()
        if _engineio_frame_ok(data):
            return data
        _frames.warn("frame", "malformed Engine.IO frame; connection closed", frame=repr(data)[:80])
        return None  # python-engineio: the client closed the connection


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class LenientJson:
    """python-socketio's ``json`` hook: orjson (~5x faster than the standard module); what
    orjson refuses but a browser sends (lone surrogates, which JavaScript strings may hold and
    ``JSON.stringify`` writes as escapes) falls back to the standard module, strictly otherwise
    (no NaN, no infinities). A value that cannot be read is a ``ValueError``."""

    @staticmethod
    def dumps(obj: Any, **_: Any) -> str:
        try:
            return orjson.dumps(obj).decode()
        except orjson.JSONEncodeError:
            return json.dumps(obj, separators=(",", ":"), allow_nan=False)

    @staticmethod
    def loads(s: str | bytes, **_: Any) -> Any:
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError:
            pass
        try:
            return json.loads(s, parse_float=_finite, parse_constant=_no_constant)
        except RecursionError:
            raise ValueError("nested too deeply") from None


BadPacket = Callable[[str, Any, str], Awaitable[None]]  # (eio sid, data, why)


class GuardedServer(socketio.AsyncServer):  # type: ignore[misc]
    """``socketio.AsyncServer`` that answers malformed packets instead of raising (each raise
    was a logged traceback, and an event packet whose handler raised got no ack), refuses
    binary packets (no event here takes any; a binary packet announces attachments the server
    would wait for and keep), and closes an Engine.IO session that has not connected to a
    namespace within ``connect_timeout_s``."""

    def __init__(
        self, *args: Any, connect_timeout_s: float, on_bad_packet: BadPacket, **kwargs: Any
    ) -> None:
        kwargs.setdefault("logger", quiet_logger("socketio.server"))
        kwargs.setdefault("engineio_logger", quiet_logger("engineio.server"))
        super().__init__(*args, **kwargs)
        self.connect_timeout_s = connect_timeout_s
        self.on_bad_packet = on_bad_packet
        self._tasks: set[asyncio.Task[Any]] = set()
        # This server's websockets check each frame (a copy: the driver table is the module's).
        self.eio._async = {**self.eio._async, "websocket": CheckedWebSocket}

    def spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        if self.connect_timeout_s > 0:
            asyncio.get_running_loop().call_later(
                self.connect_timeout_s, self._check_connected, eio_sid
            )

    def _check_connected(self, eio_sid: str) -> None:
        if eio_sid in self.environ and self.manager.sid_from_eio_sid(eio_sid, "/") is None:
            self.spawn(self.drop(eio_sid))

    async def drop(self, eio_sid: str) -> None:
        """End an Engine.IO session at once. python-engineio's ``disconnect`` waits until the
        session's send queue is drained: a long-polling client that does not poll again (or
        is the one whose POST is being handled) would hang it for ever. And on a websocket it
        sends CLOSE but keeps reading until the client closes (or 45 s, ping_interval +
        ping_timeout): an empty queue entry makes its writer close the websocket now."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is None:
            return
        await socket.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
        self.eio.sockets.pop(eio_sid, None)
        if socket.upgraded:
            await socket.queue.put(None)

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        if not isinstance(data, str) or data[:1] in ("5", "6"):
            await self.on_bad_packet(eio_sid, data, "binary packets are not accepted")
            return
        try:
            await super()._handle_eio_message(eio_sid, data)
        except Exception as exc:  # a packet it could not decode or dispatch
            await self.on_bad_packet(eio_sid, data, f"{type(exc).__name__}: {exc}"[:200])

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        if not (isinstance(data, list) and data and isinstance(data[0], str)):
            why = "an event is a list that starts with its name"
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace or "/")
            if isinstance(id, int) and sid is not None:  # the client waits for an answer
                answer = {"ok": False, "error": error("bad_packet", why)}
                await self._send_packet(
                    eio_sid,
                    self.packet_class(
                        socketio.packet.ACK, namespace=namespace, id=id, data=[answer]
                    ),
                )
            await self.on_bad_packet(eio_sid, data, why)
            return
        await super()._handle_event(eio_sid, namespace, id, data)

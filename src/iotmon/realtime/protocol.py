"""What the Socket.IO server does with what it cannot use: JSON it cannot read, packets it does
not understand, sessions that never say CONNECT. Whatever a client sends, it gets an answer
(an ack, an ``error`` event or a closed session), and the log gets at most one line per kind
of trouble every ``LOG_EVERY_S`` (never a traceback per frame: that is log flooding).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import socketio

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
        super().__init__(*args, **kwargs)
        self.connect_timeout_s = connect_timeout_s
        self.on_bad_packet = on_bad_packet
        self._tasks: set[asyncio.Task[Any]] = set()

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
            self.spawn(self.eio.disconnect(eio_sid))

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

"""A lean MQTT subscriber for the bridge (MQTT 5 or 3.1.1, QoS 0/1, manual PUBACK).

paho parses one PUBLISH at a time (a few ``recv`` calls per packet, an MQTT 5 ``Properties``
object per message) and sends each PUBACK as its own write: at 20,000 messages a second that
was most of the bridge's time (py-spy: 44% in ``_handle_publish``). This client does only what
the bridge needs: one blocking ``recv`` of up to 256 KiB parsed into every whole packet it
holds (a list of messages handed over at once, stamped with one receive time), and the
PUBACKs of a batch written in one ``sendall``.

What it does not do: publish, QoS 2 (the bridge subscribes at QoS 1, so the broker never
sends it QoS 2), topic aliases (it announces none, so the broker uses none), TLS, AUTH
packets. A PUBACK is written only on the connection its PUBLISH came in on: after a
reconnect the broker redelivers what was not acknowledged (the session outlives the
connection), and a packet id of the old connection must not acknowledge a new message.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

CONNACK, PUBLISH, PUBACK, SUBACK, PINGRESP, DISCONNECT = 2, 3, 4, 9, 13, 14
RECV_BYTES = 262_144
_PUBACKS = [b"\x40\x02" + struct.pack("!H", pid) for pid in range(65_536)]
PINGREQ = b"\xc0\x00"
DISCONNECT_NORMAL = b"\xe0\x00"


class MqttError(Exception):
    """The broker refused or broke the protocol; ``code`` is its reason code, if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


# (topic, payload, qos, dup, packet id): topic and payload as the bytes on the wire
Message = tuple[bytes, bytes, int, bool, int]


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    username: str | None,
    password: str | None,
    keepalive_s: int,
    mqtt311: bool,
    session_expiry_s: int,
    receive_maximum: int,
) -> bytes:
    """CONNECT with clean start (3.1.1: clean session) off: the session outlives us."""
    flags = (0x80 if username is not None else 0) | (0x40 if password is not None else 0)
    var = _s(b"MQTT") + bytes([4 if mqtt311 else 5, flags]) + struct.pack("!H", keepalive_s)
    if not mqtt311:
        props = b"\x11" + struct.pack("!I", session_expiry_s)
        props += b"\x21" + struct.pack("!H", receive_maximum)
        var += varint(len(props)) + props
    payload = _s(client_id.encode())
    if username is not None:
        payload += _s(username.encode())
    if password is not None:
        payload += _s(password.encode())
    return _packet(0x10, var + payload)


def subscribe_packet(pid: int, filters: Iterable[str], *, mqtt311: bool) -> bytes:
    body = struct.pack("!H", pid) + (b"" if mqtt311 else b"\x00")
    for f in filters:
        body += _s(f.encode()) + b"\x01"  # QoS 1 (MQTT 5: no-local off, as $share requires)
    return _packet(0x82, body)


def pubacks(pids: Iterable[int]) -> bytes:
    table = _PUBACKS
    return b"".join([table[p] for p in pids])


def _skip_props(body: bytes, i: int) -> int:
    """The index past an MQTT 5 property block starting at ``i``."""
    length = shift = 0
    while True:
        b = body[i]
        i += 1
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            return i + length
        shift += 7
        if shift > 21:
            raise MqttError("malformed property length")


@dataclass(slots=True)
class Connack:
    session_present: bool


class Connection:
    """One connected, subscribed-to socket. ``messages(buffer)`` is run by one reader thread;
    ``ack`` and ``ping`` by another (they only write)."""

    def __init__(self, sock: socket.socket, *, mqtt311: bool) -> None:
        self.sock = sock
        self.mqtt311 = mqtt311
        self.closed = False
        self.last_sent = time.monotonic()
        self.last_received = self.last_sent
        self._write_lock = threading.Lock()
        self._rest = b""

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        connect: bytes,
        *,
        mqtt311: bool,
        timeout_s: float = 10.0,
    ) -> tuple[Connection, Connack]:
        sock = socket.create_connection((host, port), timeout=timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            conn = cls(sock, mqtt311=mqtt311)
            sock.sendall(connect)
            first, body = conn._read_one(timeout_s)
            if first >> 4 != CONNACK or len(body) < 2:
                raise MqttError(f"expected CONNACK, got packet type {first >> 4}")
            if body[1] != 0:
                raise MqttError(f"connection refused, reason code 0x{body[1]:02x}", body[1])
            return conn, Connack(bool(body[0] & 1))
        except BaseException:
            sock.close()
            raise

    def _read_one(self, timeout_s: float) -> tuple[int, bytes]:
        """One whole packet, blocking (only before the reader thread runs)."""
        deadline = time.monotonic() + timeout_s
        buf = self._rest
        while True:
            got = _split(buf, 0)
            if got is not None:
                first, start, end = got
                self._rest = buf[end:]
                return first, buf[start:end]
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = self.sock.recv(RECV_BYTES)
            if not chunk:
                raise MqttError("connection closed by the broker")
            buf += chunk

    def send(self, data: bytes) -> None:
        with self._write_lock:
            if self.closed:
                return
            self.sock.sendall(data)
            self.last_sent = time.monotonic()

    def ack(self, pids: list[int]) -> bool:
        """PUBACK these packet ids in order; False if this connection is gone (the broker
        will redeliver them to the session's next connection)."""
        if self.closed or not pids:
            return not self.closed
        try:
            for i in range(0, len(pids), 16_384):
                self.send(pubacks(pids[i : i + 16_384]))
        except OSError:
            self.close()
            return False
        return not self.closed

    def ping(self) -> None:
        self.send(PINGREQ)

    def close(self, *, graceful: bool = False) -> None:
        if graceful and not self.closed:
            with contextlib.suppress(OSError):
                self.send(DISCONNECT_NORMAL)
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def read_loop(
        self,
        on_messages: Callable[[Connection, list[Message], float], None],
        on_suback: Callable[[list[int]], None],
    ) -> str:
        """Read until the connection ends; hand over each ``recv``'s messages with the time
        they were received. Returns why it ended."""
        sock = self.sock
        sock.settimeout(None)
        buf = self._rest
        self._rest = b""
        v5 = not self.mqtt311
        try:
            while not self.closed:
                if buf:
                    chunk = sock.recv(RECV_BYTES)
                    if not chunk:
                        return "connection closed by the broker"
                    buf += chunk
                else:
                    buf = sock.recv(RECV_BYTES)
                    if not buf:
                        return "connection closed by the broker"
                now = time.time()
                self.last_received = time.monotonic()
                msgs: list[Message] = []
                pos, n = 0, len(buf)
                while pos < n:
                    got = _split(buf, pos)
                    if got is None:
                        break
                    first, start, end = got
                    pos = end
                    kind = first >> 4
                    if kind == PUBLISH:
                        qos = (first >> 1) & 3
                        tlen = (buf[start] << 8) | buf[start + 1]
                        i = start + 2 + tlen
                        topic = buf[start + 2 : i]
                        pid = 0
                        if qos:
                            pid = (buf[i] << 8) | buf[i + 1]
                            i += 2
                        if v5:
                            i = _skip_props(buf, i)
                        if i > end:
                            raise MqttError("malformed PUBLISH")
                        msgs.append((topic, buf[i:end], qos, bool(first & 8), pid))
                    elif kind == SUBACK:
                        body = buf[start:end]
                        i = 2 if self.mqtt311 else _skip_props(body, 2)
                        on_suback(list(body[i:]))
                    elif kind == DISCONNECT:
                        code = buf[start] if end > start else 0
                        return f"the broker disconnected us, reason code 0x{code:02x}"
                    # PINGRESP, PUBACK and anything else: nothing to do
                buf = buf[pos:]
                if msgs:
                    on_messages(self, msgs, now)
        except (OSError, MqttError, IndexError) as exc:
            if self.closed:
                return "closed"
            return f"{type(exc).__name__}: {exc}"
        finally:
            self.closed = True
        return "closed"


def _split(buf: bytes, pos: int) -> tuple[int, int, int] | None:
    """(first byte, body start, body end) of the packet at ``pos``, None if incomplete."""
    n = len(buf)
    if pos + 2 > n:
        return None
    length = shift = 0
    i = pos + 1
    while True:
        if i >= n:
            return None
        b = buf[i]
        i += 1
        length |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 21:
            raise MqttError("malformed remaining length")
    end = i + length
    if end > n:
        return None
    return buf[pos], i, end

"""The bridge's MQTT client parses PUBLISHes however the bytes are split across reads
(MQTT 5 with properties, 3.1.1 without), and writes PUBACKs as MQTT says."""

from __future__ import annotations

import socket
import struct
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from iotmon.mqtt.wire import Connection, Message, connect_packet, pubacks, varint


def publish(topic: bytes, payload: bytes, *, pid: int, qos: int, dup: bool, v5: bool) -> bytes:
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", pid)
    if v5:
        props = b"\x01\x01" + b"\x26" + struct.pack("!H", 1) + b"k" + struct.pack("!H", 1) + b"v"
        body += varint(len(props)) + props  # payload format + a user property
    first = 0x30 | (0x08 if dup else 0) | (qos << 1)
    return bytes([first]) + varint(len(body) + len(payload)) + body + payload


def read_all(data: bytes, cuts: list[int], *, v5: bool) -> tuple[list[Message], list[list[int]]]:
    a, b = socket.socketpair()
    conn = Connection(a, mqtt311=not v5)
    got: list[Message] = []
    subacks: list[list[int]] = []

    def feed() -> None:
        last = 0
        for cut in [*sorted(set(cuts)), len(data)]:
            b.sendall(data[last:cut])
            last = cut
        b.close()

    t = threading.Thread(target=feed)
    t.start()
    why = conn.read_loop(lambda c, msgs, at: got.extend(msgs), subacks.append)
    t.join()
    conn.close()
    assert why == "connection closed by the broker"
    return got, subacks


MESSAGES = [
    (b"devices/d1/telemetry", b'{"value":1}', 1, 1, False),
    (b"cmnd/f2-1/access-control-mode/J1/door-sensors", b"x" * 300, 1, 65535, True),
    (b"devices/d2/telemetry", b"", 0, 0, False),
    (b"devices/d3/telemetry", bytes(range(256)) * 3, 1, 7, False),
]


@settings(max_examples=60, deadline=None)
@given(v5=st.booleans(), cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12))
def test_publishes_are_parsed_across_any_read_boundaries(v5: bool, cuts: list[int]) -> None:
    data = b"".join(publish(t, p, pid=pid, qos=q, dup=d, v5=v5) for t, p, q, pid, d in MESSAGES)
    suback = b"\x90" + varint(4 if v5 else 3) + b"\x00\x01" + (b"\x00" if v5 else b"") + b"\x01"
    data = suback + b"\xd0\x00" + data  # a SUBACK and a PINGRESP first
    got, subacks = read_all(data, [c for c in cuts if c < len(data)], v5=v5)
    assert got == [(t, p, q, d, pid) for t, p, q, pid, d in MESSAGES]
    assert subacks == [[1]]


def test_pubacks_and_connect() -> None:
    assert pubacks([1, 258]) == b"\x40\x02\x00\x01\x40\x02\x01\x02"
    v5 = connect_packet(
        "bridge",
        username="u",
        password="p",  # noqa: S106
        keepalive_s=30,
        mqtt311=False,
        session_expiry_s=3600,
        receive_maximum=20_000,
    )
    # protocol level 5, user + password, clean start off, then the two properties
    assert v5[2:10] == b"\x00\x04MQTT\x05\xc0"
    assert b"\x11" + struct.pack("!I", 3600) + b"\x21" + struct.pack("!H", 20_000) in v5
    v3 = connect_packet(
        "bridge",
        username=None,
        password=None,
        keepalive_s=30,
        mqtt311=True,
        session_expiry_s=3600,
        receive_maximum=20_000,
    )
    assert v3 == b"\x10" + varint(18) + b"\x00\x04MQTT\x04\x00\x00\x1e\x00\x06bridge"

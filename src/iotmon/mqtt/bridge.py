"""MQTT -> Kafka, unchanged: each message's payload as the record's value, its topic, receive
time, QoS and redelivery flag as headers, keyed by device (the topic's second level under the
root) so one device's messages stay in order on one partition.

MQTT 5 shared subscriptions (``$share/<group>/<filter>``): several bridges split the load. A
QoS 1 message is acknowledged (PUBACK) only after Kafka acknowledged its record, in the order
the messages arrived; the session outlives the connection (a fixed client id, clean start off,
session expiry one hour), so a bridge killed between the two gets the unacknowledged messages
again when it comes back, flagged ``dup``. The decoder stores such a redelivery once.

The MQTT side is ``mqtt/wire.py``, a subscriber written for this (paho's per-message parsing
and writes were most of the bridge's time): a reader thread parses each ``recv`` into a list
of messages; this thread produces them in batches and writes a batch's PUBACKs at once.

Batches are pipelined: while Kafka acknowledges one, the next ones are produced (up to
``MAX_BATCHES_IN_FLIGHT``); each batch counts its acknowledgements (``bus.Delivery``) and is
PUBACKed once all came, oldest batch first (MQTT wants PUBACKs in the order of the PUBLISHes).
Waiting for each batch before taking the next (a ``flush`` per batch) left the bridge idle half
the time under bench mqtt while Mosquitto queued.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from iotmon import logging as log
from iotmon.bus import BusError, Delivery, Producer
from iotmon.mqtt.wire import Connection, Message, MqttError, connect_packet, subscribe_packet
from iotmon.timefmt import iso_utc

logger = log.get(__name__)

H_TOPIC = "mqtt-topic"
H_RECEIVED = "mqtt-received-at"
H_QOS = "mqtt-qos"
H_DUP = "mqtt-dup"
SESSION_EXPIRY_S = 3600
# QoS 1 messages the broker may have in flight to one bridge. Each batch waits for Kafka's
# acknowledgement (tens to hundreds of ms on a loaded box) before its PUBACKs, so the window
# bounds the rate: 1000 in flight held bench mqtt to ~2,200 readings/s while the bridge used
# a quarter of a core.
RECEIVE_MAXIMUM = 20_000
BATCH = 5000
MAX_BATCHES_IN_FLIGHT = 8
_QOS = [b"0", b"1", b"2"]
_DUP = [b"0", b"1"]


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    url: str
    client_id: str
    subscriptions: tuple[str, ...]  # full filters, $share/... included
    raw_topic: str
    root: str = ""
    keepalive_s: int = 30
    # MQTT 3.1.1 (a broker without MQTT 5, like the embedded amqtt): give plain filters (no
    # $share: one bridge takes everything); the session is kept by clean_session=False with
    # the fixed client id, as clean start off + session expiry keep it under MQTT 5.
    mqtt311: bool = False


@dataclass(slots=True)
class BridgeStats:
    received: int = 0
    forwarded: int = 0
    acked: int = 0
    connected: bool = False
    connects: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def shared(group: str, root: str, filters: list[str]) -> tuple[str, ...]:
    return tuple(f"$share/{group}/{root}{f}" for f in filters)


def device_key(topic: str, root: str) -> bytes:
    rel = topic[len(root) :] if root and topic.startswith(root) else topic
    levels = rel.split("/", 2)
    return (levels[1] if len(levels) > 1 and levels[1] else rel).encode("utf-8", "replace")


def _device_key_bytes(topic: bytes, root: bytes) -> bytes:
    """``device_key`` on the topic's bytes (the same key for a valid UTF-8 topic)."""
    rel = topic[len(root) :] if root and topic.startswith(root) else topic
    levels = rel.split(b"/", 2)
    return levels[1] if len(levels) > 1 and levels[1] else rel


# one recv's messages, the connection they came on, and when they were received
Chunk = tuple[Connection, list[Message], float]


@dataclass(slots=True)
class _Batch:
    """Chunks produced together, waiting for Kafka's acknowledgement of every record."""

    chunks: list[Chunk]
    delivery: Delivery
    retry_at: float = 0.0


class Bridge:
    def __init__(self, config: BridgeConfig, producer: Producer) -> None:
        self.config = config
        self.producer = producer
        self.stats = BridgeStats()
        self._inbox: queue.Queue[Chunk] = queue.Queue()
        u = urlsplit(config.url)
        self._host, self._port = u.hostname or "127.0.0.1", u.port or 1883
        self._user = unquote(u.username) if u.username else None
        self._password = unquote(u.password) if u.password is not None and u.username else None
        self._root = config.root.encode()
        self._conn: Connection | None = None
        self._reader: threading.Thread | None = None
        self._received_text: tuple[float, bytes] = (0.0, b"")
        self._inflight: deque[_Batch] = deque()
        self._backoff = 0.2

    # the reader thread
    def _on_messages(self, conn: Connection, msgs: list[Message], at: float) -> None:
        self.stats.received += len(msgs)
        self._inbox.put((conn, msgs, at))

    def _on_suback(self, codes: list[int]) -> None:
        refused = [c for c in codes if c >= 0x80]
        if refused:
            logger.error(
                "mqtt subscription refused",
                reason_codes=[f"0x{c:02x}" for c in refused],
                subscriptions=list(self.config.subscriptions),
            )
        else:
            logger.info("mqtt subscribed", subscriptions=list(self.config.subscriptions))

    def _read(self, conn: Connection) -> None:
        why = conn.read_loop(self._on_messages, self._on_suback)
        if self._conn is conn:
            self.stats.connected = False
        if why != "closed":
            logger.warning("mqtt disconnected", reason=why)

    # the bridge's own thread
    def _connect(self, stop: threading.Event) -> Connection | None:
        cfg = self.config
        packet = connect_packet(
            cfg.client_id,
            username=self._user,
            password=self._password,
            keepalive_s=cfg.keepalive_s,
            mqtt311=cfg.mqtt311,
            session_expiry_s=SESSION_EXPIRY_S,
            receive_maximum=RECEIVE_MAXIMUM,
        )
        delay = 1.0
        while not stop.is_set():
            try:
                conn, ack = Connection.open(self._host, self._port, packet, mqtt311=cfg.mqtt311)
            except MqttError as exc:
                logger.error("mqtt connect refused", reason=str(exc))
            except OSError as exc:
                logger.error("mqtt broker unavailable, retrying", error=str(exc))
            else:
                conn.send(subscribe_packet(1, cfg.subscriptions, mqtt311=cfg.mqtt311))
                self._conn = conn
                self._reader = threading.Thread(
                    target=self._read, args=(conn,), name="mqtt-reader", daemon=True
                )
                self._reader.start()
                self.stats.connected = True
                self.stats.connects += 1
                logger.info(
                    "mqtt connected",
                    client_id=cfg.client_id,
                    session_present=ack.session_present,
                    subscriptions=list(cfg.subscriptions),
                )
                return conn
            stop.wait(delay)
            delay = min(delay * 2, 5.0)
        return None

    def _keepalive(self) -> None:
        """PINGREQ when nothing was sent for half the keepalive; a broker silent for one and
        a half is taken as gone (paho did this in its own thread)."""
        conn, keepalive = self._conn, self.config.keepalive_s
        if conn is None or conn.closed or not keepalive:
            return
        now = time.monotonic()
        if now - conn.last_sent > keepalive / 2:
            try:
                conn.ping()
            except OSError:
                conn.close()
                return
        if now - conn.last_received > keepalive * 1.5:
            logger.warning("mqtt broker silent past the keepalive, reconnecting")
            conn.close()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                conn = self._conn
                if conn is None or conn.closed:
                    if conn is not None:
                        self._join_reader()
                    if self._connect(stop) is None:
                        return
                    continue
                self._keepalive()
                if conn.closed:
                    continue
                if len(self._inflight) < MAX_BATCHES_IN_FLIGHT:
                    batch = self._take(0.002 if self._inflight else 0.1)
                    if batch:
                        self._send(batch)
                    self._settle(0.0)
                else:
                    self._settle(0.05)
        finally:
            self._drain()
            if self._conn is not None:
                self._conn.close(graceful=True)
                self.stats.connected = False
            self._join_reader()

    def _join_reader(self) -> None:
        if self._reader is not None:
            self._reader.join(5.0)
            self._reader = None

    def _take(self, timeout: float) -> list[Chunk]:
        """Chunks of the current connection, up to about BATCH messages (what came on an
        earlier connection is dropped: the broker redelivers it on this one)."""
        try:
            first = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return []
        chunks = [first]
        n = len(first[1])
        while n < BATCH:
            try:
                chunk = self._inbox.get_nowait()
            except queue.Empty:
                break
            chunks.append(chunk)
            n += len(chunk[1])
        return [c for c in chunks if c[0] is self._conn and not c[0].closed]

    def _send(self, chunks: list[Chunk]) -> None:
        delivery = Delivery()
        try:
            for chunk in chunks:
                self._produce(chunk, delivery)
        except (BusError, BufferError) as exc:  # not queued whole: produced again, below
            delivery.error = delivery.error or str(exc)[:300]
        self._inflight.append(_Batch(chunks, delivery))

    def _settle(self, wait: float) -> None:
        """Serve Kafka's acknowledgements, then PUBACK the batches that are whole, oldest
        first. A batch Kafka refused a record of is produced again whole once all its records
        reported (a record may repeat on the raw topic, never vanish: the decoder's dedup
        window stores a repeat once), after a growing pause; nothing after it is PUBACKed
        meanwhile. A batch whose connection closed is dropped: the broker redelivers it."""
        try:
            self.producer.poll(wait)
        except BusError as exc:
            logger.error("raw topic producer failed", error=str(exc)[:300])
        inflight = self._inflight
        while inflight:
            b = inflight[0]
            live = [c for c in b.chunks if not c[0].closed]
            if not live:
                inflight.popleft()
                continue
            d = b.delivery
            if d.pending > 0:
                return
            if d.error is not None:
                now = time.monotonic()
                if not b.retry_at:
                    logger.error("raw topic unavailable, producing again", error=d.error[:300])
                    b.retry_at = now + self._backoff
                    self._backoff = min(self._backoff * 2, 5.0)
                if now < b.retry_at:
                    return
                b.chunks, b.retry_at = live, 0.0
                b.delivery = Delivery()
                try:
                    for chunk in live:
                        self._produce(chunk, b.delivery)
                except (BusError, BufferError) as exc:
                    b.delivery.error = b.delivery.error or str(exc)[:300]
                return
            inflight.popleft()
            self._backoff = 0.2
            for conn, msgs, _ in live:
                self.stats.forwarded += len(msgs)
                pids = [m[4] for m in msgs if m[2] > 0]
                if conn.ack(pids):
                    self.stats.acked += len(pids)

    def _drain(self) -> None:
        """On the way out: PUBACK what Kafka acknowledges within a few seconds (the rest the
        broker redelivers to this session later)."""
        deadline = time.monotonic() + 5.0
        while self._inflight and time.monotonic() < deadline:
            head = self._inflight[0]
            if head.delivery.error is not None and head.delivery.pending == 0:
                break
            self._settle(0.05)
        self._inflight.clear()

    def _produce(self, chunk: Chunk, delivery: Delivery) -> None:
        _, msgs, at = chunk
        last_at, received = self._received_text
        if at != last_at:
            received = iso_utc(at).encode()
            self._received_text = (at, received)
        produce, raw_topic, root = self.producer.produce, self.config.raw_topic, self._root
        qos_h, dup_h = _QOS, _DUP
        for topic, payload, qos, dup, _pid in msgs:
            produce(
                raw_topic,
                payload,
                key=_device_key_bytes(topic, root),
                headers=[
                    (H_TOPIC, topic),
                    (H_RECEIVED, received),
                    (H_QOS, qos_h[qos]),
                    (H_DUP, dup_h[dup]),
                ],
                on_delivery=delivery,
            )

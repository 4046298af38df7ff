"""MQTT -> Kafka, unchanged: each message's payload as the record's value, its topic, receive
time, QoS and redelivery flag as headers, keyed by device (the topic's second level under the
root) so one device's messages stay in order on one partition.

MQTT 5 shared subscriptions (``$share/<group>/<filter>``): several bridges split the load. A
QoS 1 message is acknowledged (PUBACK) only after Kafka acknowledged its record, in the order
the messages arrived; the session outlives the connection (a fixed client id, clean start off,
session expiry one hour), so a bridge killed between the two gets the unacknowledged messages
again when it comes back, flagged ``dup``. The decoder stores such a redelivery once.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from iotmon import logging as log
from iotmon.bus import BusError, Producer
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


class Bridge:
    def __init__(self, config: BridgeConfig, producer: Producer) -> None:
        self.config = config
        self.producer = producer
        self.stats = BridgeStats()
        self._inbox: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        u = urlsplit(config.url)
        self._host, self._port = u.hostname or "127.0.0.1", u.port or 1883
        self._auth = (u.username, u.password) if u.username else None
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            protocol=mqtt.MQTTv311 if config.mqtt311 else mqtt.MQTTv5,
            clean_session=False if config.mqtt311 else None,
            manual_ack=True,
        )
        if self._auth:
            self.client.username_pw_set(*self._auth)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(1, 5)

    # paho's network thread
    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            logger.error("mqtt connect refused", reason=str(reason))
            return
        self.stats.connected = True
        self.stats.connects += 1
        client.subscribe([(s, 1) for s in self.config.subscriptions])  # QoS 1, MQTT 5 or 3.1.1
        logger.info(
            "mqtt connected",
            client_id=self.config.client_id,
            session_present=bool(getattr(flags, "session_present", False)),
            subscriptions=list(self.config.subscriptions),
        )

    def _on_disconnect(
        self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        self.stats.connected = False
        logger.warning("mqtt disconnected", reason=str(reason))

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        msg.timestamp = time.time()  # the receive time (paho sets a monotonic one)
        self.stats.received += 1
        self._inbox.put(msg)

    # the bridge's own thread
    def run(self, stop: threading.Event) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        props.ReceiveMaximum = RECEIVE_MAXIMUM
        while not stop.is_set():
            try:
                self.client.connect(
                    self._host,
                    self._port,
                    keepalive=self.config.keepalive_s,
                    clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY if self.config.mqtt311 else False,
                    properties=None if self.config.mqtt311 else props,
                )
                break
            except OSError as exc:
                logger.error("mqtt broker unavailable, retrying", error=str(exc))
                stop.wait(1.0)
        self.client.loop_start()
        try:
            while not stop.is_set():
                batch = self._take(0.1)
                if batch:
                    self._forward(batch, stop)
        finally:
            self.client.disconnect()
            self.client.loop_stop()

    def _take(self, timeout: float) -> list[mqtt.MQTTMessage]:
        try:
            first = self._inbox.get(timeout=timeout)
        except queue.Empty:
            return []
        batch = [first]
        while len(batch) < BATCH:
            try:
                batch.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return batch

    def _forward(self, batch: list[mqtt.MQTTMessage], stop: threading.Event) -> None:
        """Produce the batch, wait for Kafka's acknowledgement, then PUBACK each message in
        arrival order. While Kafka is away, keep trying (nothing is acknowledged meanwhile; if
        stopped, the broker redelivers to this session later)."""
        backoff = 0.2
        while not stop.is_set():
            try:
                for msg in batch:
                    self._produce(msg)
                while (remaining := self.producer.flush(5.0)) > 0:
                    if stop.is_set():
                        return
                    logger.warning("kafka slow to acknowledge raw messages", pending=remaining)
            except (BusError, BufferError) as exc:
                # Produced again whole: a record may repeat on the raw topic, never vanish
                # (the decoder's dedup window stores a repeat once).
                logger.error("raw topic unavailable, producing again", error=str(exc)[:300])
                stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self.stats.forwarded += len(batch)
            for msg in batch:
                if msg.qos > 0:
                    self.client.ack(msg.mid, msg.qos)
                    self.stats.acked += 1
            return

    def _produce(self, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # brokers check UTF-8; keep the bytes visible anyway
            topic = bytes(getattr(msg, "_topic", b"")).decode("utf-8", "replace")
        headers = [
            (H_TOPIC, topic.encode("utf-8", "surrogatepass")),
            (H_RECEIVED, iso_utc(msg.timestamp).encode()),
            (H_QOS, str(msg.qos).encode()),
            (H_DUP, b"1" if msg.dup else b"0"),
        ]
        self.producer.produce(
            self.config.raw_topic,
            bytes(msg.payload),
            key=device_key(topic, self.config.root),
            headers=headers,
        )

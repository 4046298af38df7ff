"""MQTT decoder role: ``mqtt-raw`` -> readings on ``sensors-data`` by each device's profile,
on the consumer pipeline (own consumer group; what it cannot decode -> ``mqtt-raw.dlq``
with a reason). Profiles and devices are a snapshot of PostgreSQL, reloaded every few seconds
(and at most once a second on an unknown device); a redelivered message is stored once
(``mqtt/decoder.py: Dedup``)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
import psycopg
from fastapi import APIRouter

from iotmon import logging as log
from iotmon.bus import BusError, Message, TopicPartition, consume_available
from iotmon.bus.pipeline import DeadLetters, Rejection, decode_batch
from iotmon.mqtt.decoder import Catalog, Decoded, Dedup, decode_record
from iotmon.mqtt.decoders import Reason
from iotmon.profiles.service import load_all
from iotmon.roles import ROLES
from iotmon.roles.runtime import Services, run_in_thread

logger = log.get(__name__)

MISS_RELOAD_S = 1.0


class MqttDecoderRole:
    name = "mqtt-decoder"

    def __init__(self, services: Services) -> None:
        self.services = services
        s = services.settings
        self.endpoints = ROLES["mqtt-decoder"].endpoints(s)
        self.out_topic = s.topic("sensors-data")
        self.root = s.mqtt_topic_root
        self.refresh_s = s.mqtt_profile_refresh_s
        self.dedup = Dedup(s.mqtt_dedup_window_s, s.mqtt_dedup_max)
        self.catalog = Catalog()
        self._loaded_at = -1e18
        self.stats = {"consumed": 0, "produced": 0, "deadLettered": 0, "duplicates": 0}

    async def run(self, stop: asyncio.Event) -> None:
        await run_in_thread(self._run, stop)

    def _reload(self, *, force: bool = False) -> None:
        now = time.monotonic()
        age = now - self._loaded_at
        if age < (MISS_RELOAD_S if force else self.refresh_s):
            return
        url = self.services.database_url
        assert url is not None
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                self.catalog = Catalog.build(*load_all(conn))
        except (psycopg.Error, OSError) as exc:  # decode with the last snapshot meanwhile
            logger.error("profiles not reloaded", error=str(exc)[:300])
        self._loaded_at = now

    def _run(self, stop: threading.Event) -> None:
        ends = self.endpoints
        assert ends.dlq is not None
        bus = self.services.bus
        consumer = bus.consumer(ends.group, name="iotmon-mqtt-decoder")
        consumer.subscribe([ends.topic])
        producer = bus.producer(name="iotmon-mqtt-decoder")
        dead = DeadLetters(bus.producer(name="iotmon-mqtt-decoder-dlq"), ends.dlq, ends.group)
        try:
            while not stop.is_set():
                self._reload()
                msgs = consume_available(consumer, 2000, 0.2)
                if not msgs:
                    continue
                self.stats["consumed"] += len(msgs)
                decoded, rejected = self._decode(msgs)
                if any(r.reason == Reason.UNKNOWN_DEVICE for _, r in rejected):
                    self._reload(force=True)  # a device given a profile a moment ago
                    decoded, rejected = self._decode(msgs)
                if not self._send(producer, dead, msgs, decoded, rejected, stop):
                    return  # stopped with the bus away: not committed, seen again
                last: dict[int, int] = {}
                for m in msgs:
                    last[m.partition()] = m.offset()  # type: ignore[index,assignment]
                consumer.commit([TopicPartition(ends.topic, p, o + 1) for p, o in last.items()])
        finally:
            consumer.close()
            producer.close()
            dead.close()

    def _decode(self, msgs: list[Message]) -> tuple[list[Decoded], list[tuple[int, Rejection]]]:
        # The pipeline's decode_batch takes bytes; each record is named by its index so the
        # decoder sees its headers too (and a surprise rejects that record only).
        def decode_many(tokens: list[bytes]) -> tuple[list[Decoded], list[tuple[int, Rejection]]]:
            out: list[Decoded] = []
            rejects: list[tuple[int, Rejection]] = []
            for i, token in enumerate(tokens):
                m = msgs[int(token)]
                got = decode_record(m.value() or b"", m.headers(), self.catalog, self.root)
                if isinstance(got, Rejection):
                    rejects.append((i, got))
                else:
                    out.append(got)
            return out, rejects

        return decode_batch(decode_many, [str(i).encode() for i in range(len(msgs))])

    def _send(
        self,
        producer: Any,
        dead: DeadLetters,
        msgs: list[Message],
        decoded: list[Decoded],
        rejected: list[tuple[int, Rejection]],
        stop: threading.Event,
    ) -> bool:
        """Readings to ``sensors-data`` and rejects to the DLQ, both acknowledged, before the
        batch commits; while the bus is away, keep trying. False if stopped meanwhile."""
        out: list[tuple[bytes, bytes]] = []
        for d in decoded:
            at = d.received_at.timestamp()
            for key, reading in d.readings:
                device_clock = reading["metadata"]["clock"] == "device"
                if self.dedup.admit(key, at, clock_device=device_clock, redelivered=d.redelivered):
                    out.append((reading["deviceId"].encode(), orjson.dumps(reading)))
                else:
                    self.stats["duplicates"] += 1
        backoff = 0.5
        while not stop.is_set():
            try:
                for device, value in out:
                    producer.produce(self.out_topic, value, key=device)
                while producer.flush(5.0) > 0:
                    if stop.is_set():
                        return False
                dead.send_all([(msgs[i], rej) for i, rej in rejected])
            except (BusError, BufferError) as exc:
                logger.error("bus unavailable, retrying the batch", error=str(exc)[:300])
                stop.wait(backoff)
                backoff = min(backoff * 2, 10)
                continue
            self.stats["produced"] += len(out)
            self.stats["deadLettered"] += len(rejected)
            return True
        return False

    def status(self) -> dict[str, Any]:
        return {**self.stats, "dedupKeys": len(self.dedup), "profiles": len(self.catalog.profiles)}

    def routers(self) -> list[APIRouter]:
        return []


def build(services: Services) -> MqttDecoderRole:
    return MqttDecoderRole(services)

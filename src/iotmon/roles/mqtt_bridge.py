"""MQTT bridge role: the device topics (MQTT 5 shared subscription) -> ``mqtt-raw``, each
QoS 1 message acknowledged to the broker only after Kafka acknowledged it (mqtt/bridge.py)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from fastapi import APIRouter

from iotmon.config import secret
from iotmon.metrics import watch_mqtt_bridge
from iotmon.mqtt.bridge import Bridge, BridgeConfig, shared
from iotmon.roles.runtime import ConfigurationError, Services, run_in_thread, tune_gc


class MqttBridgeRole:
    name = "mqtt-bridge"

    def __init__(self, services: Services) -> None:
        s = services.settings
        url = secret(s.mqtt_url)
        if url is None:
            raise ConfigurationError("the MQTT bridge needs IOTMON_MQTT_URL")
        mqtt311 = s.mqtt_protocol == "3.1.1"  # no $share: plain filters under the root
        filters = tuple(f"{s.mqtt_topic_root}{f}" for f in s.mqtt_topics)
        self.bridge = Bridge(
            BridgeConfig(
                url=url,
                client_id=s.mqtt_client_id or f"iotmon-bridge-{socket.gethostname()}"[:64],
                subscriptions=filters
                if mqtt311
                else shared(s.mqtt_share_group, s.mqtt_topic_root, s.mqtt_topics),
                raw_topic=s.topic("mqtt-raw"),
                root=s.mqtt_topic_root,
                mqtt311=mqtt311,
            ),
            services.bus.producer(name="iotmon-mqtt-bridge"),
        )
        watch_mqtt_bridge(self.bridge.stats)

    async def run(self, stop: asyncio.Event) -> None:
        tune_gc()  # a batch is thousands of short-lived tuples: young collections every 700 cost
        try:
            await run_in_thread(self.bridge.run, stop)
        finally:
            await asyncio.to_thread(self.bridge.producer.close)

    def status(self) -> dict[str, Any]:
        st = self.bridge.stats
        return {
            "connected": st.connected,
            "connects": st.connects,
            "received": st.received,
            "forwarded": st.forwarded,
            "acked": st.acked,
        }

    def routers(self) -> list[APIRouter]:
        return []


def build(services: Services) -> MqttBridgeRole:
    return MqttBridgeRole(services)

"""The MQTT broker ``iotmon up`` runs in its own process when no broker is configured
(``IOTMON_MQTT_URL`` unset): amqtt, an asyncio MQTT 3.1.1 broker, on the event loop of the
roles, listening on 127.0.0.1 only (``IOTMON_MQTT_EMBEDDED_PORT``, 1883).

It speaks MQTT 3.1.1: no ``$share`` subscriptions and no MQTT 5 properties, so the bridge runs
in its 3.1.1 mode against it (one bridge, a plain subscription, a persistent session).
Anonymous clients are let in: it is a developer's broker on the loopback interface; a
deployment sets ``IOTMON_MQTT_URL`` to its Mosquitto, which checks each device's credentials.
"""

from __future__ import annotations

import errno
import logging
import socket
from typing import Any

from iotmon import logging as log

logger = log.get(__name__)

HOST = "127.0.0.1"


class PortInUse(OSError):
    """Something else listens on the embedded broker's port."""


def port_free(host: str, port: int) -> bool:
    """Whether ``host:port`` can be listened on (as asyncio's server binds: SO_REUSEADDR)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            raise
    return True


class EmbeddedBroker:
    def __init__(self, port: int = 1883, host: str = HOST, max_connections: int = 10_000) -> None:
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self._broker: Any = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        """Listen; raises ``PortInUse`` when the port is taken."""
        from amqtt.broker import Broker  # type: ignore[import-untyped]
        from amqtt.errors import BrokerError  # type: ignore[import-untyped]

        # amqtt logs every connection and packet at INFO/DEBUG; keep its warnings only.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if not port_free(self.host, self.port):
            raise PortInUse(errno.EADDRINUSE, f"{self.host}:{self.port} is already in use")
        config = {
            "listeners": {
                "default": {
                    "type": "tcp",
                    "bind": f"{self.host}:{self.port}",
                    "max_connections": self.max_connections,
                }
            },
            # Only the anonymous-auth plugin: no $SYS publisher, no per-packet logging.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        broker = Broker(config)
        try:
            await broker.start()
        except BrokerError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
                raise PortInUse(
                    errno.EADDRINUSE, f"{self.host}:{self.port} is already in use"
                ) from exc
            raise
        self._broker = broker
        logger.info("embedded MQTT broker listening", address=f"{self.host}:{self.port}")

    async def stop(self) -> None:
        if self._broker is not None:
            broker, self._broker = self._broker, None
            await broker.shutdown()

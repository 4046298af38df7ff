"""Pick the bus implementation from the settings."""

from __future__ import annotations

from iotmon.bus import Bus
from iotmon.config import Settings


def make_bus(settings: Settings) -> Bus:
    if settings.kafka_bootstrap:
        from iotmon.bus.kafka import KafkaBus

        return KafkaBus(
            settings.kafka_bootstrap, session_timeout_ms=settings.kafka_session_timeout_ms
        )
    from iotmon.bus.memory import MemoryBus

    return MemoryBus()

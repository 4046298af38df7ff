"""The role registry: every process role, loaded by dotted path so a process imports only
what it runs. ``roles/`` is the only place that wires domain code to bus, database and cache.
"""

from __future__ import annotations

import asyncio
import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from fastapi import APIRouter

    from iotmon.config import Settings
    from iotmon.roles.runtime import Services


class Role(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...

    def status(self) -> dict[str, Any]:
        """Figures for /health and the live status line."""
        ...

    def routers(self) -> list[APIRouter]: ...


class WrapsApp(Protocol):
    """A role that serves more than routes (the web role: Socket.IO, static files)."""

    def wrap(self, app: Any) -> Any: ...


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a consuming role reads, as whom, and where its rejects go."""

    topic: str
    group: str
    dlq: str | None


@dataclass(frozen=True)
class RoleDefinition:
    name: str
    module: str  # exposes build(services) -> Role
    description: str
    default_port: int
    needs: frozenset[str]  # of "bus", "database", "redis"
    consumes: tuple[str, ...] = ()
    produces: tuple[str, ...] = ()
    group: str | None = None
    dlq: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    requires: str | None = None  # a setting that must be set for the role to run (mqtt_url)

    def enabled(self, settings: Settings) -> bool:
        """Whether ``iotmon up`` runs this role: what it requires is configured."""
        return self.requires is None or getattr(settings, self.requires, None) is not None

    def endpoints(self, settings: Settings) -> Endpoints:
        """Where this role consumes (its first topic), as which group, and its DLQ, with the
        deployment's topic prefix; the group is the ``<role>_group`` setting when there is one
        (tests and benchmarks isolate theirs), else the one declared here."""
        if not self.consumes or self.group is None:
            raise ValueError(f"role {self.name!r} consumes nothing")
        return Endpoints(
            topic=settings.topic(self.consumes[0]),
            group=getattr(settings, f"{self.name.replace('-', '_')}_group", self.group),
            dlq=settings.topic(self.dlq) if self.dlq else None,
        )

    def build(self, services: Services) -> Role:
        module = importlib.import_module(self.module)
        role: Role = module.build(services)
        return role


ROLES: dict[str, RoleDefinition] = {
    "simulator": RoleDefinition(
        name="simulator",
        module="iotmon.roles.simulator",
        description="simulated devices -> sensors-data",
        default_port=8001,
        needs=frozenset({"bus"}),
        produces=("sensors-data",),
    ),
    "ingestion": RoleDefinition(
        name="ingestion",
        module="iotmon.roles.ingestion",
        description="sensors-data -> PostgreSQL, exactly once; bad input -> DLQ",
        default_port=8002,
        needs=frozenset({"bus", "database"}),
        consumes=("sensors-data",),
        produces=("sensors-data.dlq",),
        group="iotmon-ingestion",
        dlq="sensors-data.dlq",
    ),
    "processing": RoleDefinition(
        name="processing",
        module="iotmon.roles.processing",
        description="sensors-data -> live statistics (Redis), metrics, alert candidates",
        default_port=8003,
        needs=frozenset({"bus", "database", "redis"}),
        consumes=("sensors-data",),
        produces=("metrics", "alerts"),
        group="iotmon-processing",
        # Invalid readings are ingestion's to dead-letter (the same decoder, the same verdict:
        # processing only counts them); a reading the statistics fail on comes here.
        dlq="sensors-data.dlq",
    ),
    "alerts": RoleDefinition(
        name="alerts",
        module="iotmon.roles.alerts",
        description="alert candidates -> lifecycle, offline detection, escalation, notifications",
        default_port=8004,
        needs=frozenset({"bus", "database", "redis"}),
        consumes=("alerts",),
        produces=("alerts.dlq",),
        group="iotmon-alerts",
        dlq="alerts.dlq",
    ),
    "mqtt-bridge": RoleDefinition(
        name="mqtt-bridge",
        module="iotmon.roles.mqtt_bridge",
        description="MQTT (shared subscription) -> mqtt-raw, acknowledged after Kafka",
        default_port=8005,
        needs=frozenset({"bus"}),
        produces=("mqtt-raw",),
        requires="mqtt_url",
    ),
    "mqtt-decoder": RoleDefinition(
        name="mqtt-decoder",
        module="iotmon.roles.mqtt_decoder",
        description="mqtt-raw -> readings on sensors-data by device profile; bad -> DLQ",
        default_port=8006,
        needs=frozenset({"bus", "database"}),
        consumes=("mqtt-raw",),
        produces=("sensors-data", "mqtt-raw.dlq"),
        group="iotmon-mqtt-decoder",
        dlq="mqtt-raw.dlq",
        requires="mqtt_url",
    ),
    "web": RoleDefinition(
        name="web",
        module="iotmon.roles.web",
        description="REST API (/api), Socket.IO (/socket.io), dashboard (/)",
        default_port=8000,
        needs=frozenset({"database", "redis"}),
    ),
}

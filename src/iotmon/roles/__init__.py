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

    def endpoints(self, settings: Settings) -> Endpoints:
        """Where this role consumes (its first topic), as which group, and its DLQ, with the
        deployment's topic prefix; the group is the ``<role>_group`` setting when there is one
        (tests and benchmarks isolate theirs), else the one declared here."""
        if not self.consumes or self.group is None:
            raise ValueError(f"role {self.name!r} consumes nothing")
        return Endpoints(
            topic=settings.topic(self.consumes[0]),
            group=getattr(settings, f"{self.name}_group", self.group),
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
    "web": RoleDefinition(
        name="web",
        module="iotmon.roles.web",
        description="REST API (/api), Socket.IO (/socket.io), dashboard (/)",
        default_port=8000,
        needs=frozenset({"database", "redis"}),
    ),
}

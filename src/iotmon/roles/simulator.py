"""Simulator role: the simulated fleet produces to ``sensors-data`` (key = deviceId)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from iotmon import logging as log
from iotmon.roles.runtime import Services
from iotmon.simulator.devices import Simulator
from iotmon.simulator.scenarios import Scenario, ScenarioError

logger = log.get(__name__)


class ScenarioRequest(BaseModel):
    deviceId: str = Field(examples=["device-001"])
    kind: str = Field(examples=["high", "low", "drift", "offline"])
    durationS: float = Field(default=60, gt=0, le=86_400)


class SimulatorRole:
    name = "simulator"

    def __init__(self, services: Services, scenarios: tuple[Scenario, ...] = ()) -> None:
        s = services.settings
        self.services = services
        self.topic = s.topic("sensors-data")
        self.producer = services.bus.producer(name="iotmon-simulator")
        self.sim = Simulator.with_fleet(
            s.simulator_devices,
            send=self._send,
            rate=s.simulator_rate,
            anomaly_rate=s.simulator_anomaly_rate,
            seed=s.simulator_seed,
        )
        for sc in scenarios:
            self.sim.start_scenario(sc)

    def _send(self, key: bytes, value: bytes) -> None:
        self.producer.produce(self.topic, value, key=key)

    async def run(self, stop: asyncio.Event) -> None:
        logger.info(
            "simulating", devices=len(self.sim.devices), rate=self.sim.rate, topic=self.topic
        )
        try:
            while not stop.is_set():
                wait = self.sim.tick()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), min(wait, 0.5))
                else:
                    await asyncio.sleep(0)
        finally:
            await asyncio.to_thread(self.producer.flush, 10)

    def status(self) -> dict[str, Any]:
        st = self.sim.stats
        return {
            "devices": len(self.sim.devices),
            "sent": st.sent,
            "anomalies": st.anomalies,
            "activeScenarios": {d: a.scenario.kind for d, a in self.sim.scenarios.items()},
        }

    def routers(self) -> list[APIRouter]:
        router = APIRouter(prefix="/simulator", tags=["simulator"])

        @router.post("/scenarios", status_code=201)
        async def start(req: ScenarioRequest) -> dict[str, Any]:
            try:
                active = self.sim.start_scenario(
                    Scenario.make(req.deviceId, req.kind, req.durationS)
                )
            except ScenarioError as exc:
                raise HTTPException(422, str(exc)) from exc
            return {"deviceId": req.deviceId, "kind": active.scenario.kind, "endsAt": active.ends()}

        @router.delete("/scenarios/{device_id}", status_code=204)
        async def stop_one(device_id: str) -> None:
            if not self.sim.stop_scenario(device_id):
                raise HTTPException(404, f"no active scenario on {device_id}")

        return [router]


def build(services: Services) -> SimulatorRole:
    return SimulatorRole(services)

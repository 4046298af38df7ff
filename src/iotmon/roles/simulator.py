"""Simulator role: the simulated fleet produces to ``sensors-data`` (key = deviceId).

Its control endpoint (``POST /simulator/scenarios``, ``DELETE /simulator/scenarios/{id}``)
can silence the fleet or raise alerts at will: it needs an operator's bearer token (checked
with the deployment's signing key when the simulator can reach it: IOTMON_JWT_SECRET or the
database). Without a token it answers only in embedded mode with IOTMON_SIMULATOR_CONTROL=1
(a developer's machine). CORS never approves it for another origin (web/app.py ApiCors)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from iotmon import logging as log
from iotmon.config import secret
from iotmon.roles.runtime import Services
from iotmon.simulator.devices import Simulator
from iotmon.simulator.scenarios import Scenario, ScenarioError

logger = log.get(__name__)


class ScenarioRequest(BaseModel):
    deviceId: str = Field(max_length=64, examples=["device-001"])
    kind: str = Field(max_length=32, examples=["high", "low", "drift", "offline"])
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
        self.tokens = _tokens(services)
        self.anonymous = s.simulator_control and s.embedded

    async def _operator(self, request: Request) -> None:
        """The control endpoint's gate (see the module's docstring)."""
        from iotmon.web import auth

        token = auth.bearer(request.headers.get("authorization"))
        if token is None and self.anonymous:
            return
        if self.tokens is None:
            raise HTTPException(
                403,
                "the simulator's control endpoint is off: it needs an operator token, and this"
                " simulator has no signing key to check one (IOTMON_JWT_SECRET or"
                " IOTMON_DATABASE_URL); in embedded mode, IOTMON_SIMULATOR_CONTROL=1 opens it",
            )
        try:
            who = self.tokens.verify(token)
        except auth.AuthError as exc:
            raise HTTPException(401, str(exc), {"WWW-Authenticate": "Bearer"}) from None
        if not await auth.session_current(who):
            raise HTTPException(401, "the session has ended: log in again")
        if not who.can("operator"):
            raise HTTPException(403, f"this needs the operator role; {who.username} is {who.role}")

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
        router = APIRouter(
            prefix="/simulator", tags=["simulator"], dependencies=[Depends(self._operator)]
        )

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


def _tokens(services: Services) -> Any:
    """The deployment's token checker, when the signing key can be had; else None."""
    from iotmon.web import auth

    s = services.settings
    configured = secret(s.jwt_secret)
    url = services.database_url or secret(s.database_url)
    if configured is None and url is None:
        return None
    if configured is not None:
        return auth.Tokens(auth.signing_key(None, configured), s.token_ttl_s)  # type: ignore[arg-type]
    import psycopg

    assert url is not None
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
            key = auth.signing_key(conn, None)
    except psycopg.Error as exc:
        logger.warning("simulator control: no signing key, endpoint off", error=str(exc))
        return None
    return auth.Tokens(key, s.token_ttl_s)

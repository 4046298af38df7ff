"""Simulator role: the simulated fleet produces to ``sensors-data`` (key = deviceId), or, with
``IOTMON_SIMULATOR_TRANSPORT=mqtt`` (``iotmon run simulator --transport mqtt``), its devices
publish through the MQTT broker like real ones (simulator/mqtt.py: seed 002's F2 controllers
and the specification's devices); ``both`` runs the Kafka fleet and the MQTT devices
(``mqtt-001``... beside ``device-001``...), which ``iotmon up`` does whenever it has a broker.
The MQTT devices are registered in PostgreSQL with their profiles when the role starts, and
given broker credentials when ``IOTMON_MQTT_ADMIN_URL`` is configured.

Its control endpoint (``POST /simulator/scenarios``, ``DELETE /simulator/scenarios/{id}``)
can silence the fleet or raise alerts at will: it needs an operator's bearer token (checked
with the deployment's signing key when the simulator can reach it: IOTMON_JWT_SECRET or the
database). Without a token it answers only in embedded mode with IOTMON_SIMULATOR_CONTROL=1
(a developer's machine). CORS never approves it for another origin (web/app.py ApiCors)."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, Field

from iotmon import logging as log
from iotmon.config import Settings, secret
from iotmon.devices.models import SEEDED, DeviceSpec
from iotmon.roles.runtime import ConfigurationError, Services
from iotmon.simulator import mqtt as sim_mqtt
from iotmon.simulator.devices import Simulator
from iotmon.simulator.scenarios import ActiveScenario, Scenario, ScenarioError

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
        self.transport = s.simulator_transport
        self.topic = s.topic("sensors-data")
        self.producer = services.bus.producer(name="iotmon-simulator")
        # The fleet of the specification's devices: to Kafka, or over MQTT in mqtt mode.
        self.sim = Simulator.with_fleet(
            s.simulator_devices,
            send=self._send if self.transport != "mqtt" else self._publish_spec,
            rate=s.simulator_rate,
            anomaly_rate=s.simulator_anomaly_rate,
            seed=s.simulator_seed,
        )
        self.link: sim_mqtt.MqttLink | None = None
        self.mqtt_sim: Simulator | None = None  # in both mode: mqtt-001... over MQTT
        self.f2: sim_mqtt.F2Fleet | None = None
        if self.transport != "kafka":
            self._mqtt_fleet(s)
        for sc in scenarios:
            self.start_scenario(sc)
        self.tokens = _tokens(services)
        self.anonymous = s.simulator_control and s.embedded

    async def _operator(self, request: Request) -> None:
        """The control endpoint's gate (see the module's docstring)."""
        from iotmon.users.models import AuthError
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
        except AuthError as exc:
            raise HTTPException(401, str(exc), {"WWW-Authenticate": "Bearer"}) from None
        if not await auth.session_current(who):
            raise HTTPException(401, "the session has ended: log in again")
        if not who.can("operator"):
            raise HTTPException(403, f"this needs the operator role; {who.username} is {who.role}")

    def _send(self, key: bytes, value: bytes) -> None:
        self.producer.produce(self.topic, value, key=key)

    # --- MQTT ------------------------------------------------------------------------------
    def _mqtt_fleet(self, s: Settings) -> None:
        url = secret(s.mqtt_url)
        if url is None:
            raise ConfigurationError(
                f"simulator transport {self.transport!r} needs IOTMON_MQTT_URL (the broker)"
            )
        if (self.services.database_url or secret(s.database_url)) is None:
            raise ConfigurationError(
                f"simulator transport {self.transport!r} needs IOTMON_DATABASE_URL: its MQTT"
                " devices are registered there with their profiles, or the decoder drops them"
            )
        connections = s.simulator_f2_controllers + (
            s.simulator_devices if self.transport == "mqtt" else len(SEEDED)
        )
        if connections > sim_mqtt.MAX_CONNECTIONS:
            raise ConfigurationError(
                f"{connections} simulated MQTT devices: at most {sim_mqtt.MAX_CONNECTIONS}, each"
                " has a connection (and a thread) of its own; lower IOTMON_SIMULATOR_DEVICES"
            )
        self.link = sim_mqtt.MqttLink(url, root=s.mqtt_topic_root)
        if self.transport == "both":
            specs = [
                replace(d, device_id=f"{sim_mqtt.MQTT_SPEC_PREFIX}{d.device_id[-3:]}")
                for d in SEEDED
            ]
            self.mqtt_sim = Simulator(
                specs,
                send=self._publish_spec,
                rate=s.simulator_rate,
                anomaly_rate=s.simulator_anomaly_rate,
                seed=None if s.simulator_seed is None else s.simulator_seed + 1,
            )
        if s.simulator_f2_controllers:
            self.f2 = sim_mqtt.F2Fleet(
                sim_mqtt.f2_ids(s.simulator_f2_controllers),
                publish=self.link.publish,
                rate=s.simulator_rate,
                anomaly_rate=s.simulator_anomaly_rate,
                seed=None if s.simulator_seed is None else s.simulator_seed + 2,
            )

    def _publish_spec(self, key: bytes, value: bytes) -> None:
        assert self.link is not None
        self.link.publish(*sim_mqtt.spec_message(key, value))

    def mqtt_specs(self) -> list[DeviceSpec]:
        """The specification's devices that publish over MQTT."""
        if self.mqtt_sim is not None:
            return list(self.mqtt_sim.devices.values())
        return list(self.sim.devices.values()) if self.transport == "mqtt" else []

    def _register(self) -> list[str]:
        """Register the MQTT devices with their profiles (blocking: run in a thread); the
        devices that connect (controllers and spec devices; channels are devices of their own
        in PostgreSQL only)."""
        import psycopg

        s = self.services.settings
        url = self.services.database_url or secret(s.database_url)
        assert url is not None
        f2 = {c.device_id: c.location for c in (self.f2.controllers.values() if self.f2 else [])}
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            reg = sim_mqtt.register(conn, f2=f2, spec=self.mqtt_specs())
        logger.info(
            "simulated MQTT devices registered",
            controllers=reg.controllers,
            channels=len(reg.channels),
            spec=reg.spec,
        )
        return [*reg.controllers, *reg.spec]

    async def _provision(self, devices: list[str]) -> dict[str, tuple[str, str]]:
        """Broker credentials for the simulated devices, issued and recorded like any device's
        (``iotmon.mqtt.provisioning``, by ``simulator``) when the broker has an admin
        (IOTMON_MQTT_ADMIN_URL: Mosquitto's dynamic security, or in ``iotmon up`` the embedded
        broker's, which checks the recorded hashes); none when no admin is configured (a broker
        that lets anyone in). New ones at each start: the previous ones are revoked."""
        s = self.services.settings
        admin = secret(s.mqtt_admin_url)
        if admin is None or not devices:
            return {}
        import psycopg

        from iotmon.mqtt import provisioning

        url = self.services.database_url or secret(s.database_url)
        assert url is not None
        out: dict[str, tuple[str, str]] = {}
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            for device in devices:
                issued = await provisioning.provision(
                    conn, admin_url=admin, device_id=device, root=s.mqtt_topic_root, by="simulator"
                )
                out[device] = (issued["username"], issued["password"])
        return out

    async def _open_mqtt(self) -> None:
        link = self.link
        assert link is not None
        devices = await asyncio.to_thread(self._register)
        link.credentials = await self._provision(devices)
        await asyncio.to_thread(link.open, devices)
        logger.info(
            "simulated MQTT devices connecting",
            devices=len(devices),
            broker=f"{link.host}:{link.port}",
            credentials=bool(link.credentials),
        )

    async def run(self, stop: asyncio.Event) -> None:
        logger.info(
            "simulating",
            devices=len(self.sim.devices),
            rate=self.sim.rate,
            transport=self.transport,
            topic=self.topic if self.transport != "mqtt" else None,
        )
        if self.link is not None:
            await self._open_mqtt()
        fleets: list[Any] = [f for f in (self.sim, self.mqtt_sim, self.f2) if f is not None]
        try:
            while not stop.is_set():
                wait = min(f.tick() for f in fleets)
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), min(wait, 0.5))
                else:
                    await asyncio.sleep(0)
        finally:
            await asyncio.to_thread(self.producer.flush, 10)
            if self.link is not None:
                await asyncio.to_thread(self.link.close)

    def start_scenario(self, scenario: Scenario) -> ActiveScenario:
        """On whichever simulated device has the id (Kafka, MQTT, an F2 controller or one of
        its channels)."""
        for sim in (self.sim, self.mqtt_sim):
            if sim is not None and scenario.device_id in sim.devices:
                return sim.start_scenario(scenario)
        if self.f2 is not None and self.f2.owns(scenario.device_id):
            return self.f2.start_scenario(scenario)
        raise ScenarioError(f"no simulated device {scenario.device_id!r}")

    def stop_scenario(self, device_id: str) -> bool:
        return any(
            f.stop_scenario(device_id) for f in (self.sim, self.mqtt_sim, self.f2) if f is not None
        )

    def status(self) -> dict[str, Any]:
        st = self.sim.stats
        active = {d: a.scenario.kind for d, a in self.sim.scenarios.items()}
        out: dict[str, Any] = {
            "devices": len(self.sim.devices),
            "sent": st.sent,
            "anomalies": st.anomalies,
            "activeScenarios": active,
        }
        if self.link is not None:
            mqtt_sim, f2 = self.mqtt_sim, self.f2
            if mqtt_sim is not None:
                active |= {d: a.scenario.kind for d, a in mqtt_sim.scenarios.items()}
            if f2 is not None:
                active |= {d: a.scenario.kind for d, a in f2.scenarios.items()}
            out["transport"] = self.transport
            out["mqtt"] = {
                "devices": len(self.link.clients),
                "connected": self.link.stats.connected,
                "published": self.link.stats.published,
                "dropped": self.link.stats.dropped,
                "f2Controllers": len(f2.controllers) if f2 else 0,
            }
        return out

    def routers(self) -> list[APIRouter]:
        router = APIRouter(
            prefix="/simulator", tags=["simulator"], dependencies=[Depends(self._operator)]
        )

        @router.post("/scenarios", status_code=201)
        async def start(req: ScenarioRequest) -> dict[str, Any]:
            try:
                active = self.start_scenario(Scenario.make(req.deviceId, req.kind, req.durationS))
            except ScenarioError as exc:
                raise HTTPException(422, str(exc)) from exc
            return {"deviceId": req.deviceId, "kind": active.scenario.kind, "endsAt": active.ends()}

        @router.delete("/scenarios/{device_id}", status_code=204)
        async def stop_one(device_id: str) -> None:
            if not self.stop_scenario(device_id):
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

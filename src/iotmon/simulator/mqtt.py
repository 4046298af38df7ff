"""The simulator over MQTT: devices that publish like real ones, through a broker.

Two kinds (each matches a seeded profile, so the MQTT decoder turns its messages into readings):

- seed 002's **F2 Smart Controllers** (profile ``f2-smart-controller``), on
  ``cmnd/<f2-id>/<mode>/<connector>/<component>``: boolean maps from the door sensors, exit
  buttons, electric strike, motion sensor and siren (``{"timestamp": ..., "door-sensor-1":
  false, ...}``), the raw text a QR or NFC reader read, and the RS-485 climate sensor's frame
  as hex (``{"timestamp": ..., "data": "00E7023A00018B9F"}``: temperature int16 x 0.1 °C,
  humidity uint16 x 0.1 %, pressure uint32 x 0.01 hPa). A controller behaves like a door:
  a read (or an exit button) releases the strike, the door opens and closes a few seconds
  later; now and then (the anomaly rate) a door is forced open and the siren sounds. Every
  state is also reported every few seconds, so a quiet door is not taken for an offline one.
- the **five devices of the specification** (profiles ``spec-<type>``) on
  ``devices/<id>/telemetry`` as ``{"timestamp": "...Z", "value": 23.5}``, their values from the
  same signals the Kafka simulator uses (``Simulator``), scenarios included.

Each device has its own MQTT connection (``MqttLink``), as a real one would, with its own
credentials when it has some. The devices are registered in PostgreSQL with their profile
(``register``) before anything is published.
"""

from __future__ import annotations

import heapq
import itertools
import random
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import orjson
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion

from iotmon import logging as log
from iotmon.devices.models import DeviceSpec
from iotmon.profiles.models import ProfileBody, channel_device_id
from iotmon.simulator.devices import Send
from iotmon.simulator.scenarios import ActiveScenario, Scenario, ScenarioError
from iotmon.simulator.signals import Signal

logger = log.get(__name__)

F2_PROFILE = "f2-smart-controller"
F2_FIRST = 0xE4FD45F654BE  # seed 002's controller, f2-e4fd45f654be; the next ones count up
MQTT_SPEC_PREFIX = "mqtt-"  # the specification's devices over MQTT beside the Kafka ones
MAX_CONNECTIONS = 500  # one MQTT connection (a paho client and its thread) per device

# Connectors (the fourth topic level) of a simulated controller, and its components.
DOORS = ("access-control-mode", "J1", "door-sensors")
STRIKE = ("access-control-mode", "J1", "electric-strike")
BUTTONS = ("access-control-mode", "J1", "exit-buttons")
QR = ("access-control-mode", "J2", "qr-reader")
NFC = ("access-control-mode", "J3", "nfc-reader")
MOTION = ("alarm-mode", "J4", "motion-sensor")
SIREN = ("alarm-mode", "J4", "siren")
CLIMATE = ("rs485-mode", "J5", "sensor-data")

# Seconds between reports (divided by the rate multiplier).
CLIMATE_S = 5.0
STATUS_S = 10.0  # every state, so each channel is heard well within the offline timeout
ACCESS_MEAN_S = 20.0
MOTION_MEAN_S = 15.0
READER_OFFLINE_S = 3600.0  # a reader is heard only when someone badges: its offline timeout

# The RS-485 sensor's channels: thresholds as the seeded profile's, signals as the spec's.
CLIMATE_SPECS = {
    "temperature": ("celsius", 10.0, 35.0, 5.0, 40.0),
    "humidity": ("percent", 30.0, 60.0, 20.0, 70.0),
    "pressure": ("hpa", 950.0, 1050.0, 900.0, 1100.0),
}
BINARY_CHANNELS = frozenset(
    {
        "door-sensor-1",
        "door-sensor-2",
        "electric-strike",
        "exit-button-1",
        "exit-button-2",
        "motion",
        "siren",
    }
)

Publish = Callable[[str, str, bytes], None]  # (device, topic under the root, payload)


def f2_ids(count: int) -> list[str]:
    """``f2-e4fd45f654be``, ``f2-e4fd45f654bf``, ...: a controller's id is its MAC address."""
    return [f"f2-{F2_FIRST + i:012x}" for i in range(count)]


def device_time(t: float) -> str:
    """An F2 controller's timestamp: ISO-8601 without an offset (UTC), microseconds, as in
    seed 002 (``2023-05-26T18:34:04.928538``)."""
    return datetime.fromtimestamp(t, UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def climate_frame(temperature: float, humidity: float, pressure: float) -> str:
    """The RS-485 sensor's 8-byte frame as hex: int16 temperature x 0.1, uint16 humidity
    x 0.1, uint32 pressure x 0.01, big-endian (the seeded profile's registers)."""
    t = max(-32768, min(32767, round(temperature * 10)))
    h = max(0, min(65535, round(humidity * 10)))
    p = max(0, min(0xFFFFFFFF, round(pressure * 100)))
    frame = t.to_bytes(2, "big", signed=True) + h.to_bytes(2, "big") + p.to_bytes(4, "big")
    return frame.hex().upper()


def spec_message(key: bytes, value: bytes) -> tuple[str, str, bytes]:
    """One reading of ``Simulator`` (its send's key and value) as a real device of the
    specification publishes it: (device, ``devices/<id>/telemetry``, ``{"timestamp",
    "value"}``)."""
    reading = orjson.loads(value)
    device = key.decode()
    body = {"timestamp": reading["timestamp"], "value": reading["value"]}
    return device, f"devices/{device}/telemetry", orjson.dumps(body)


def spec_sender(publish: Publish) -> Send:
    """``Simulator``'s send over MQTT."""
    return lambda key, value: publish(*spec_message(key, value))


@dataclass
class F2Controller:
    device_id: str
    location: str
    rng: random.Random
    anomaly_rate: float
    climate: dict[str, Signal] = field(default_factory=dict)
    doors: list[bool] = field(default_factory=lambda: [False, False])
    buttons: list[bool] = field(default_factory=lambda: [False, False])
    strike: bool = False
    motion: bool = False
    siren: bool = False

    def __post_init__(self) -> None:
        for name, (unit, nmin, nmax, amin, amax) in CLIMATE_SPECS.items():
            spec = DeviceSpec(
                f"{self.device_id}:{name}", name, unit, self.location, nmin, nmax, amin, amax,
                CLIMATE_S,
            )  # fmt: skip
            self.climate[name] = Signal(
                spec, anomaly_rate=self.anomaly_rate, rng=random.Random(self.rng.random())
            )

    def code(self, reader: str) -> str:
        """What a reader read: a QR code's text, or an NFC card's UID in hex."""
        if reader == "qr":
            return f"ACME-EMP-{self.rng.randrange(1, 10_000):04d}"
        return "".join(self.rng.choice(string.hexdigits[:16]).upper() for _ in range(14))


@dataclass
class F2Stats:
    published: int = 0
    accesses: int = 0
    forced: int = 0


class F2Fleet:
    """The simulated F2 controllers, driven by one heap of due actions (like ``Simulator``)."""

    def __init__(
        self,
        device_ids: Iterable[str],
        *,
        publish: Publish,
        rate: float = 1.0,
        anomaly_rate: float = 0.05,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
        location: str = "gate",
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        rng = random.Random(seed)
        self.publish = publish
        self.rate = rate
        self.clock = clock
        self.rng = rng
        self.stats = F2Stats()
        self.controllers = {
            d: F2Controller(d, f"{location}-{i + 1}", random.Random(rng.random()), anomaly_rate)
            for i, d in enumerate(device_ids)
        }
        self.scenarios: dict[str, ActiveScenario] = {}  # controller or <controller>:<channel>
        self._seq = itertools.count()
        self._heap: list[tuple[float, int, str, str]] = []
        now = clock()
        for d in self.controllers:
            self._at(now + rng.random() * CLIMATE_S / rate, d, "climate")
            self._at(now + rng.random() * 2 / rate, d, "status")
            self._at(now + rng.expovariate(1 / ACCESS_MEAN_S) / rate, d, "access")
            self._at(now + rng.expovariate(1 / MOTION_MEAN_S) / rate, d, "motion")

    def _at(self, due: float, device: str, action: str) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), device, action))

    # scenarios --------------------------------------------------------------------------
    def owns(self, device_id: str) -> bool:
        controller, _, channel = device_id.partition(":")
        return controller in self.controllers and (
            not channel or channel in CLIMATE_SPECS or channel in BINARY_CHANNELS
        )

    def start_scenario(self, scenario: Scenario) -> ActiveScenario:
        target = scenario.device_id
        if not self.owns(target):
            raise ScenarioError(f"no simulated device {target!r}")
        _, _, channel = target.partition(":")
        if not channel and scenario.kind != "offline":
            raise ScenarioError(
                f"{target} is a controller: only 'offline' applies to it; its channels"
                f" ({target}:temperature, {target}:door-sensor-1, ...) take the others"
            )
        if channel in BINARY_CHANNELS and scenario.kind not in ("high", "low", "offline"):
            raise ScenarioError(f"{target} is a state: 'high' holds it at 1, 'low' at 0")
        active = ActiveScenario(scenario, self.clock())
        self.scenarios[target] = active
        return active

    def stop_scenario(self, device_id: str) -> bool:
        return self.scenarios.pop(device_id, None) is not None

    def _active(self, device_id: str, t: float) -> ActiveScenario | None:
        active = self.scenarios.get(device_id)
        if active is not None and t >= active.ends():
            del self.scenarios[device_id]
            return None
        return active

    def _forced(self, controller: str, channel: str, value: bool, t: float) -> bool | None:
        """A state as its scenario holds it; None = the channel is silenced."""
        active = self._active(f"{controller}:{channel}", t)
        if active is None:
            return value
        kind = active.scenario.kind
        return None if kind == "offline" else kind == "high"

    # publishing ---------------------------------------------------------------------------
    def _send(self, c: F2Controller, where: tuple[str, str, str], payload: bytes) -> None:
        mode, connector, component = where
        self.publish(c.device_id, f"cmnd/{c.device_id}/{mode}/{connector}/{component}", payload)
        self.stats.published += 1

    def _states(
        self, c: F2Controller, where: tuple[str, str, str], t: float, states: dict[str, bool]
    ) -> None:
        body: dict[str, Any] = {"timestamp": device_time(t)}
        for name, value in states.items():
            forced = self._forced(c.device_id, name, value, t)
            if forced is not None:
                body[name] = forced
        if len(body) > 1:
            self._send(c, where, orjson.dumps(body))

    def _doors(self, c: F2Controller, t: float) -> None:
        self._states(c, DOORS, t, {"door-sensor-1": c.doors[0], "door-sensor-2": c.doors[1]})

    def _climate(self, c: F2Controller, t: float) -> None:
        values: dict[str, float] = {}
        for name, signal in c.climate.items():
            value, _ = signal.next(t)
            active = self._active(f"{c.device_id}:{name}", t)
            if active is not None:
                forced = active.value(signal.spec, t, value)
                if forced is None:
                    return  # the sensor is silent: no frame at all
                value = forced
            values[name] = value
        frame = climate_frame(values["temperature"], values["humidity"], values["pressure"])
        self._send(c, CLIMATE, orjson.dumps({"timestamp": device_time(t), "data": frame}))

    def _status(self, c: F2Controller, t: float) -> None:
        self._doors(c, t)
        self._states(c, STRIKE, t, {"electric-strike": c.strike})
        self._states(c, BUTTONS, t, {"exit-button-1": c.buttons[0], "exit-button-2": c.buttons[1]})
        self._states(c, MOTION, t, {"motion": c.motion})
        self._states(c, SIREN, t, {"siren": c.siren})

    def _access(self, c: F2Controller, t: float) -> float:
        """Someone passes (a read or an exit button releases the strike, the door opens), or,
        at the anomaly rate, a door is forced and the siren sounds. Returns when it closes."""
        rng = c.rng
        door = rng.randrange(2)
        if rng.random() < c.anomaly_rate:
            self.stats.forced += 1
            c.doors[door] = True
            c.siren = True
            self._doors(c, t)
            self._states(c, SIREN, t, {"siren": True})
            return t + rng.uniform(5, 10) / self.rate
        self.stats.accesses += 1
        pick = rng.random()
        if pick < 0.45:
            self._send(c, QR, c.code("qr").encode())
        elif pick < 0.85:
            self._send(c, NFC, c.code("nfc").encode())
        else:
            c.buttons[door] = True
            self._states(
                c, BUTTONS, t, {"exit-button-1": c.buttons[0], "exit-button-2": c.buttons[1]}
            )
        c.strike = True
        self._states(c, STRIKE, t + 0.2 / self.rate, {"electric-strike": True})
        c.doors[door] = True
        self._doors(c, t + 1.0 / self.rate)
        return t + rng.uniform(3, 8) / self.rate

    def _close(self, c: F2Controller, t: float) -> None:
        c.doors = [False, False]
        self._doors(c, t)
        if c.strike:
            c.strike = False
            self._states(c, STRIKE, t, {"electric-strike": False})
        if any(c.buttons):
            c.buttons = [False, False]
            self._states(c, BUTTONS, t, {"exit-button-1": False, "exit-button-2": False})
        if c.siren:
            c.siren = False
            self._states(c, SIREN, t, {"siren": False})

    def _motion(self, c: F2Controller, t: float, on: bool) -> None:
        c.motion = on
        self._states(c, MOTION, t, {"motion": on})

    def tick(self) -> float:
        """Publish everything that is due; return seconds until the next action is."""
        now = self.clock()
        heap, rng, rate = self._heap, self.rng, self.rate
        while heap and heap[0][0] <= now:
            due, _, device, action = heapq.heappop(heap)
            c = self.controllers[device]
            silent = self._active(device, due) is not None  # the controller is offline
            nxt: float | None = None
            if action == "climate":
                if not silent:
                    self._climate(c, due)
                nxt = due + CLIMATE_S / rate
            elif action == "status":
                if not silent:
                    self._status(c, due)
                nxt = due + STATUS_S / rate
            elif action == "access":
                if not silent:
                    self._at(self._access(c, due), device, "close")
                nxt = due + rng.expovariate(1 / ACCESS_MEAN_S) / rate
            elif action == "close":
                if not silent:
                    self._close(c, due)
            elif action == "motion":
                if not silent:
                    self._motion(c, due, True)
                    self._at(due + rng.uniform(2, 5) / rate, device, "motion-off")
                nxt = due + rng.expovariate(1 / MOTION_MEAN_S) / rate
            elif action == "motion-off" and not silent:
                self._motion(c, due, False)
            if nxt is not None:
                if nxt < now - 5:  # fell far behind (a paused process): skip, do not burst
                    nxt = now + rng.random() / rate
                self._at(nxt, device, action)
        return max(0.0, heap[0][0] - self.clock()) if heap else 1.0


# --- connections ----------------------------------------------------------------------------


@dataclass
class LinkStats:
    published: int = 0
    dropped: int = 0  # not queued: the device's connection had 1,000 messages waiting
    connected: int = 0


class MqttLink:
    """One MQTT 3.1.1 connection per simulated device (what Mosquitto and the embedded broker
    both speak), QoS 1, each with its own credentials when ``credentials`` has the device.
    Connections are made in the background and retried; while one is down its messages wait
    (up to 1,000, then they are dropped and counted)."""

    MAX_QUEUED = 1000

    def __init__(
        self,
        url: str,
        *,
        root: str = "",
        credentials: Mapping[str, tuple[str, str]] | None = None,
        qos: int = 1,
    ) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 1883
        self.root = root
        self.credentials = dict(credentials or {})
        self.qos = qos
        self.stats = LinkStats()
        self.clients: dict[str, mqtt.Client] = {}
        self._refused: set[str] = set()

    def open(self, device_ids: Iterable[str]) -> None:
        for device in device_ids:
            if device in self.clients:
                continue
            c = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"{self.root}{device}",  # the device's id (under a test's root)
                protocol=mqtt.MQTTv311,
                clean_session=True,
            )
            auth = self.credentials.get(device)
            if auth is not None:
                c.username_pw_set(*auth)
            c.max_queued_messages_set(self.MAX_QUEUED)
            c.reconnect_delay_set(1, 10)
            c.on_connect = self._on_connect
            c.on_disconnect = self._on_disconnect
            c.user_data_set(device)
            c.connect_async(self.host, self.port, keepalive=30)
            c.loop_start()
            self.clients[device] = c

    def _on_connect(self, client: Any, device: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            if device not in self._refused:  # once per device, not at every retry
                self._refused.add(device)
                logger.error(
                    "simulated device refused by the broker (credentials: IOTMON_MQTT_ADMIN_URL)",
                    device=device,
                    reason=str(reason),
                )
            return
        self._refused.discard(device)
        self.stats.connected += 1

    def _on_disconnect(self, client: Any, device: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.stats.connected = max(0, self.stats.connected - 1)

    def publish(self, device: str, topic: str, payload: bytes) -> None:
        client = self.clients.get(device)
        if client is None:
            raise KeyError(f"no MQTT connection for {device!r} (MqttLink.open it first)")
        info = client.publish(f"{self.root}{topic}", payload, qos=self.qos)
        if info.rc == mqtt.MQTT_ERR_SUCCESS or info.rc == mqtt.MQTT_ERR_NO_CONN:
            self.stats.published += 1  # queued: sent once the connection is up
        else:
            self.stats.dropped += 1

    def close(self, timeout_s: float = 5.0) -> None:
        """Let queued messages go (up to ``timeout_s``), then disconnect every device."""
        deadline = time.monotonic() + timeout_s
        for c in self.clients.values():
            while c.want_write() and time.monotonic() < deadline:
                time.sleep(0.02)
        for c in self.clients.values():
            c.disconnect()
            c.loop_stop()
        self.clients.clear()


# --- registration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registration:
    controllers: list[str]
    channels: list[str]  # <controller>:<channel>, each a device of its own
    spec: list[str]


def register(
    conn: psycopg.Connection[Any],
    *,
    f2: Mapping[str, str],
    spec: Iterable[DeviceSpec],
) -> Registration:
    """Declare the simulated MQTT devices (idempotent): each F2 controller (id -> location) with
    profile ``f2-smart-controller`` and each of its channels as a device of its own (type,
    unit and thresholds from the profile, so it is listed and alerts before its first
    reading), and each spec device with profile ``spec-<type>``. A device that exists keeps
    its configuration; one without a profile gets the simulator's."""
    channels: list[str] = []
    with conn.transaction():
        if f2:
            row = conn.execute(
                "SELECT channels FROM device_profiles WHERE name = %s", (F2_PROFILE,)
            ).fetchone()
            if row is None:
                raise LookupError(f"profile {F2_PROFILE!r} is missing (migration 0006)")
            profile = ProfileBody.model_validate({"channels": row[0]})
            for device, location in f2.items():
                _upsert(conn, device, F2_PROFILE, location, None, None, None, F2_PROFILE)
                for ch in profile.channels:
                    th = ch.thresholds
                    reader = ch.encoding == "string"
                    channel_id = channel_device_id(device, profile, ch)
                    channels.append(channel_id)
                    _upsert(
                        conn,
                        channel_id,
                        ch.sensorType,
                        location,
                        ch.unit,
                        (th.normalMin, th.normalMax, th.alertMin, th.alertMax) if th else None,
                        READER_OFFLINE_S if reader else None,
                        None,
                    )
        spec_ids = []
        for d in spec:
            _upsert(
                conn,
                d.device_id,
                d.sensor_type,
                d.location,
                d.unit,
                (d.normal_min, d.normal_max, d.alert_min, d.alert_max),
                None,
                f"spec-{d.sensor_type}",
                interval_ms=int(d.interval_s * 1000),
            )
            spec_ids.append(d.device_id)
    return Registration(list(f2), channels, spec_ids)


def _upsert(
    conn: psycopg.Connection[Any],
    device: str,
    device_type: str,
    location: str,
    unit: str | None,
    thresholds: tuple[float | None, ...] | None,
    offline_timeout_s: float | None,
    profile: str | None,
    *,
    interval_ms: int = 1000,
) -> None:
    normal_min, normal_max, alert_min, alert_max = thresholds or (None, None, None, None)
    # A device ingestion registered from its first reading ('unregistered', no thresholds)
    # takes the simulator's configuration; one configured otherwise keeps its own.
    conn.execute(
        "INSERT INTO devices (device_id, device_type, location, unit, normal_min, normal_max,"
        " alert_min, alert_max, interval_ms, offline_timeout_s, profile, metadata)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, '{\"simulated\": true}')"
        " ON CONFLICT (device_id) DO UPDATE SET device_type = EXCLUDED.device_type,"
        "  location = EXCLUDED.location, unit = EXCLUDED.unit,"
        "  normal_min = EXCLUDED.normal_min, normal_max = EXCLUDED.normal_max,"
        "  alert_min = EXCLUDED.alert_min, alert_max = EXCLUDED.alert_max,"
        "  interval_ms = EXCLUDED.interval_ms, offline_timeout_s = EXCLUDED.offline_timeout_s,"
        "  status = 'active', metadata = devices.metadata || EXCLUDED.metadata,"
        "  updated_at = now()"
        " WHERE devices.status = 'unregistered'",
        (
            device,
            device_type,
            location,
            unit,
            normal_min,
            normal_max,
            alert_min,
            alert_max,
            interval_ms,
            offline_timeout_s,
            profile,
        ),
    )
    if profile is not None:
        conn.execute(
            "UPDATE devices SET profile = %s, updated_at = now()"
            " WHERE device_id = %s AND profile IS NULL",
            (profile, device),
        )

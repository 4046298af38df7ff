"""The MQTT simulator's devices against the seeded profiles: every message it publishes decodes
(no rejection), every channel of the F2 controller is fed, the payload kinds are the seed's,
and its scenarios hold."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from iotmon.bus.pipeline import Rejection
from iotmon.devices.models import SEEDED
from iotmon.mqtt.decoders import decode
from iotmon.simulator.devices import Simulator
from iotmon.simulator.mqtt import (
    F2Fleet,
    climate_frame,
    device_time,
    f2_ids,
    spec_sender,
)
from iotmon.simulator.scenarios import Scenario, ScenarioError
from tests.unit.mqtt.test_decode import F2, seeded

NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
Sent = list[tuple[str, str, bytes]]


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fleet(seconds: float, *, anomaly_rate: float = 0.05, count: int = 2) -> tuple[F2Fleet, Sent]:
    clock = FakeClock()
    sent: Sent = []
    f2 = F2Fleet(
        f2_ids(count),
        publish=lambda d, t, p: sent.append((d, t, p)),
        anomaly_rate=anomaly_rate,
        seed=7,
        clock=clock,
    )
    run(f2, clock, seconds)
    return f2, sent


def run(f2: F2Fleet, clock: FakeClock, seconds: float) -> None:
    end = clock.t + seconds
    while clock.t < end:
        f2.tick()
        clock.t += 0.25


def decoded(sent: Sent) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for _, topic, payload in sent:
        got = decode(topic, payload, NOW, F2)
        assert not isinstance(got, Rejection), (topic, payload, got)
        out += got
    return out


def test_ids_start_at_the_seeds_controller() -> None:
    assert f2_ids(3) == ["f2-e4fd45f654be", "f2-e4fd45f654bf", "f2-e4fd45f654c0"]


def test_every_message_decodes_and_every_channel_is_fed() -> None:
    f2, sent = fleet(600, anomaly_rate=0.2)
    readings = decoded(sent)
    channels = Counter(r["metadata"]["channel"] for r in readings)
    assert set(channels) == {c.name for c in F2.channels}
    assert {r["deviceId"].split(":")[0] for r in readings} == set(f2_ids(2))
    # the controller's own clock (seed 002's naive ISO timestamps) where the payload has one
    assert all(
        r["metadata"]["clock"] == "device" for r in readings if r["sensorType"] != "access_read"
    )
    assert f2.stats.accesses > 0
    assert f2.stats.forced > 0
    # a forced door sounds the siren
    assert any(r["metadata"]["channel"] == "siren" and r["value"] == 1.0 for r in readings)


def test_payload_kinds_are_the_seeds() -> None:
    _, sent = fleet(300)
    by_component = {t.split("/", 3)[3]: p for _, t, p in sent}
    doors = orjson.loads(by_component["J1/door-sensors"])
    assert set(doors) == {"timestamp", "door-sensor-1", "door-sensor-2"}
    assert isinstance(doors["door-sensor-1"], bool)
    assert datetime.fromisoformat(doors["timestamp"]).tzinfo is None
    qr = by_component["J2/qr-reader"].decode()
    assert qr.startswith("ACME-EMP-")  # raw text, not JSON
    nfc = by_component["J3/nfc-reader"].decode()
    assert len(nfc) == 14
    assert int(nfc, 16) >= 0
    frame = orjson.loads(by_component["J5/sensor-data"])["data"]
    assert len(bytes.fromhex(frame)) == 8


def test_climate_frame_round_trips_through_the_profile() -> None:
    frame = climate_frame(-3.4, 45.6, 1013.25)
    payload = orjson.dumps({"timestamp": device_time(1_800_000_000.5), "data": frame})
    got = decode("cmnd/f2-e4fd45f654be/rs485-mode/J5/sensor-data", payload, NOW, F2)
    assert not isinstance(got, Rejection)
    values = {r["metadata"]["channel"]: r["value"] for r in got}
    assert values == pytest.approx({"temperature": -3.4, "humidity": 45.6, "pressure": 1013.25})


def test_climate_stays_in_the_normal_range_without_anomalies() -> None:
    _, sent = fleet(600, anomaly_rate=0.0)
    climate = ("temperature", "humidity", "pressure")
    thresholds = {c.name: c.thresholds for c in F2.channels if c.name in climate}
    for r in decoded(sent):
        th = thresholds.get(r["metadata"]["channel"])
        if th is not None:
            assert th.normalMin <= r["value"] <= th.normalMax, r  # type: ignore[operator]


def test_scenarios_offline_controller_and_held_door() -> None:
    clock = FakeClock()
    sent: Sent = []
    ids = f2_ids(2)
    f2 = F2Fleet(ids, publish=lambda d, t, p: sent.append((d, t, p)), seed=3, clock=clock)
    f2.start_scenario(Scenario.make(ids[0], "offline", 120))
    f2.start_scenario(Scenario.make(f"{ids[1]}:door-sensor-2", "high", 120))
    f2.start_scenario(Scenario.make(f"{ids[1]}:temperature", "high", 120))
    run(f2, clock, 100)
    assert sent
    assert all(d == ids[1] for d, _, _ in sent)
    readings = decoded(sent)
    doors = [r["value"] for r in readings if r["metadata"]["channel"] == "door-sensor-2"]
    assert doors
    assert set(doors) == {1.0}
    temps = [r["value"] for r in readings if r["metadata"]["channel"] == "temperature"]
    assert max(temps) > 40  # past the profile's alertMax
    with pytest.raises(ScenarioError, match="controller"):
        f2.start_scenario(Scenario.make(ids[0], "high", 10))
    with pytest.raises(ScenarioError, match="state"):
        f2.start_scenario(Scenario.make(f"{ids[0]}:siren", "drift", 10))
    with pytest.raises(ScenarioError, match="no simulated device"):
        f2.start_scenario(Scenario.make("f2-000000000000", "offline", 10))


def test_spec_devices_publish_json_numbers_their_profiles_decode() -> None:
    clock = FakeClock()
    sent: Sent = []
    sim = Simulator(
        list(SEEDED),
        send=spec_sender(lambda d, t, p: sent.append((d, t, p))),
        seed=1,
        clock=clock,
    )
    end = clock.t + 30
    while clock.t < end:
        sim.tick()
        clock.t += 0.25
    assert {d for d, _, _ in sent} == {d.device_id for d in SEEDED}
    for device, topic, payload in sent:
        assert topic == f"devices/{device}/telemetry"
        body = orjson.loads(payload)
        assert set(body) == {"timestamp", "value"}
        spec = next(d for d in SEEDED if d.device_id == device)
        got = decode(topic, payload, NOW, seeded(f"spec-{spec.sensor_type}"))
        assert not isinstance(got, Rejection), got
        assert got[0]["deviceId"] == device
        assert got[0]["value"] == body["value"]

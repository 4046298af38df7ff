from __future__ import annotations

from collections import Counter

import orjson
import pytest

from iotmon.devices.models import SEEDED
from iotmon.simulator.devices import Simulator
from iotmon.simulator.scenarios import Scenario, ScenarioError, parse_duration
from iotmon.timefmt import iso_utc as iso_ms  # the simulator's timestamps


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run_for(sim: Simulator, clock: FakeClock, seconds: float, step: float = 0.05) -> None:
    end = clock.t + seconds
    while clock.t < end:
        sim.tick()
        clock.t += step


def make(rate: float = 1.0, anomaly_rate: float = 0.0) -> tuple[Simulator, FakeClock, list[dict]]:  # type: ignore[type-arg]
    clock = FakeClock()
    sent: list[dict] = []  # type: ignore[type-arg]
    sim = Simulator(
        list(SEEDED),
        send=lambda k, v: sent.append(orjson.loads(v)),
        rate=rate,
        anomaly_rate=anomaly_rate,
        seed=1,
        clock=clock,
    )
    return sim, clock, sent


def test_each_device_sends_at_its_interval() -> None:
    sim, clock, sent = make()
    run_for(sim, clock, 60)
    counts = Counter(m["deviceId"] for m in sent)
    for spec in SEEDED:
        assert abs(counts[spec.device_id] - 60 / spec.interval_s) <= 1, spec.device_id


def test_the_rate_multiplier_divides_every_interval() -> None:
    sim, clock, sent = make(rate=4)
    run_for(sim, clock, 30)
    counts = Counter(m["deviceId"] for m in sent)
    assert abs(counts["device-003"] - 120) <= 1
    assert abs(counts["device-004"] - 24) <= 1


def test_messages_follow_the_contract() -> None:
    sim, clock, sent = make()
    run_for(sim, clock, 5)
    msg = next(m for m in sent if m["deviceId"] == "device-001")
    assert set(msg) == {
        "deviceId",
        "timestamp",
        "sensorType",
        "value",
        "unit",
        "location",
        "status",
    }
    assert msg["sensorType"] == "temperature"
    assert msg["unit"] == "celsius"
    assert msg["timestamp"].endswith("Z")
    assert len(msg["timestamp"]) == len("2025-01-11T10:00:00.000Z")


def test_iso_ms() -> None:
    assert iso_ms(1736589600.25) == "2025-01-11T10:00:00.250Z"


def test_a_high_scenario_drives_the_device_past_its_threshold_then_ends() -> None:
    sim, clock, sent = make()
    sim.start_scenario(Scenario.make("device-001", "overheat", 30))
    run_for(sim, clock, 29)
    temps = [m["value"] for m in sent if m["deviceId"] == "device-001"]
    assert max(temps[-5:]) > 85
    sent.clear()
    run_for(sim, clock, 20)
    temps = [m["value"] for m in sent if m["deviceId"] == "device-001"]
    assert all(t <= 80 for t in temps[1:])
    assert "device-001" not in sim.scenarios


def test_a_low_scenario_goes_below_the_lower_threshold() -> None:
    sim, clock, sent = make()
    sim.start_scenario(Scenario.parse("device-005:low:1m"))
    run_for(sim, clock, 30)
    assert min(m["value"] for m in sent if m["deviceId"] == "device-005") < 80


def test_an_offline_scenario_silences_the_device_only() -> None:
    sim, clock, sent = make()
    sim.start_scenario(Scenario.make("device-003", "offline", 20))
    run_for(sim, clock, 19)
    devices = {m["deviceId"] for m in sent}
    assert "device-003" not in devices
    assert {"device-001", "device-002", "device-004", "device-005"} <= devices
    run_for(sim, clock, 5)
    assert any(m["deviceId"] == "device-003" for m in sent)  # back after the scenario


@pytest.mark.parametrize("text", ["device-001:boil:10", "device-001:high", "device-001:high:x"])
def test_bad_scenarios_are_refused_clearly(text: str) -> None:
    with pytest.raises(ScenarioError):
        Scenario.parse(text)


def test_unknown_device_scenario_is_refused() -> None:
    sim, _, _ = make()
    with pytest.raises(ScenarioError, match="no simulated device"):
        sim.start_scenario(Scenario.make("device-999", "high", 10))


def test_durations() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("2m") == 120
    assert parse_duration("1h") == 3600
    assert parse_duration("500ms") == 0.5


def test_an_anomaly_scenario_jumps_inside_the_thresholds() -> None:
    sim, clock, sent = make()
    run_for(sim, clock, 20)
    before = [m["value"] for m in sent if m["deviceId"] == "device-001"]
    sim.start_scenario(Scenario.make("device-001", "anomaly", 10))
    sent.clear()
    run_for(sim, clock, 5)
    during = [m["value"] for m in sent if m["deviceId"] == "device-001"]
    assert during
    assert all(15 <= v <= 85 for v in during)  # no threshold crossed
    assert min(abs(v - sum(before) / len(before)) for v in during) > 15  # far from the pattern

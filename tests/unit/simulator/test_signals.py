from __future__ import annotations

import random
import statistics

import pytest

from iotmon.devices.models import SEEDED, fleet
from iotmon.simulator.signals import Signal

DAY = 86_400.0


def by_id(device_id: str):  # type: ignore[no-untyped-def]
    return next(d for d in SEEDED if d.device_id == device_id)


@pytest.mark.parametrize("spec", SEEDED, ids=lambda d: d.device_id)
def test_without_anomalies_a_day_stays_in_the_normal_range(spec) -> None:  # type: ignore[no-untyped-def]
    sig = Signal(spec, anomaly_rate=0.0, rng=random.Random(1))
    values = [sig.next(t)[0] for t in range(0, int(DAY), 30)]
    assert min(values) >= spec.normal_min
    assert max(values) <= spec.normal_max
    # Not a flat line: noise and the daily cycle make it move.
    assert statistics.pstdev(values) > 0.01 * (spec.normal_max - spec.normal_min)


def test_the_daily_cycle_peaks_in_the_afternoon() -> None:
    spec = by_id("device-001")  # temperature, peak 15:00 UTC
    sig = Signal(spec, anomaly_rate=0.0, rng=random.Random(2))
    day0 = 1_700_000_000 - 1_700_000_000 % 86_400
    afternoon = [sig.next(day0 + 15 * 3600 + s)[0] for s in range(0, 1800, 2)]
    night = [sig.next(day0 + DAY + 3 * 3600 + s)[0] for s in range(0, 1800, 2)]
    assert statistics.mean(afternoon) > statistics.mean(night) + 5


@pytest.mark.parametrize("spec", SEEDED, ids=lambda d: d.device_id)
def test_about_five_percent_are_anomalies_and_each_is_past_a_threshold(spec) -> None:  # type: ignore[no-untyped-def]
    sig = Signal(spec, anomaly_rate=0.05, rng=random.Random(3))
    results = [sig.next(float(t)) for t in range(20_000)]
    anomalies = [v for v, a in results if a]
    assert 0.04 < len(anomalies) / len(results) < 0.06
    for v in anomalies:
        above = spec.alert_max is not None and v > spec.alert_max
        below = spec.alert_min is not None and v < spec.alert_min
        assert above or below, f"anomaly {v} of {spec.device_id} is not past a threshold"


def test_the_same_seed_gives_the_same_signal() -> None:
    spec = by_id("device-002")
    a = Signal(spec, rng=random.Random(7))
    b = Signal(spec, rng=random.Random(7))
    assert [a.next(t) for t in range(500)] == [b.next(t) for t in range(500)]


def test_a_fleet_repeats_the_five_kinds_with_new_ids() -> None:
    devices = fleet(12)
    assert [d.device_id for d in devices[:5]] == [d.device_id for d in SEEDED]
    assert devices[5].device_id == "device-0006"
    assert devices[11].device_id == "device-0012"
    assert devices[5].sensor_type == "temperature"
    assert devices[9].sensor_type == "quality"
    assert len({d.device_id for d in fleet(10_000)}) == 10_000

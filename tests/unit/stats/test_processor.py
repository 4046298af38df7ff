from __future__ import annotations

from iotmon.stats.processor import DeviceConfig, Processor, ProcessorConfig

T0 = 1_700_000_000.0
TEMP = DeviceConfig("device-001", "temperature", "celsius", 20, 80, 15, 85)


def feed(proc: Processor, values: list[float], start: float = T0) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for i, v in enumerate(values):
        out += proc.add("device-001", start + i, v, start + i)
    return out


def test_breaches_are_candidates_and_clear_only_inside_the_normal_range() -> None:
    proc = Processor({"device-001": TEMP})
    feed(proc, [50.0] * 40)
    out = feed(proc, [90.0, 91.0], start=T0 + 40)
    assert [
        (c["type"], c["state"], c["threshold"]) for c in out if c["type"] != "data_anomaly"
    ] == [("threshold_exceeded", "active", 85)] * 2
    # 83 is below the threshold but above the normal range: still not clear (hysteresis).
    assert [c for c in feed(proc, [83.0], start=T0 + 42) if c["state"] == "clear"] == []
    assert proc.devices["device-001"].status == "warning"
    cleared = [c for c in feed(proc, [75.0], start=T0 + 43) if c["state"] == "clear"]
    assert [(c["type"], c["value"]) for c in cleared] == [("threshold_exceeded", 75.0)]
    assert proc.devices["device-001"].status == "normal"


def test_below_threshold_and_status() -> None:
    proc = Processor({"device-001": TEMP})
    out = feed(proc, [10.0])
    assert out[0]["type"] == "threshold_below"
    assert proc.devices["device-001"].status == "critical"


def test_a_jump_inside_the_thresholds_is_a_data_anomaly() -> None:
    proc = Processor({"device-001": TEMP}, ProcessorConfig(anomaly_z=4))
    feed(proc, [50.0 + (i % 5) * 0.2 for i in range(60)])
    out = feed(proc, [78.0], start=T0 + 60)
    assert [c["type"] for c in out] == ["data_anomaly"]
    assert out[0]["zscore"] > 4


def test_trend_warning_when_the_line_would_cross_within_the_horizon() -> None:
    proc = Processor({"device-001": TEMP}, ProcessorConfig(trend_horizon_s=900))
    feed(proc, [60 + i * 0.02 for i in range(600)])  # +1.2 per minute, now ~72
    snap = proc.snapshot("device-001", T0 + 600)
    out = proc.trend_candidates("device-001", snap["stats1h"])
    assert [c["type"] for c in out] == ["trend_warning"]
    assert out[0]["threshold"] == 85
    assert out[0]["projected"] > 85


def test_unconfigured_devices_take_unit_and_type_from_their_readings() -> None:
    proc = Processor({})
    proc.add("press-9", T0, 3.0, T0, "pressure", "psi")
    assert proc.snapshot("press-9", T0)["current"]["unit"] == "psi"

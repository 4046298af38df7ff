"""The pending condition (Grafana's ``for``): threshold breaches wait for it, anomalies and
trend warnings fire at once."""

from __future__ import annotations

from iotmon.alerts.rules import BreachTracker, RuleConfig
from iotmon.config import Settings


def test_a_threshold_breach_fires_at_its_second_reading_by_default() -> None:
    tracker = BreachTracker(RuleConfig(min_readings=Settings().alert_min_readings))
    assert not tracker.observe("device-001", "threshold_exceeded", 0.0)
    assert tracker.observe("device-001", "threshold_exceeded", 1.0)
    # A reading back in range clears it: a lone spike never fires.
    tracker.clear("device-001", "threshold_exceeded")
    assert not tracker.observe("device-001", "threshold_exceeded", 2.0)
    assert not tracker.observe("device-002", "threshold_below", 2.0)


def test_anomalies_and_trend_warnings_fire_at_once() -> None:
    tracker = BreachTracker(RuleConfig(min_readings=3, min_duration_s=60))
    assert tracker.observe("device-001", "data_anomaly", 0.0)
    assert tracker.observe("device-001", "trend_warning", 0.0)
    assert not tracker.observe("device-001", "threshold_exceeded", 0.0)


def test_min_duration_holds_a_breach_back_until_it_lasted() -> None:
    tracker = BreachTracker(RuleConfig(min_readings=1, min_duration_s=10))
    assert not tracker.observe("d", "threshold_exceeded", 0.0)
    assert not tracker.observe("d", "threshold_exceeded", 5.0)
    assert tracker.observe("d", "threshold_exceeded", 10.0)

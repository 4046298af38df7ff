"""State rules (``state_duration``): the profile format's ``stateAlert`` and its checks, the rules
derived from profiles and devices, a device's run of equal values, and the verdict at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from iotmon.alerts import rules
from iotmon.alerts.candidates import decode
from iotmon.alerts.models import CANDIDATE_TYPES, TYPES
from iotmon.bus.pipeline import Rejection
from iotmon.profiles.models import Channel

DOOR: dict[str, Any] = {
    "name": "door-sensor-1",
    "topic": "cmnd/{device}/access-control-mode/+/door-sensors",
    "path": "door-sensor-1",
    "encoding": "json_boolean",
    "sensorType": "door",
    "unit": "open",
}
LEVEL: dict[str, Any] = {
    "name": "value",
    "topic": "devices/{device}/telemetry",
    "path": "value",
    "encoding": "json_number",
    "sensorType": "pressure",
    "unit": "psi",
}
T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def test_a_state_alert_is_part_of_a_channel_with_defaults() -> None:
    c = Channel.model_validate(DOOR | {"stateAlert": {"state": 1, "forSeconds": 30}})
    assert c.stateAlert is not None
    assert (c.stateAlert.state, c.stateAlert.forSeconds) == (1, 30)
    assert c.stateAlert.severity == "medium"
    assert c.stateAlert.message == ""
    assert Channel.model_validate(DOOR).stateAlert is None


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        ({"state": 2, "forSeconds": 30}, "values are 0 and 1, never 2"),
        ({"state": 1, "forSeconds": -1}, "stateAlert.forSeconds"),
        ({"state": 1, "forSeconds": 86401}, "less than or equal to 86400"),
        ({"state": 1, "forSeconds": float("nan")}, "stateAlert.forSeconds"),
        ({"state": 1, "forSeconds": 30, "severity": "warning"}, "'high' or 'critical'"),
        ({"state": 1, "forSeconds": 30, "message": "a\nb"}, "stateAlert.message"),
        ({"state": 1, "forSeconds": 30, "message": "x" * 101}, "stateAlert.message"),
        ({"state": 1, "forSeconds": 30, "after": 5}, "stateAlert.after"),
        ({"forSeconds": 30}, "stateAlert.state"),
        ({"state": 1}, "stateAlert.forSeconds"),
        ({"state": 1e10, "forSeconds": 1}, "stateAlert.state"),
    ],
)
def test_bad_state_alerts_are_refused_naming_the_problem(
    alert: dict[str, Any], expected: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Channel.model_validate(DOOR | {"stateAlert": alert})
    assert expected in str(caught.value)


def test_a_string_channel_cannot_have_a_state_alert() -> None:
    reader = DOOR | {"encoding": "string", "path": None, "sensorType": "access_read"}
    with pytest.raises(ValidationError, match="never change"):
        Channel.model_validate(reader | {"stateAlert": {"state": 1, "forSeconds": 5}})


def test_a_number_channel_may_alert_on_any_value() -> None:
    c = Channel.model_validate(LEVEL | {"stateAlert": {"state": 7.5, "forSeconds": 0}})
    assert c.stateAlert is not None
    assert c.stateAlert.state == 7.5


def test_rules_come_from_the_profiles_of_the_devices_that_use_them() -> None:
    alert = {"state": 1, "forSeconds": 30, "severity": "high", "message": "door open"}
    profiles = {
        "f2": [DOOR | {"stateAlert": alert}, DOOR | {"name": "door-sensor-2"}],
        "single": [LEVEL | {"stateAlert": {"state": 0, "forSeconds": 5}}],
        "broken": [DOOR | {"stateAlert": {"state": 3, "forSeconds": 1}}],
    }
    devices = [("f2-a", "f2"), ("f2-b", "f2"), ("p-1", "single"), ("x", "broken"), ("y", "gone")]
    found, bad = rules.state_rules(profiles, devices)
    # A multi-channel profile's readings carry <device>:<channel>; a single channel's, the device.
    assert set(found) == {"f2-a:door-sensor-1", "f2-b:door-sensor-1", "p-1"}
    door = found["f2-a:door-sensor-1"]
    assert (door.state, door.for_s, door.severity) == (1, 30, "high")
    assert door.message() == "f2-a:door-sensor-1: door open for more than 30 s"
    # Without a message, the state says what it is.
    assert found["p-1"].message() == "p-1: pressure = 0 (psi) for more than 5 s"
    assert found["p-1"].severity == "medium"
    assert set(bad) == {"broken"}
    assert "never 3" in bad["broken"]


def test_a_device_s_own_state_alert_replaces_or_removes_its_profile_s() -> None:
    profiles = {"f2": [DOOR | {"stateAlert": {"state": 1, "forSeconds": 30}}]}
    devices = [("a", "f2"), ("b", "f2"), ("c", "f2")]
    overrides = [
        ("a", {"state": 1, "forSeconds": 300, "severity": "low"}, "door", "open"),
        ("b", False, "door", "open"),
        ("c", {"state": 1, "forSeconds": -5}, "door", "open"),  # refused: c keeps its profile's
        ("lone", {"state": 0, "forSeconds": 60}, "pressure", None),  # no profile needed
    ]
    found, bad = rules.state_rules(profiles, devices, overrides)
    assert set(found) == {"a", "c", "lone"}
    assert (found["a"].for_s, found["a"].severity) == (300, "low")
    assert found["a"].message() == "a: door = 1 (open) for more than 300 s"
    assert found["c"].for_s == 30
    assert found["lone"].message() == "lone: pressure = 0 for more than 60 s"
    assert list(bad) == ["device c"]


def test_the_verdict_over_time() -> None:
    rule = rules.StateRule("d", 1.0, 30.0, "medium", "door open")
    open_run = rules.Streak(1.0, at(0), at(5))
    assert rules.state_verdict(rule, open_run, at(29.9).timestamp()) == "waiting"
    assert rules.state_verdict(rule, open_run, at(30).timestamp()) == "due"
    # Time alone makes it due: no reading after the first is needed.
    assert rules.state_verdict(rule, open_run, at(3600).timestamp()) == "due"
    closed = rules.Streak(0.0, at(0), at(5))
    assert rules.state_verdict(rule, closed, at(3600).timestamp()) == "out"
    assert rules.state_verdict(rule, None, at(3600).timestamp()) == "unknown"
    assert rules.state_verdict(None, open_run, at(3600).timestamp()) == "no_rule"
    # A reading stamped ahead of the engine's clock is not yet long enough.
    ahead = rules.Streak(1.0, at(60), at(60))
    assert rules.state_verdict(rule, ahead, at(30).timestamp()) == "waiting"


def brute_force_run(readings: list[tuple[float, float]]) -> tuple[float, float, float]:
    """(value, first, last) of the last run of equal values, the long way."""
    value = readings[-1][1]
    i = len(readings) - 1
    while i > 0 and readings[i - 1][1] == value:
        i -= 1
    return value, readings[i][0], readings[-1][0]


@given(
    st.lists(
        st.tuples(st.integers(min_value=1, max_value=1000), st.sampled_from([0.0, 1.0, 2.5])),
        min_size=1,
        max_size=60,
    ),
    st.integers(min_value=1, max_value=59),
)
def test_a_run_extended_reading_by_reading_is_the_last_run(
    steps: list[tuple[int, float]], split: int
) -> None:
    """What the engine does with the readings newer than the last it read, in any number of
    looks, gives the run a full read would."""
    readings: list[tuple[float, float]] = []
    t = 0.0
    for gap, value in steps:
        t += gap
        readings.append((t, value))
    first_t, first_v = readings[0]
    streak = rules.Streak(first_v, at(first_t), at(first_t))
    looks = [readings[1:split], readings[split:]]
    for look in looks:
        for ts, value in look:
            streak = streak.extend(at(ts), value)
    value, since, last = brute_force_run(readings)
    assert (streak.value, streak.since, streak.last) == (value, at(since), at(last))


def test_state_duration_is_an_alert_type_but_never_a_candidate() -> None:
    """The engine reads states from the readings itself: a candidate on the bus cannot open
    or resolve a state alert."""
    assert "state_duration" in TYPES
    assert "state_duration" not in CANDIDATE_TYPES
    raw = orjson.dumps({"deviceId": "f2-a:door-sensor-1", "type": "state_duration", "value": 1})
    with pytest.raises(Rejection):
        decode(raw)
    assert rules.severity("state_duration", 1.0, None, None) == "medium"
    assert "for more than 30 s" in rules.message("state_duration", "d", 1.0, 30.0)

"""The valid sensor types: the built-in ones and those stored profiles declare."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from iotmon.profiles.models import BUILTIN_RANGES, Profile
from iotmon.profiles.sensors import ranges_of
from iotmon.profiles.service import range_conflict


def channel(sensor_type: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": f"c-{sensor_type}".replace("_", "-"),
        "topic": "air/{device}/telemetry",
        "path": sensor_type,
        "encoding": "json_number",
        "sensorType": sensor_type,
        "unit": "u",
        **extra,
    }


CO2 = channel("co2", range={"min": 0, "max": 5000})


def test_the_union_of_built_in_and_declared_types() -> None:
    other = [{**CO2, "range": {"min": 0, "max": 10}}]  # only by writing the table by hand
    ranges, skipped = ranges_of([("b-other", other), ("a-air", [CO2]), ("bad", [{"x": 1}])])
    assert ranges["co2"] == (0.0, 5000.0)  # the first by name wins
    assert {k: ranges[k] for k in BUILTIN_RANGES} == BUILTIN_RANGES
    assert len(skipped) == 2
    assert "'b-other'" in skipped[0]
    assert "'a-air'" in skipped[0]
    assert "'bad' is invalid" in skipped[1]
    # A built-in type's range is not the profiles' to change, even in the table.
    hot = [channel("temperature", range={"min": 0, "max": 1})]
    assert ranges_of([("hot", hot)])[0]["temperature"] == BUILTIN_RANGES["temperature"]


def test_a_channel_declares_the_range_of_a_type_that_is_not_built_in() -> None:
    with pytest.raises(ValidationError, match="is not built in"):
        Profile.model_validate({"name": "p", "channels": [channel("co2")]})
    with pytest.raises(ValidationError, match="is built in with range"):
        Profile.model_validate(
            {"name": "p", "channels": [channel("pressure", range={"min": 0, "max": 9})]}
        )
    with pytest.raises(ValidationError, match="must be below max"):
        Profile.model_validate({"name": "p", "channels": [{**CO2, "range": {"min": 1, "max": 1}}]})
    with pytest.raises(ValidationError, match="less than or equal to 1000000000000"):
        Profile.model_validate(
            {"name": "p", "channels": [{**CO2, "range": {"min": 0, "max": 1e13}}]}
        )
    p = Profile.model_validate(
        {"name": "p", "channels": [CO2, channel("pressure", range={"min": -1e4, "max": 1e7})]}
    )
    assert [c.value_range() for c in p.channels] == [(0.0, 5000.0), (-1e4, 1e7)]
    assert list(p.declared_ranges()) == ["co2"]


def test_a_conflict_names_the_other_profile_and_the_field() -> None:
    mine = Profile.model_validate(
        {"name": "mine", "channels": [channel("door"), {**CO2, "range": {"min": 0, "max": 1}}]}
    )
    assert range_conflict("mine", mine, [("theirs", [channel("door")])]) is None
    assert range_conflict("mine", mine, [("mine", [CO2])]) is None  # itself, being replaced
    got = range_conflict("mine", mine, [("broken", [{"x": 1}]), ("theirs", [CO2])])
    assert got is not None
    assert got.field == "channels.1.range"
    assert "profile 'theirs'" in str(got)
    assert "[0, 5000]" in str(got)

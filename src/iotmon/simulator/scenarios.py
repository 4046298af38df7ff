"""Scenarios: drive a device past its thresholds, or silence it, for a while.

``high`` (alias ``overheat``) ramps above alert_max, ``low`` below alert_min, ``drift`` creeps
slowly towards the upper threshold and past it, ``offline`` sends nothing, ``anomaly`` jumps
to the far edge of the normal range (far outside the recent pattern, inside the thresholds).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from iotmon.devices.models import DeviceSpec

KINDS = ("high", "low", "drift", "offline", "anomaly")
ALIASES = {"overheat": "high", "spike": "high", "drop": "low", "silence": "offline"}


class ScenarioError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Scenario:
    device_id: str
    kind: str
    duration_s: float
    ramp_s: float = 5.0

    @classmethod
    def parse(cls, text: str) -> Scenario:
        """``device-001:high:60`` or ``device-001:offline:2m``."""
        parts = text.split(":")
        if len(parts) != 3:
            raise ScenarioError(f"scenario {text!r}: expected DEVICE:KIND:DURATION")
        device_id, kind, duration = parts
        return cls.make(device_id, kind, parse_duration(duration))

    @classmethod
    def make(cls, device_id: str, kind: str, duration_s: float) -> Scenario:
        kind = ALIASES.get(kind, kind)
        if kind not in KINDS:
            raise ScenarioError(
                f"unknown scenario kind {kind!r}: use one of {', '.join(KINDS + tuple(ALIASES))}"
            )
        if not 0 < duration_s <= 86_400:
            raise ScenarioError("scenario duration must be between 0 and 24 hours")
        return cls(device_id, kind, duration_s)


def parse_duration(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not m:
        raise ScenarioError(f"duration {text!r}: expected e.g. 30, 30s, 2m, 1h")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    return float(m.group(1)) * scale


@dataclass
class ActiveScenario:
    scenario: Scenario
    started: float  # unix time

    def ends(self) -> float:
        return self.started + self.scenario.duration_s

    def value(self, spec: DeviceSpec, t: float, normal: float) -> float | None:
        """The scenario's value at ``t`` (None = send nothing)."""
        kind = self.scenario.kind
        if kind == "offline":
            return None
        span = spec.normal_max - spec.normal_min
        elapsed = t - self.started
        if kind == "drift":
            top = (spec.alert_max if spec.alert_max is not None else spec.normal_max) + 0.1 * span
            frac = min(1.0, elapsed / self.scenario.duration_s)
            return normal + (top - normal) * frac
        if kind == "anomaly":
            middle = (spec.normal_min + spec.normal_max) / 2
            edge = spec.normal_min if normal > middle else spec.normal_max
            return edge - 0.01 * span if edge == spec.normal_max else edge + 0.01 * span
        frac = min(1.0, elapsed / self.scenario.ramp_s) if self.scenario.ramp_s > 0 else 1.0
        if kind == "high":
            target = spec.alert_max if spec.alert_max is not None else spec.normal_max
            target += 0.15 * span
        else:
            target = spec.alert_min if spec.alert_min is not None else spec.normal_min
            target = max(target - 0.15 * span, 0.0)
        return normal + (target - normal) * frac

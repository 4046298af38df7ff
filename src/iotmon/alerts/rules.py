"""Rules: when a candidate becomes an alert (duration condition), its severity, its message;
and the state rules (``state_duration``) that profiles' ``stateAlert`` channels declare."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import ValidationError

from iotmon.profiles.models import ProfileBody, StateAlert, channel_device_id

STATE = "state_duration"
# The alert types the pending condition (min_readings, min_duration_s) applies to.
PENDING_TYPES = frozenset({"threshold_exceeded", "threshold_below"})


@dataclass(frozen=True, slots=True)
class RuleConfig:
    min_duration_s: float = 0.0  # the breach must hold this long ...
    min_readings: int = 1  # ... and for this many readings (default: immediately)
    offline_timeout_s: float = 30.0
    escalate_after_s: float = 300.0
    anomaly_quiet_s: float = 300.0  # a data_anomaly resolves after this long without another
    # Flap detection (alerts/flapping.py): more than flap_changes alerts opened or resolved for
    # a (device, type) within flap_window_s: flapping, until flap_quiet_s without a change.
    flap_changes: int = 0  # 0: off (the settings' defaults turn it on: README, alerts)
    flap_window_s: float = 600.0
    flap_quiet_s: float = 300.0


def severity(
    alert_type: str,
    value: float | None,
    threshold: float | None,
    span: float | None,
    zscore: float | None = None,
) -> str:
    """From the type, and for thresholds from how far past them the value is (in units of the
    device's normal span)."""
    if alert_type in ("threshold_exceeded", "threshold_below"):
        if value is None or threshold is None or not span:
            return "high"
        excess = abs(value - threshold) / span
        if excess >= 0.25:
            return "critical"
        if excess >= 0.1:
            return "high"
        return "medium"
    if alert_type == "device_offline":
        return "high"
    if alert_type == "data_anomaly":
        return "medium" if zscore is not None and abs(zscore) >= 6 else "low"
    if alert_type == STATE:
        return "medium"  # the profile's stateAlert says; this is its default
    return "low"  # trend_warning: nothing is wrong yet


def message(
    alert_type: str,
    device_id: str,
    value: float | None,
    threshold: float | None,
    unit: str = "",
    timeout_s: float | None = None,
) -> str:
    u = f" {unit}" if unit else ""
    if alert_type == "threshold_exceeded":
        return f"{device_id}: {value}{u} is above the alert threshold {threshold}{u}"
    if alert_type == "threshold_below":
        return f"{device_id}: {value}{u} is below the alert threshold {threshold}{u}"
    if alert_type == "device_offline":
        return f"{device_id}: no data for more than {timeout_s:g} s"
    if alert_type == "data_anomaly":
        return f"{device_id}: {value}{u} is far outside its recent pattern"
    if alert_type == STATE:
        v, n = (f"{x:g}" if isinstance(x, float | int) else "?" for x in (value, threshold))
        return f"{device_id}: at {v}{u} for more than {n} s"
    return f"{device_id}: trend would cross {threshold}{u} soon (now {value}{u})"


@dataclass
class BreachTracker:
    """The duration condition: a (device, type) fires once its breach held long enough."""

    config: RuleConfig
    _since: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)

    def observe(self, device_id: str, alert_type: str, t: float) -> bool:
        """Record a breaching reading at ``t``; True when the condition is met. The pending
        condition holds back threshold breaches only: an anomaly or a trend warning is one
        reading's verdict by nature, and fires at once."""
        if alert_type not in PENDING_TYPES:
            return True
        key = (device_id, alert_type)
        first, n = self._since.get(key, (t, 0))
        n += 1
        self._since[key] = (first, n)
        return n >= self.config.min_readings and t - first >= self.config.min_duration_s

    def clear(self, device_id: str, alert_type: str) -> None:
        self._since.pop((device_id, alert_type), None)


# --- state rules ---


@dataclass(frozen=True, slots=True)
class StateRule:
    """A profile channel's ``stateAlert``, for the device id its readings carry."""

    device_id: str
    state: float
    for_s: float
    severity: str
    label: str  # what the state means: "door open"

    def message(self) -> str:
        return f"{self.device_id}: {self.label} for more than {self.for_s:g} s"


@dataclass(frozen=True, slots=True)
class Streak:
    """A device's latest run of equal values: the value, its first and its latest reading;
    ``known`` is False when the run began before the engine's look-back (``since`` is then
    the first reading within it, not the run's start)."""

    value: float
    since: datetime
    last: datetime
    known: bool = True

    def extend(self, at: datetime, value: float) -> Streak:
        """With a reading newer than ``last``: the same run, or a new one from ``at``."""
        if value == self.value:
            return Streak(self.value, self.since, max(self.last, at), self.known)
        return Streak(value, at, at)


StateVerdict = Literal["due", "waiting", "out", "unknown", "no_rule"]


def state_verdict(rule: StateRule | None, streak: Streak | None, now: float) -> StateVerdict:
    """Where a device stands against its state rule at ``now`` (unix seconds): ``due`` (in the
    state for ``for_s`` or longer), ``waiting`` (in it, not yet long enough), ``out`` (at another
    value), ``unknown`` (no reading in the look-back: an open alert stays open, none opens),
    ``no_rule`` (the rule is gone: an open alert resolves)."""
    if rule is None:
        return "no_rule"
    if streak is None:
        return "unknown"
    if streak.value != rule.state:
        return "out"
    return "due" if now - streak.since.timestamp() >= rule.for_s else "waiting"


def state_rules(
    profiles: Mapping[str, Any],
    devices: Iterable[tuple[str, str]],
    overrides: Iterable[tuple[str, Any, str, str | None]] = (),
) -> tuple[dict[str, StateRule], dict[str, str]]:
    """The state rules by reading device id (``<device>:<channel>`` for a multi-channel
    profile), from the stored profiles (name -> channels JSON) and the devices that use one
    ((device id, profile name)), then each device's own (``devices.state_alert``: (device id,
    false or a stateAlert object, its type, its unit)), which replaces or (false) removes its
    profile's; and what does not validate (a profile's name, or ``device <id>`` -> why: it
    gives no rule, as the decoder skips an invalid profile)."""
    bodies: dict[str, ProfileBody | None] = {}
    bad: dict[str, str] = {}
    out: dict[str, StateRule] = {}
    for device_id, name in devices:
        if name not in bodies:
            body = None
            if name in profiles:
                try:
                    body = ProfileBody.model_validate({"channels": profiles[name]})
                except ValidationError as exc:
                    bad[name] = str(exc)[:300]
            bodies[name] = body
        body = bodies[name]
        if body is None:
            continue
        for channel in body.channels:
            a = channel.stateAlert
            if a is None:
                continue
            rid = channel_device_id(device_id, body, channel)
            label = a.message or f"{channel.sensorType} = {a.state:g} ({channel.unit})"
            out[rid] = StateRule(rid, a.state, a.forSeconds, a.severity, label)
    for device_id, raw, sensor_type, unit in overrides:
        if raw is False:
            out.pop(device_id, None)
            continue
        try:
            a = StateAlert.model_validate(raw)
        except ValidationError as exc:
            bad[f"device {device_id}"] = str(exc)[:300]
            continue
        label = a.message or f"{sensor_type} = {a.state:g}" + (f" ({unit})" if unit else "")
        out[device_id] = StateRule(device_id, a.state, a.forSeconds, a.severity, label)
    return out, bad

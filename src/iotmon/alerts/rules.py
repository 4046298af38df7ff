"""Rules: when a candidate becomes an alert (duration condition), its severity, its message."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RuleConfig:
    min_duration_s: float = 0.0  # the breach must hold this long ...
    min_readings: int = 1  # ... and for this many readings (default: immediately)
    offline_timeout_s: float = 30.0
    escalate_after_s: float = 300.0
    anomaly_quiet_s: float = 300.0  # a data_anomaly resolves after this long without another


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
    return f"{device_id}: trend would cross {threshold}{u} soon (now {value}{u})"


@dataclass
class BreachTracker:
    """The duration condition: a (device, type) fires once its breach held long enough."""

    config: RuleConfig
    _since: dict[tuple[str, str], tuple[float, int]] = field(default_factory=dict)

    def observe(self, device_id: str, alert_type: str, t: float) -> bool:
        """Record a breaching reading at ``t``; True when the condition is met."""
        key = (device_id, alert_type)
        first, n = self._since.get(key, (t, 0))
        n += 1
        self._since[key] = (first, n)
        return n >= self.config.min_readings and t - first >= self.config.min_duration_s

    def clear(self, device_id: str, alert_type: str) -> None:
        self._since.pop((device_id, alert_type), None)

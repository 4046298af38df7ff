"""Realistic sensor signals: a daily cycle, slow drift, noise, and injected anomalies.

value(t) = centre + daily cycle + drift (Ornstein-Uhlenbeck, mean-reverting) + noise, kept in the
normal range except for injected anomalies, which land past an alert threshold (or, for a
device without one on that side, far outside its normal range).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from iotmon.devices.models import DeviceSpec

DAY_S = 86_400.0


@dataclass(frozen=True, slots=True)
class SignalShape:
    cycle: float  # daily cycle amplitude, fraction of the normal span
    drift_sigma: float  # drift volatility, fraction of the span per sqrt(hour)
    drift_reversion: float  # 1/s pull of the drift back to zero
    noise: float  # gaussian noise, fraction of the span
    centre: float  # where in the normal range the signal sits (0..1)
    decimals: int
    peak_hour: float  # UTC hour of the daily maximum


SHAPES: dict[str, SignalShape] = {
    "temperature": SignalShape(0.12, 0.08, 1 / 1800, 0.015, 0.55, 2, 15.0),
    "pressure": SignalShape(0.06, 0.06, 1 / 1200, 0.02, 0.5, 2, 11.0),
    "vibration": SignalShape(0.10, 0.10, 1 / 600, 0.05, 0.4, 2, 14.0),
    "production": SignalShape(0.25, 0.05, 1 / 3600, 0.03, 0.55, 0, 10.0),
    "quality": SignalShape(0.05, 0.05, 1 / 3600, 0.02, 0.7, 2, 12.0),
    # An F2 controller's RS-485 sensor (simulator/mqtt.py): relative humidity, highest at dawn.
    "humidity": SignalShape(0.10, 0.06, 1 / 1800, 0.02, 0.5, 1, 5.0),
}


class Signal:
    """One device's signal. Deterministic for a given seed and sequence of times."""

    def __init__(
        self, spec: DeviceSpec, *, anomaly_rate: float = 0.05, rng: random.Random | None = None
    ) -> None:
        self.spec = spec
        self.shape = SHAPES[spec.sensor_type]
        self.anomaly_rate = anomaly_rate
        self.rng = rng or random.Random()
        self.span = spec.normal_max - spec.normal_min
        self.drift = 0.0
        self._last_t: float | None = None

    def baseline(self, t: float) -> float:
        """The value without noise, drift or anomalies at unix time ``t``."""
        s = self.shape
        centre = self.spec.normal_min + s.centre * self.span
        phase = 2 * math.pi * ((t % DAY_S) / DAY_S - s.peak_hour / 24)
        return centre + s.cycle * self.span * math.cos(phase)

    def normal(self, t: float) -> float:
        s = self.shape
        if self._last_t is not None:
            dt = max(0.0, min(t - self._last_t, 3600.0))
            # Exact OU step: decay towards 0, plus noise scaled to the elapsed time.
            decay = math.exp(-s.drift_reversion * dt)
            var = (s.drift_sigma * self.span) ** 2 / 3600 / (2 * s.drift_reversion)
            self.drift = self.drift * decay + self.rng.gauss(0, math.sqrt(var * (1 - decay**2)))
        self._last_t = t
        v = self.baseline(t) + self.drift + self.rng.gauss(0, s.noise * self.span)
        # Stay inside the normal range: a healthy device does not alarm.
        return min(max(v, self.spec.normal_min), self.spec.normal_max)

    def anomalous(self) -> float:
        """A value past a threshold: a spike up or a drop down."""
        spec, rng = self.spec, self.rng
        sides = [
            side
            for side, limit in (("high", spec.alert_max), ("low", spec.alert_min))
            if limit is not None
        ]
        side = rng.choice(sides) if sides else "high"
        if side == "high":
            base = spec.alert_max if spec.alert_max is not None else spec.normal_max
            v = base + rng.uniform(0.02, 0.3) * self.span
        else:
            base = spec.alert_min if spec.alert_min is not None else spec.normal_min
            v = base - rng.uniform(0.02, 0.3) * self.span
        if spec.sensor_type in ("quality", "production", "vibration", "humidity"):
            v = max(v, 0.0)
        if spec.sensor_type in ("quality", "humidity"):
            v = min(v, 100.0)
        return v

    def next(self, t: float) -> tuple[float, bool]:
        """(value, is_anomaly) at unix time ``t``."""
        v = self.normal(t)
        anomaly = self.rng.random() < self.anomaly_rate
        if anomaly:
            v = self.anomalous()
        return round(v, self.shape.decimals), anomaly

"""Per-device live state: current value and status, 1 h and 24 h windows, anomaly score, and
the alert candidates a reading raises. Pure: rows in, updates and candidates out."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from iotmon.devices.models import reading_status
from iotmon.stats.anomaly import Ewma
from iotmon.stats.windows import Stats, Window

# iso_utc(t) of a reading's time, formatted once per flush per device and once per candidate:
# the date and time to the second come from a cache, only the milliseconds are formatted (a
# third of iso_utc's cost). The rounding is datetime.fromtimestamp's (to the microsecond,
# half to even), then truncation to the millisecond, as isoformat does
# (tests/unit/stats/test_iso_ms.py checks it against iso_utc).
_SECONDS: dict[int, str] = {}


def iso_ms(t: float) -> str:
    """``iso_utc(t)``, faster."""
    s = math.floor(t)
    us = round((t - s) * 1e6)
    if us >= 1_000_000:
        s += 1
        us -= 1_000_000
    head = _SECONDS.get(s)
    if head is None:
        if len(_SECONDS) >= 4096:
            _SECONDS.clear()
        head = _SECONDS[s] = datetime.fromtimestamp(s, UTC).isoformat().replace("+00:00", "")
    return f"{head}.{us // 1000:03d}Z"


HOUR, DAY = 3600.0, 86400.0


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    device_id: str
    sensor_type: str = "unknown"
    unit: str = ""
    normal_min: float | None = None
    normal_max: float | None = None
    alert_min: float | None = None
    alert_max: float | None = None

    @property
    def scale(self) -> float:
        if self.normal_min is not None and self.normal_max is not None:
            return max(self.normal_max - self.normal_min, 1e-9)
        return 0.0

    def status(self, v: float) -> str:
        return reading_status(v, self.normal_min, self.normal_max, self.alert_min, self.alert_max)


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    bucket_1h_s: float = 60.0
    bucket_24h_s: float = 900.0
    anomaly_z: float = 4.0
    trend_horizon_s: float = 900.0


@dataclass
class DeviceState:
    config: DeviceConfig
    w1h: Window
    w24h: Window
    ewma: Ewma = field(default_factory=Ewma)
    value: float | None = None
    timestamp: float = 0.0
    status: str = "unknown"
    breaching: str | None = None  # the threshold alert type in force, if any
    trend_warned: bool = False


class Processor:
    def __init__(
        self, configs: dict[str, DeviceConfig], config: ProcessorConfig = ProcessorConfig()
    ) -> None:
        self.cfg = config
        self.configs = configs
        self.devices: dict[str, DeviceState] = {}
        self.dirty: set[str] = set()

    def state(self, device_id: str, sensor_type: str = "unknown", unit: str = "") -> DeviceState:
        st = self.devices.get(device_id)
        if st is None:
            windows = self.new_windows()
            st = DeviceState(
                # An unconfigured device is described by its readings until it is configured.
                config=self.configs.get(device_id) or DeviceConfig(device_id, sensor_type, unit),
                w1h=windows["w1h"],
                w24h=windows["w24h"],
            )
            self.devices[device_id] = st
        return st

    def new_windows(self) -> dict[str, Window]:
        """Empty windows, by the DeviceState field that holds each."""
        return {
            "w1h": Window(HOUR, self.cfg.bucket_1h_s),
            "w24h": Window(DAY, self.cfg.bucket_24h_s),
        }

    def reconfigure(self, configs: dict[str, DeviceConfig]) -> None:
        """Thresholds edited at run time take effect on the next reading."""
        self.configs = configs
        for device_id, st in self.devices.items():
            if device_id in configs:
                st.config = configs[device_id]

    def add(
        self,
        device_id: str,
        t: float,
        v: float,
        now: float,
        sensor_type: str = "unknown",
        unit: str = "",
    ) -> list[dict[str, Any]]:
        """Count one reading; return the alert candidates it raises."""
        st = self.state(device_id, sensor_type, unit)
        st.w1h.add(t, v, now)
        st.w24h.add(t, v, now)
        self.dirty.add(device_id)
        candidates: list[dict[str, Any]] = []
        cfg = st.config
        z = st.ewma.score(v)
        if t >= st.timestamp:
            st.value, st.timestamp, st.status = v, t, cfg.status(v)
        breach = None
        if cfg.alert_max is not None and v > cfg.alert_max:
            breach, threshold = "threshold_exceeded", cfg.alert_max
        elif cfg.alert_min is not None and v < cfg.alert_min:
            breach, threshold = "threshold_below", cfg.alert_min
        if breach is not None:
            st.breaching = breach
            candidates.append(self._candidate(st, breach, v, t, threshold=threshold, zscore=z))
        elif st.breaching is not None and st.status == "normal":
            # Back inside the normal range (not merely inside the thresholds): hysteresis.
            candidates.append(self._candidate(st, st.breaching, v, t, state="clear"))
            st.breaching = None
        outlier = abs(z) >= self.cfg.anomaly_z
        if outlier:
            candidates.append(self._candidate(st, "data_anomaly", v, t, zscore=z))
        st.ewma.update(v, is_outlier=outlier)
        return candidates

    def trend_candidates(self, device_id: str, stats_1h: Stats) -> list[dict[str, Any]]:
        """A trend_warning when the 1 h line would cross a threshold within the horizon."""
        st = self.devices[device_id]
        cfg, v = st.config, st.value
        if v is None or stats_1h.count < 30 or st.status == "critical":
            return []
        future = v + stats_1h.slope / 3600 * self.cfg.trend_horizon_s
        crossing = None
        if cfg.alert_max is not None and future > cfg.alert_max:
            crossing = cfg.alert_max
        elif cfg.alert_min is not None and future < cfg.alert_min:
            crossing = cfg.alert_min
        if crossing is None:
            if st.trend_warned:
                st.trend_warned = False
                return [self._candidate(st, "trend_warning", v, st.timestamp, state="clear")]
            return []
        st.trend_warned = True
        return [
            self._candidate(
                st,
                "trend_warning",
                v,
                st.timestamp,
                threshold=crossing,
                slopePerHour=stats_1h.slope,
                horizonS=self.cfg.trend_horizon_s,
                projected=future,
            )
        ]

    def _candidate(
        self, st: DeviceState, kind: str, v: float, t: float, **extra: Any
    ) -> dict[str, Any]:
        return {
            "deviceId": st.config.device_id,
            "type": kind,
            "value": v,
            "timestamp": iso_ms(t),
            "state": extra.pop("state", "active"),
            "sensorType": st.config.sensor_type,
            "unit": st.config.unit,
            **extra,
        }

    def current(self, device_id: str) -> dict[str, Any]:
        st = self.devices[device_id]
        return {
            "value": st.value,
            "timestamp": iso_ms(st.timestamp),
            "status": st.status,
            "unit": st.config.unit,
            "sensorType": st.config.sensor_type,
        }

    def snapshot(self, device_id: str, now: float | None = None) -> dict[str, Any]:
        """What the Redis keys and live events carry for one device."""
        now = time.time() if now is None else now
        st = self.devices[device_id]
        s1, s24 = st.w1h.stats(now, st.config.scale), st.w24h.stats(now, st.config.scale)
        return {
            "current": self.current(device_id),
            "stats1h": s1,
            "stats24h": s24,
        }

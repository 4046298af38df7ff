"""The five kinds of device (DESIGN.md 4.1) and fleets built from them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

ReadingStatus = Literal["normal", "warning", "critical"]
Connectivity = Literal["online", "offline", "unknown"]


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    device_id: str
    sensor_type: str
    unit: str
    location: str
    normal_min: float
    normal_max: float
    alert_min: float | None
    alert_max: float | None
    interval_s: float


SEEDED: tuple[DeviceSpec, ...] = (
    DeviceSpec("device-001", "temperature", "celsius", "assembly-line-1", 20, 80, 15, 85, 2.0),
    DeviceSpec("device-002", "pressure", "psi", "assembly-line-1", 10, 50, 5, 55, 3.0),
    DeviceSpec("device-003", "vibration", "hz", "assembly-line-2", 0, 100, None, 120, 1.0),
    DeviceSpec(
        "device-004", "production", "units/hour", "packaging-line-1", 100, 500, 50, None, 5.0
    ),
    DeviceSpec("device-005", "quality", "percentage", "quality-control-1", 85, 100, 80, None, 4.0),
)

# The built-in sensor types and their physical ranges: a reading outside its type's range is
# rejected (``value_out_of_range``), never stored. Device profiles declare any other type with
# its range (profiles/models.py, profiles/sensors.py); a type neither built in nor declared is
# rejected (``unknown_sensor_type``). Wide enough for any real sensor of the kind, narrow
# enough that no sum of squares over years of readings can overflow a double. The five kinds
# of the specification, then seed 002's F2 controller's (states are 0/1, a QR/NFC read is 1).
VALUE_RANGE: dict[str, tuple[float, float]] = {
    "temperature": (-460.0, 10_000.0),  # below absolute zero in °F, up to a furnace
    "pressure": (-1e4, 1e7),
    "vibration": (-1e6, 1e6),
    "production": (0.0, 1e9),
    "quality": (0.0, 100.0),  # a percentage
    "humidity": (0.0, 100.0),  # relative, percent
    "door": (0.0, 1.0),  # 1 = open
    "strike": (0.0, 1.0),  # 1 = released
    "button": (0.0, 1.0),  # 1 = pressed
    "motion": (0.0, 1.0),  # 1 = detected
    "siren": (0.0, 1.0),  # 1 = sounding
    "access_read": (0.0, 1.0),  # 1 per code read
}
SENSOR_TYPES: frozenset[str] = frozenset(VALUE_RANGE)
assert {d.sensor_type for d in SEEDED} <= SENSOR_TYPES


def reading_status(
    value: float,
    normal_min: float | None,
    normal_max: float | None,
    alert_min: float | None,
    alert_max: float | None,
) -> ReadingStatus:
    """A reading's status against its device's thresholds, the one rule every part uses
    (processing's live status, the API's ``/current``, the dashboard's colours): ``critical``
    past an alert threshold, ``warning`` outside the normal range, else ``normal``."""
    if (alert_max is not None and value > alert_max) or (
        alert_min is not None and value < alert_min
    ):
        return "critical"
    if (normal_max is not None and value > normal_max) or (
        normal_min is not None and value < normal_min
    ):
        return "warning"
    return "normal"


def offline_timeout(device_timeout_s: float | None, default_s: float) -> float:
    """How long a device may stay silent before it is offline: its own ``offline_timeout_s``,
    else the deployment's ``IOTMON_ALERT_OFFLINE_TIMEOUT_S``. The alert engine (device_offline)
    and the API (``connectivity``) both ask here, so the badge and the alert agree."""
    return float(device_timeout_s) if device_timeout_s else default_s


_LOCATIONS = ("assembly-line", "packaging-line", "quality-control", "press-shop", "paint-shop")


def fleet(count: int) -> list[DeviceSpec]:
    """The five seeded devices, then ``device-0006``... of the same five kinds."""
    devices = list(SEEDED[:count])
    for n in range(len(SEEDED) + 1, count + 1):
        kind = SEEDED[(n - 1) % len(SEEDED)]
        line = (n - 1) // len(SEEDED)
        location = f"{_LOCATIONS[line % len(_LOCATIONS)]}-{line // len(_LOCATIONS) + 1}"
        devices.append(replace(kind, device_id=f"device-{n:04d}", location=location))
    return devices

"""Alert types, severities, states, and the shape of an alert."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from iotmon.timefmt import iso_utc

AlertType = Literal[
    "threshold_exceeded",
    "threshold_below",
    "device_offline",
    "data_anomaly",
    "trend_warning",
    "state_duration",
]
# What a candidate on the alerts topic may be: state_duration is the engine's own (it reads the
# state from the readings and watches the time), so a candidate of that type is refused.
CandidateType = Literal[
    "threshold_exceeded", "threshold_below", "device_offline", "data_anomaly", "trend_warning"
]
Severity = Literal["low", "medium", "high", "critical"]
Status = Literal["triggered", "acknowledged", "escalated", "resolved"]

TYPES: tuple[str, ...] = (
    "threshold_exceeded",
    "threshold_below",
    "device_offline",
    "data_anomaly",
    "trend_warning",
    "state_duration",  # a channel's value at one state too long (a profile's stateAlert)
)
CANDIDATE_TYPES: tuple[str, ...] = tuple(t for t in TYPES if t != "state_duration")
SEVERITIES: tuple[str, ...] = ("low", "medium", "high", "critical")  # in rank order
OPEN: tuple[str, ...] = ("triggered", "acknowledged", "escalated")


class AlertError(Exception):
    """A lifecycle request that cannot be done (the message says why, for a person)."""


class AlertNotFound(AlertError):
    pass


@dataclass(frozen=True, slots=True)
class Alert:
    id: int
    device_id: str
    alert_type: str
    message: str
    severity: str
    value: float | None
    threshold: float | None
    status: str
    triggered_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    resolved_at: datetime | None
    resolved_by: str | None
    escalated_at: datetime | None
    count: int
    last_value: float | None
    last_seen_at: datetime | None
    silenced: bool
    flapping: bool = False  # changing state too often: notifications held (alerts/flapping.py)

    COLUMNS = (
        "id, device_id, alert_type, message, severity, value, threshold, status,"
        " triggered_at, acknowledged_at, acknowledged_by, resolved_at, resolved_by,"
        " escalated_at, count, last_value, last_seen_at, silenced, flapping"
    )

    def as_event(self) -> dict[str, Any]:
        """The payload of alert-* events and of ``alerts:active`` (camelCase)."""

        def iso(t: datetime | None) -> str | None:
            return iso_utc(t) if t else None

        return {
            "id": self.id,
            "alertId": self.id,
            "deviceId": self.device_id,
            "type": self.alert_type,
            "message": self.message,
            "severity": self.severity,
            "value": self.value,
            "threshold": self.threshold,
            "status": self.status,
            "triggeredAt": iso(self.triggered_at),
            "timestamp": iso(self.triggered_at),
            "acknowledgedAt": iso(self.acknowledged_at),
            "acknowledgedBy": self.acknowledged_by,
            "resolvedAt": iso(self.resolved_at),
            "resolvedBy": self.resolved_by,
            "escalatedAt": iso(self.escalated_at),
            "count": self.count,
            "lastValue": self.last_value,
            "lastSeenAt": iso(self.last_seen_at),
            "silenced": self.silenced,
            "flapping": self.flapping,
        }

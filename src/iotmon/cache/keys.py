"""Every Redis key the roles share (DESIGN.md 4.5), in one place: processing writes them,
the alert engine and the API read them. Keys private to one module (the live-event sequence
and replay streams of realtime/publish.py) stay with it."""

from __future__ import annotations

LAST_SEEN = "devices:last_seen"  # sorted set: device -> last reading's unix time
SYSTEM_METRICS = "system:metrics"  # JSON: the key figures
ACTIVE_ALERTS = "alerts:active"  # hash: alert id -> the open alert's JSON
PROCESSING_SYNCED = "live:state:synced"  # gone with Redis's data: processing rewrites all
PROCESSING_MEMBERS = "system:metrics:members"  # hash: processing member -> its share (JSON)

CURRENT_TTL_S = 3600
STATS_TTL_S = 86400


def current(device_id: str) -> str:
    """JSON: the device's latest value and status (TTL 1 h)."""
    return f"device:{device_id}:current"


def stats(device_id: str, window: str) -> str:
    """JSON: the device's statistics over ``window`` (``1h`` or ``24h``; TTL 24 h)."""
    return f"device:{device_id}:stats:{window}"

"""Timestamps as the contracts write them: ISO-8601 UTC with a ``Z``."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def iso_utc(t: float | datetime | None = None, timespec: str = "milliseconds") -> str:
    """Unix seconds or an aware datetime (default: now) -> ``2025-01-11T10:00:00.000Z``."""
    if t is None:
        t = time.time()
    stamp = t if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
    return stamp.astimezone(UTC).isoformat(timespec=timespec).replace("+00:00", "Z")


def aware(t: datetime) -> datetime:
    """A datetime without a zone is taken as UTC (what the API documents for from/to)."""
    return t if t.tzinfo else t.replace(tzinfo=UTC)

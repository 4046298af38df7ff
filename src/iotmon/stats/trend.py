"""Least-squares trend over a window, from sums kept per bucket."""

from __future__ import annotations

from typing import Literal

Trend = Literal["increasing", "decreasing", "stable"]


def slope(n: int, st: float, stt: float, sv: float, stv: float) -> float:
    """Slope (value units per second) of the least-squares line through n points, from
    sum(t), sum(t^2), sum(v), sum(t*v). 0 when undefined."""
    den = n * stt - st * st
    if n < 2 or den <= 0:
        return 0.0
    return (n * stv - st * sv) / den


def classify(slope_per_s: float, window_s: float, scale: float, threshold: float = 0.05) -> Trend:
    """``stable`` unless the fitted line moves more than ``threshold`` of ``scale`` (the
    device's normal span) across the window."""
    if scale <= 0:
        return "stable"
    change = slope_per_s * window_s / scale
    if change > threshold:
        return "increasing"
    if change < -threshold:
        return "decreasing"
    return "stable"

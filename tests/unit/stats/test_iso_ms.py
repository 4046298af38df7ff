"""The processor's fast timestamp formatting is iso_utc's, to the character."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from iotmon.stats.processor import iso_ms
from iotmon.timefmt import iso_utc

NOW = time.time()


@given(st.floats(min_value=0, max_value=4_102_444_800))  # 1970 .. 2100
def test_any_time_formats_as_iso_utc(t: float) -> None:
    assert iso_ms(t) == iso_utc(t)


@given(st.integers(min_value=-3_000_000, max_value=3_000_000), st.sampled_from([0, 5e-7, -5e-7]))
def test_millisecond_and_rounding_boundaries_format_as_iso_utc(ms: int, nudge: float) -> None:
    t = round(NOW) + ms / 1000 + nudge
    assert iso_ms(t) == iso_utc(t)


def test_known_values() -> None:
    assert iso_ms(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1736589600.9999996) == "2025-01-11T10:00:01.000Z"  # rounds up to the second
    assert iso_ms(1736589600.0009994) == "2025-01-11T10:00:00.000Z"

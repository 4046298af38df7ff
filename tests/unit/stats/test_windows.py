from __future__ import annotations

import math
import random
import statistics

import pytest

from iotmon.stats.sketch import Sketch
from iotmon.stats.trend import classify, slope
from iotmon.stats.windows import Window


def brute(values: list[tuple[float, float]], start: float, end: float) -> list[float]:
    return [v for t, v in values if start <= t < end]


@pytest.mark.parametrize(("length", "bucket"), [(3600, 60), (86400, 900)])
def test_window_equals_brute_force_with_late_readings_and_expiry(length: int, bucket: int) -> None:
    rng = random.Random(4)
    w = Window(length, bucket)
    seen: list[tuple[float, float]] = []
    t0 = 1_700_000_000.0
    step = length / 3000
    for i in range(6000):  # two window lengths: the first half expires
        now = t0 + i * step
        t = now - (rng.random() * 5 * bucket if i % 50 == 0 else 0)  # some late readings
        v = 50 + 10 * math.sin(i / 200) + rng.gauss(0, 2)
        if w.add(t, v, now):
            seen.append((t, v))
    st = w.stats(now, 60)
    got = brute(seen, st.window_start, st.window_end)
    assert st.count == len(got)
    assert st.avg == pytest.approx(statistics.fmean(got), rel=1e-12)
    assert st.min == min(got)
    assert st.max == max(got)
    assert st.std == pytest.approx(statistics.stdev(got), rel=1e-9)
    assert st.median == pytest.approx(statistics.median(got), rel=0.01)
    assert st.window_end - st.window_start == length
    # The least-squares slope, recomputed directly.
    pts = [(t, v) for t, v in seen if st.window_start <= t < st.window_end]
    n = len(pts)
    mt = sum(t for t, _ in pts) / n
    mv = sum(v for _, v in pts) / n
    direct = sum((t - mt) * (v - mv) for t, v in pts) / sum((t - mt) ** 2 for t, _ in pts)
    assert st.slope == pytest.approx(direct * 3600, rel=1e-6, abs=1e-9)


def test_an_empty_window_and_one_that_has_gone_quiet() -> None:
    w = Window(3600, 60)
    assert w.stats(1_700_000_000, 10).count == 0
    w.add(1_700_000_000, 5.0, 1_700_000_000)
    assert w.stats(1_700_000_010, 10).count == 1
    assert w.stats(1_700_000_000 + 7200, 10).count == 0  # everything expired
    assert w.sketch.count == 0


def test_readings_older_than_the_window_are_refused() -> None:
    w = Window(3600, 60)
    assert not w.add(1_700_000_000 - 4000, 1.0, 1_700_000_000)


def test_sketch_quantiles_within_relative_accuracy_across_signs() -> None:
    rng = random.Random(1)
    values = [rng.uniform(-100, 100) for _ in range(20_000)] + [0.0] * 100
    s = Sketch()
    for v in values:
        s.add(v)
    values.sort()
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        exact = values[int(q * (len(values) - 1))]
        assert s.quantile(q) == pytest.approx(exact, rel=0.011, abs=0.05)


def test_trend_classification() -> None:
    assert slope(3, 3.0, 5.0, 9.0, 13.0) == pytest.approx(2.0)  # (0, 1), (1, 3), (2, 5)
    assert classify(0.001, 3600, 60) == "increasing"  # 3.6 over the hour = 6% of the span
    assert classify(-0.001, 3600, 60) == "decreasing"
    assert classify(0.0001, 3600, 60) == "stable"

from __future__ import annotations

import math
import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as hst

from iotmon.stats.sketch import Sketch
from iotmon.stats.trend import classify, slope
from iotmon.stats.windows import Bucket, Window, freeze, thaw


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


@given(
    hst.lists(
        hst.tuples(
            hst.integers(0, 899),
            hst.one_of(hst.floats(-1e6, 1e6, allow_nan=False), hst.just(0.0), hst.just(-0.0)),
        ),
        max_size=60,
    )
)
def test_a_frozen_bucket_thaws_to_the_same_figures_and_bins(
    readings: list[tuple[int, float]],
) -> None:
    """Buckets older than a window's newest are kept frozen (one bytes each, for memory at
    10,000 devices): freezing loses nothing, negative and zero bins included."""
    b = Bucket(1_700_000_100.0)
    for u, v in readings:
        b.add(float(u), v)
    data = freeze(b)
    assert isinstance(data, bytes)
    back = thaw(data)
    for name in ("start", "n", "s", "ss", "su", "suu", "suv", "min", "max"):
        assert getattr(back, name) == getattr(b, name), name
    assert type(back.n) is int
    assert sorted(back.bins.items()) == sorted(b.bins.items())


def test_a_window_keeps_all_but_its_newest_bucket_frozen_and_takes_a_late_reading() -> None:
    w = Window(3600, 60)
    t0 = 1_700_000_000.0 - 1_700_000_000.0 % 60
    for i in range(600):  # ten minutes at 1 Hz
        w.add(t0 + i, 20.0 + i % 7, t0 + i)
    assert len(w) == 10
    assert len(w.offsets) == 9  # frozen, back to back in one bytearray
    assert w.live is not None
    assert w.live.start == t0 + 540
    before = w.stats(t0 + 600, 1).count
    assert w.add(t0 + 30.5, 99.0, t0 + 600)  # late, into the first (frozen) bucket
    assert len(w.offsets) == 9
    assert w.thawed()[0].n == 61
    s = w.stats(t0 + 600, 1)
    assert s.count == before + 1
    assert s.max == 99.0


def test_a_rebuilt_window_takes_its_newest_bucket_live_again() -> None:
    w = Window(3600, 60)
    t0 = 1_700_000_000.0 - 1_700_000_000.0 % 60
    for m in range(5):
        b = Bucket(t0 + 60 * m)
        b.add(1.0, 10.0 + m)
        w.add_bucket(b)
    w.recompute()
    assert w.live is None
    assert len(w) == 5
    assert w.add(t0 + 250, 30.0, t0 + 250)  # the newest rebuilt bucket's minute
    assert w.live is not None
    assert w.live.n == 2
    assert len(w) == 5
    assert w.stats(t0 + 250, 1).count == 6


EVENT = hst.one_of(
    # (kind, minute of the reading or bucket, seconds into it, value, minutes the clock moves on)
    hst.tuples(
        hst.just("add"),
        hst.integers(0, 150),
        hst.integers(0, 59),
        hst.one_of(hst.floats(-1e4, 1e4, allow_nan=False), hst.just(0.0)),
        hst.integers(0, 3),
    ),
    hst.tuples(
        hst.just("bucket"),
        hst.integers(0, 150),
        hst.integers(0, 59),
        hst.floats(0.5, 1e3, allow_nan=False),
        hst.just(0),
    ),
)


@given(hst.lists(EVENT, max_size=120))
def test_a_window_is_exact_whatever_order_its_buckets_come_in(
    events: list[tuple[str, int, int, float, int]],
) -> None:
    """Readings in order, late, into gaps, past expiry, and buckets adopted from a rebuild in
    between: the window's buckets, totals and sketch are what its readings make them."""
    w = Window(3600, 60)
    t0 = 1_700_000_000.0 - 1_700_000_000.0 % 60
    clock = 0
    kept: dict[float, list[float]] = {}  # bucket start -> its values
    for kind, minute, second, v, step in events:
        clock = max(clock, minute)
        now = t0 + 60 * clock + 59
        t = t0 + 60 * minute + second
        start = t0 + 60 * minute
        if kind == "bucket":
            b = Bucket(start)
            b.add(float(second), v)
            w.add_bucket(b)
            kept[start] = [v]  # adopted in place of what the window had there
            w.recompute()
        elif w.add(t, v, now):
            kept.setdefault(start, []).append(v)
        clock += step
    now = t0 + 60 * clock + 59
    first = w.start(now)
    values = [v for start, vs in sorted(kept.items()) if start >= first for v in vs]
    s = w.stats(now, 1)
    assert s.count == len(values) == w.sketch.count
    starts = [b.start for b in w.thawed()]
    assert starts == sorted(k for k in kept if k >= first)
    assert sum(b.n for b in w.thawed()) == len(values)
    if values:
        assert s.min == min(values)
        assert s.max == max(values)
        assert s.avg == pytest.approx(statistics.fmean(values), rel=1e-9, abs=1e-9)
        merged = Sketch()
        for b in w.thawed():
            merged.merge_bins(b.bins)
        assert merged.bins == w.sketch.bins

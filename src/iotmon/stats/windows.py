"""Rolling windows over time buckets: exact count/sum/min/max/std and trend, sketch median.

A window of length L with buckets of b seconds holds the current bucket and the L/b - 1 before
it, so it covers [floor(now, b) - L + b, floor(now, b) + b). Per bucket: count, sum, sum of
squares, min, max, the sums a least-squares line needs, and the sketch's bins. The window keeps
running totals (added per reading), and recomputes them exactly from its buckets whenever a
bucket expires, so asking for the statistics costs the sketch's few bins, not the buckets.
Nothing per reading is kept.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from iotmon.stats import trend as trend_mod
from iotmon.stats.sketch import Bins, Sketch, bin_key
from iotmon.timefmt import iso_utc


class Bucket:
    __slots__ = ("bins", "max", "min", "n", "s", "ss", "start", "su", "suu", "suv")

    def __init__(self, start: float) -> None:
        self.start = start
        self.n = 0
        self.s = self.ss = self.su = self.suu = self.suv = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.bins = Bins()

    def add(self, u: float, v: float) -> None:
        """``u`` is the time since the bucket's start, in seconds."""
        self.n += 1
        self.s += v
        self.ss += v * v
        self.su += u
        self.suu += u * u
        self.suv += u * v
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        self.bins.add(bin_key(v))


@dataclass(frozen=True, slots=True)
class Stats:
    count: int
    avg: float | None
    min: float | None
    max: float | None
    std: float | None  # sample standard deviation (n - 1), as PostgreSQL's stddev()
    median: float | None
    slope: float  # value units per hour
    trend: trend_mod.Trend
    window_start: float
    window_end: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "avg": self.avg,
            "min": self.min,
            "max": self.max,
            "std": self.std,
            "median": self.median,
            "trend": self.trend,
            "slopePerHour": self.slope,
            "windowStart": iso_utc(self.window_start, "seconds"),
            "windowEnd": iso_utc(self.window_end, "seconds"),
        }


class Window:
    __slots__ = (
        "bucket_s",
        "buckets",
        "end",
        "hi",
        "length",
        "lo",
        "n",
        "origin",
        "s",
        "sketch",
        "ss",
        "st",
        "stt",
        "stv",
    )

    def __init__(self, length_s: float, bucket_s: float) -> None:
        if length_s % bucket_s:
            raise ValueError("the window length must be a multiple of the bucket size")
        self.length = length_s
        self.bucket_s = bucket_s
        self.buckets: deque[Bucket] = deque()
        self.sketch = Sketch()
        self.origin = 0.0  # times in the trend sums are relative to this
        self._reset_totals()

    def _reset_totals(self) -> None:
        self.n = 0
        self.s = self.ss = self.st = self.stt = self.stv = 0.0
        self.lo, self.hi = math.inf, -math.inf
        self.end = 0.0

    def floor(self, t: float) -> float:
        return t - t % self.bucket_s

    def start(self, now: float) -> float:
        return self.floor(now) - self.length + self.bucket_s

    def add(self, t: float, v: float, now: float) -> bool:
        """Count reading ``v`` at unix time ``t``; False when it is older than the window."""
        self.expire(now)
        start = self.floor(t)
        if start < self.start(now):
            return False
        buckets = self.buckets
        if buckets and buckets[-1].start == start:
            bucket = buckets[-1]
        elif not buckets or buckets[-1].start < start:
            if not buckets:
                self.origin = start
            bucket = Bucket(start)
            buckets.append(bucket)
            self.end = max(self.end, start + self.bucket_s)
        else:  # late reading: find or insert its bucket
            bucket = self._bucket_at(start)
        bucket.add(t - start, v)
        self.sketch.add(v)
        u = t - self.origin
        self.n += 1
        self.s += v
        self.ss += v * v
        self.st += u
        self.stt += u * u
        self.stv += u * v
        if v < self.lo:
            self.lo = v
        if v > self.hi:
            self.hi = v
        return True

    def _bucket_at(self, start: float) -> Bucket:
        for i in range(len(self.buckets) - 1, -1, -1):
            b = self.buckets[i]
            if b.start == start:
                return b
            if b.start < start:
                self.buckets.insert(i + 1, Bucket(start))
                return self.buckets[i + 1]
        self.buckets.appendleft(Bucket(start))
        return self.buckets[0]

    def add_bucket(self, bucket: Bucket) -> None:
        """Adopt a bucket rebuilt elsewhere (from PostgreSQL), keeping order; call
        ``recompute()`` once the last one is in."""
        existing = self._bucket_at(bucket.start)
        self.buckets[self.buckets.index(existing)] = bucket
        self.sketch.merge_bins(bucket.bins)

    def expire(self, now: float) -> None:
        first = self.start(now)
        if self.buckets and self.buckets[0].start < first:
            while self.buckets and self.buckets[0].start < first:
                self.sketch.merge_bins(self.buckets.popleft().bins, sign=-1)
            self.recompute()

    def recompute(self) -> None:
        """Totals from the buckets, exactly; times re-based to the first bucket."""
        self._reset_totals()
        if not self.buckets:
            return
        self.origin = origin = self.buckets[0].start
        for b in self.buckets:
            if not b.n:
                continue
            off = b.start - origin
            self.n += b.n
            self.s += b.s
            self.ss += b.ss
            self.st += b.n * off + b.su
            self.stt += b.n * off * off + 2 * off * b.su + b.suu
            self.stv += off * b.s + b.suv
            self.lo = min(self.lo, b.min)
            self.hi = max(self.hi, b.max)
            self.end = max(self.end, b.start + self.bucket_s)

    def count(self, now: float) -> int:
        self.expire(now)
        return self.n

    def stats(self, now: float, scale: float) -> Stats:
        self.expire(now)
        start = self.start(now)
        end = max(self.end, self.floor(now) + self.bucket_s)
        n = self.n
        if n == 0:
            return Stats(0, None, None, None, None, None, 0.0, "stable", start, end)
        avg = self.s / n
        var = (self.ss - n * avg * avg) / (n - 1) if n > 1 else 0.0
        per_s = trend_mod.slope(n, self.st, self.stt, self.s, self.stv)
        return Stats(
            count=n,
            avg=avg,
            min=self.lo,
            max=self.hi,
            std=math.sqrt(max(var, 0.0)),
            median=self.sketch.quantile(0.5),
            slope=per_s * 3600,
            trend=trend_mod.classify(per_s, self.length, scale),
            window_start=start,
            window_end=end,
        )

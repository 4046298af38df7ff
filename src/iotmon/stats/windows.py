"""Rolling windows over time buckets: exact count/sum/min/max/std and trend, sketch median.

A window of length L with buckets of b seconds holds the current bucket and the L/b - 1 before
it, so it covers [floor(now, b) - L + b, floor(now, b) + b). Per bucket: count, sum, sum of
squares, min, max, the sums a least-squares line needs, and a sketch. The window's sketch is
kept incrementally (add each reading, subtract an expiring bucket); everything else is summed
over at most L/b buckets when asked. Nothing per reading is kept.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from iotmon.stats import trend as trend_mod
from iotmon.stats.sketch import Sketch


class Bucket:
    __slots__ = ("max", "min", "n", "s", "sketch", "ss", "start", "su", "suu", "suv")

    def __init__(self, start: float) -> None:
        self.start = start
        self.n = 0
        self.s = self.ss = self.su = self.suu = self.suv = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.sketch = Sketch()

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
        self.sketch.add(v)


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
            "windowStart": _iso(self.window_start),
            "windowEnd": _iso(self.window_end),
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class Window:
    def __init__(self, length_s: float, bucket_s: float) -> None:
        if length_s % bucket_s:
            raise ValueError("the window length must be a multiple of the bucket size")
        self.length = length_s
        self.bucket_s = bucket_s
        self.buckets: deque[Bucket] = deque()
        self.sketch = Sketch()

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
        if not buckets or buckets[-1].start < start:
            buckets.append(Bucket(start))
            bucket = buckets[-1]
        elif buckets[-1].start == start:
            bucket = buckets[-1]
        else:  # late reading: find or insert its bucket
            bucket = self._bucket_at(start)
        bucket.add(t - start, v)
        self.sketch.add(v)
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
        """Adopt a bucket rebuilt elsewhere (from PostgreSQL), keeping order."""
        existing = self._bucket_at(bucket.start)
        idx = self.buckets.index(existing)
        self.buckets[idx] = bucket
        self.sketch.merge(bucket.sketch)

    def expire(self, now: float) -> None:
        first = self.start(now)
        while self.buckets and self.buckets[0].start < first:
            self.sketch.merge(self.buckets.popleft().sketch, sign=-1)

    def stats(self, now: float, scale: float) -> Stats:
        self.expire(now)
        start = self.start(now)
        n = 0
        s = ss = 0.0
        st = stt = stv = 0.0
        lo, hi = math.inf, -math.inf
        end = self.floor(now) + self.bucket_s
        for b in self.buckets:
            if not b.n:
                continue
            # Times relative to the window start keep the squares small.
            off = b.start - start
            n += b.n
            s += b.s
            ss += b.ss
            st += b.n * off + b.su
            stt += b.n * off * off + 2 * off * b.su + b.suu
            stv += off * b.s + b.suv
            lo = min(lo, b.min)
            hi = max(hi, b.max)
            end = max(end, b.start + self.bucket_s)
        if n == 0:
            return Stats(0, None, None, None, None, None, 0.0, "stable", start, end)
        avg = s / n
        var = (ss - n * avg * avg) / (n - 1) if n > 1 else 0.0
        per_s = trend_mod.slope(n, st, stt, s, stv)
        return Stats(
            count=n,
            avg=avg,
            min=lo,
            max=hi,
            std=math.sqrt(max(var, 0.0)),
            median=self.sketch.quantile(0.5),
            slope=per_s * 3600,
            trend=trend_mod.classify(per_s, self.length, scale),
            window_start=start,
            window_end=end,
        )

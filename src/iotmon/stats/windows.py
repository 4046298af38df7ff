"""Rolling windows over time buckets: exact count/sum/min/max/std and trend, sketch median.

A window of length L with buckets of b seconds holds the current bucket and the L/b - 1 before
it, so it covers [floor(now, b) - L + b, floor(now, b) + b). Per bucket: count, sum, sum of
squares, min, max, the sums a least-squares line needs, and the sketch's bins. The window keeps
running totals (added per reading), and recomputes them exactly from its buckets whenever a
bucket expires, so asking for the statistics costs the sketch's few bins, not the buckets.
Nothing per reading is kept.

Memory (DESIGN 7: 10,000 devices x 156 buckets): only the newest bucket of a window is a live
``Bucket`` (eight boxed floats, its bins' object and array: about 520 bytes). When a newer one
starts it is frozen into one ``bytes`` (``freeze``: the nine figures, the bins' offset and
counts; about 150 bytes). A late reading thaws its bucket back (rare); expiry and
``recompute`` read the frozen figures in place. bench processing measures it.
"""

from __future__ import annotations

import math
import struct
from array import array
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


# start, n, s, ss, su, suu, suv, min, max | bins' offset, counts, other (negative/zero) pairs
_HEAD = struct.Struct("<d q 7d q I I")
_START = struct.Struct("<d")
_FIGURES = struct.Struct("<d q 7d")
_COUNT = array("I").itemsize


def freeze(b: Bucket) -> bytes:
    """A bucket as one compact ``bytes`` (see the module's note on memory)."""
    bins = b.bins
    other = bins.other or {}
    head = _HEAD.pack(
        b.start,
        b.n,
        b.s,
        b.ss,
        b.su,
        b.suu,
        b.suv,
        b.min,
        b.max,
        bins.offset,
        len(bins.counts),
        len(other),
    )
    pairs = array("q", [x for kv in other.items() for x in kv]).tobytes() if other else b""
    return head + bins.counts.tobytes() + pairs


def thaw(data: bytes) -> Bucket:
    start, n, s, ss, su, suu, suv, lo, hi, offset, counts, others = _HEAD.unpack_from(data)
    b = Bucket(start)
    b.n, b.s, b.ss, b.su, b.suu, b.suv, b.min, b.max = n, s, ss, su, suu, suv, lo, hi
    b.bins.offset = offset
    at = _HEAD.size
    b.bins.counts.frombytes(data[at : at + counts * _COUNT])
    if others:
        pairs = array("q")
        pairs.frombytes(data[at + counts * _COUNT :])
        b.bins.other = dict(zip(pairs[::2], pairs[1::2], strict=True))
    return b


def _start_of(b: Bucket | bytes) -> float:
    return b.start if type(b) is Bucket else _START.unpack_from(b)[0]  # type: ignore[arg-type]


def _bins_of(b: Bucket | bytes) -> Bins:
    return b.bins if type(b) is Bucket else thaw(b).bins  # type: ignore[arg-type]


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
        self.buckets: deque[Bucket | bytes] = deque()  # oldest first; all but the newest frozen
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
        last = buckets[-1] if buckets else None
        if type(last) is Bucket and last.start == start:
            bucket = last
        elif last is None or _start_of(last) < start:
            if last is None:
                self.origin = start
            elif type(last) is Bucket:
                buckets[-1] = freeze(last)
            bucket = Bucket(start)
            buckets.append(bucket)
            self.end = max(self.end, start + self.bucket_s)
        else:  # late reading (or the newest bucket frozen by add_bucket): find, thaw or insert
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

    def _index_at(self, start: float) -> int:
        """The index of the bucket starting at ``start``, inserted (empty, live) if missing;
        a frozen one stays frozen."""
        buckets = self.buckets
        for i in range(len(buckets) - 1, -1, -1):
            at = _start_of(buckets[i])
            if at == start:
                return i
            if at < start:
                buckets.insert(i + 1, Bucket(start))
                return i + 1
        buckets.appendleft(Bucket(start))
        return 0

    def _bucket_at(self, start: float) -> Bucket:
        """The live bucket starting at ``start``: found (thawed if frozen) or inserted."""
        i = self._index_at(start)
        b = self.buckets[i]
        if type(b) is not Bucket:
            b = self.buckets[i] = thaw(b)  # type: ignore[arg-type]
        return b

    def add_bucket(self, bucket: Bucket) -> None:
        """Adopt a bucket rebuilt elsewhere (from PostgreSQL), keeping order, frozen; call
        ``recompute()`` once the last one is in."""
        self.buckets[self._index_at(bucket.start)] = freeze(bucket)
        self.sketch.merge_bins(bucket.bins)

    def expire(self, now: float) -> None:
        first = self.start(now)
        buckets = self.buckets
        if not buckets:
            return
        oldest = buckets[0]  # inline, not _start_of(): this runs at every reading
        if type(oldest) is Bucket:  # noqa: SIM108 (a ternary needs a type: ignore past 100)
            since = oldest.start
        else:
            since = _START.unpack_from(oldest)[0]  # type: ignore[arg-type]
        if since < first:
            while buckets and _start_of(buckets[0]) < first:
                self.sketch.merge_bins(_bins_of(buckets.popleft()), sign=-1)
            self.recompute()

    def recompute(self) -> None:
        """Totals from the buckets, exactly; times re-based to the first bucket."""
        self._reset_totals()
        if not self.buckets:
            return
        origin = None
        figures = _FIGURES.unpack_from
        for b in self.buckets:
            if type(b) is Bucket:
                start, n, s, ss, su, suu, suv, lo, hi = (
                    b.start,
                    b.n,
                    b.s,
                    b.ss,
                    b.su,
                    b.suu,
                    b.suv,
                    b.min,
                    b.max,
                )
            else:
                start, n, s, ss, su, suu, suv, lo, hi = figures(b)  # type: ignore[arg-type]
            if origin is None:
                self.origin = origin = start
            if not n:
                continue
            off = start - origin
            self.n += n
            self.s += s
            self.ss += ss
            self.st += n * off + su
            self.stt += n * off * off + 2 * off * su + suu
            self.stv += off * s + suv
            self.lo = min(self.lo, lo)
            self.hi = max(self.hi, hi)
            self.end = max(self.end, start + self.bucket_s)

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

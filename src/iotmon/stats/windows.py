"""Rolling windows over time buckets: exact count/sum/min/max/std and trend, sketch median.

A window of length L with buckets of b seconds holds the current bucket and the L/b - 1 before
it, so it covers [floor(now, b) - L + b, floor(now, b) + b). Per bucket: count, sum, sum of
squares, min, max, the sums a least-squares line needs, and the sketch's bins. The window keeps
running totals (added per reading), and recomputes them exactly from its buckets whenever a
bucket expires, so asking for the statistics costs the sketch's few bins, not the buckets.
Nothing per reading is kept.

Memory (DESIGN 7: 10,000 devices x 156 buckets): only the newest bucket of a window is a live
``Bucket`` (eight boxed floats, its bins' object and array: about 520 bytes). When a newer one
starts it is frozen (``freeze``: the nine figures, the bins' offset and counts, each count in
as few bytes as the largest needs) and appended to the window's one ``bytearray`` of frozen
buckets, which an ``array`` of offsets indexes: about 90 bytes a bucket, where a ``bytes``
object each took 160 and its slot in a deque 8 more (10,000 full devices: windows 285 ->
175 MiB). A late reading thaws its bucket, counts and freezes it again in place (rare);
expiry cuts the oldest from the front, and ``recompute`` reads the frozen figures in place.
bench processing measures it.
"""

from __future__ import annotations

import math
import struct
from array import array
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


# A frozen bucket: start, n, s, ss, su, suu, suv, min, max | the bins' offset, how many
# counts, how many other (negative or zero) pairs, the counts' width in bytes (1, 2 or 4: a
# 15-minute bucket of a 1 Hz signal counts at most 900 in a bin) | counts | pairs
_HEAD = struct.Struct("<d I 7d i I H B")
_START = struct.Struct("<d")
_FIGURES = struct.Struct("<d I 7d")
_SIZES = struct.Struct("<I H B")  # how many counts and pairs, the counts' width
_SIZES_AT = _HEAD.size - _SIZES.size
_PAIR = 16  # two int64s
_CODE = {1: "B", 2: "H", 4: "I"}


def freeze(b: Bucket) -> bytes:
    """A bucket as one compact ``bytes`` (see the module's note on memory)."""
    bins = b.bins
    other = bins.other or {}
    counts = bins.counts
    top = max(counts) if counts else 0
    width = 1 if top < 0x100 else 2 if top < 0x10000 else 4
    packed = counts.tobytes() if width == 4 else array(_CODE[width], counts).tobytes()
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
        len(counts),
        len(other),
        width,
    )
    pairs = array("q", [x for kv in other.items() for x in kv]).tobytes() if other else b""
    return head + packed + pairs


def _size(data: bytes | bytearray, at: int) -> int:
    """The length of the frozen bucket at ``at`` in ``data``."""
    counts, others, width = _SIZES.unpack_from(data, at + _SIZES_AT)
    return int(_HEAD.size + counts * width + others * _PAIR)


def thaw(data: bytes | bytearray, at: int = 0) -> Bucket:
    """The bucket frozen at ``at`` in ``data``, live again."""
    start, n, s, ss, su, suu, suv, lo, hi, offset, counts, others, width = _HEAD.unpack_from(
        data, at
    )
    b = Bucket(start)
    b.n, b.s, b.ss, b.su, b.suu, b.suv, b.min, b.max = n, s, ss, su, suu, suv, lo, hi
    b.bins.offset = offset
    p = at + _HEAD.size
    end = p + counts * width
    if width == 4:
        b.bins.counts.frombytes(data[p:end])
    else:
        b.bins.counts = array("I", array(_CODE[width], data[p:end]))
    if others:
        pairs = array("q")
        pairs.frombytes(data[end : end + others * _PAIR])
        b.bins.other = dict(zip(pairs[::2], pairs[1::2], strict=True))
    return b


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
        "end",
        "frozen",
        "hi",
        "length",
        "live",
        "lo",
        "n",
        "offsets",
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
        # The buckets, oldest first: every one but the newest frozen, back to back in one
        # bytearray (``offsets``: where each starts, the first at 0), and the newest live.
        self.frozen = bytearray()
        self.offsets: array[int] = array("I")
        self.live: Bucket | None = None  # newer than every frozen one, when there is one
        self.sketch = Sketch()
        self.origin = 0.0  # times in the trend sums are relative to this
        self._reset_totals()

    def _reset_totals(self) -> None:
        self.n = 0
        self.s = self.ss = self.st = self.stt = self.stv = 0.0
        self.lo, self.hi = math.inf, -math.inf
        self.end = 0.0

    def __len__(self) -> int:
        """How many buckets the window holds."""
        return len(self.offsets) + (self.live is not None)

    def thawed(self) -> list[Bucket]:
        """Every bucket, oldest first, as a live copy (for tests and benchmarks)."""
        frozen = self.frozen
        out = [thaw(frozen, at) for at in self.offsets]
        if self.live is not None:
            out.append(self.live)
        return out

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
        live = self.live
        if live is not None and live.start == start:
            live.add(t - start, v)
        elif live is not None and live.start < start:
            self._freeze_live()
            self._start_live(start).add(t - start, v)
        else:
            offsets = self.offsets
            newest = _START.unpack_from(self.frozen, offsets[-1])[0] if offsets else None
            if live is None and (newest is None or newest < start):
                if newest is None:
                    self.origin = start
                self._start_live(start).add(t - start, v)
            elif live is None and newest == start:  # frozen by a rebuild (add_bucket)
                at = offsets.pop()
                bucket = self.live = thaw(self.frozen, at)
                del self.frozen[at:]
                bucket.add(t - start, v)
            else:  # a late reading, into a frozen bucket or a gap between them
                self._add_late(start, t - start, v)
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

    def _start_live(self, start: float) -> Bucket:
        bucket = self.live = Bucket(start)
        self.end = max(self.end, start + self.bucket_s)
        return bucket

    def _freeze_live(self) -> None:
        if self.live is not None:
            self.offsets.append(len(self.frozen))
            self.frozen += freeze(self.live)
            self.live = None

    def _find(self, start: float) -> tuple[int, bool]:
        """Where the frozen bucket starting at ``start`` is (True), or would go (False)."""
        frozen, offsets = self.frozen, self.offsets
        i = len(offsets) - 1
        while i >= 0:
            at = _START.unpack_from(frozen, offsets[i])[0]
            if at == start:
                return i, True
            if at < start:
                break
            i -= 1
        return i + 1, False

    def _put(self, i: int, data: bytes, replace: bool) -> None:
        """Frozen bucket ``data`` at index ``i``: in place of the one there, or inserted."""
        frozen, offsets = self.frozen, self.offsets
        at = offsets[i] if i < len(offsets) else len(frozen)
        old = _size(frozen, at) if replace else 0
        frozen[at : at + old] = data
        if not replace:
            offsets.insert(i, at)
        shift = len(data) - old
        if shift:
            for j in range(i + 1, len(offsets)):
                offsets[j] += shift

    def _add_late(self, start: float, u: float, v: float) -> None:
        """A reading older than the newest bucket: thawed into its frozen bucket and frozen
        again, or into a new one between (rare: a device's readings come in order)."""
        i, found = self._find(start)
        bucket = thaw(self.frozen, self.offsets[i]) if found else Bucket(start)
        bucket.add(u, v)
        self._put(i, freeze(bucket), found)

    def add_bucket(self, bucket: Bucket) -> None:
        """Adopt a bucket rebuilt elsewhere (from PostgreSQL), keeping order, frozen; call
        ``recompute()`` once the last one is in."""
        self._freeze_live()
        i, found = self._find(bucket.start)
        if found:
            self.sketch.merge_bins(thaw(self.frozen, self.offsets[i]).bins, sign=-1)
        self._put(i, freeze(bucket), found)
        self.sketch.merge_bins(bucket.bins)

    def expire(self, now: float) -> None:
        first = self.start(now)
        offsets = self.offsets
        if offsets:  # inline: this runs at every reading
            since = _START.unpack_from(self.frozen, 0)[0]
        elif self.live is not None:
            since = self.live.start
        else:
            return
        if since < first:
            frozen = self.frozen
            k = 0
            while k < len(offsets) and _START.unpack_from(frozen, offsets[k])[0] < first:
                self.sketch.merge_bins(thaw(frozen, offsets[k]).bins, sign=-1)
                k += 1
            if k:
                cut = offsets[k] if k < len(offsets) else len(frozen)
                del frozen[:cut]
                self.offsets = array("I", [at - cut for at in offsets[k:]])
            live = self.live
            if not self.offsets and live is not None and live.start < first:
                self.sketch.merge_bins(live.bins, sign=-1)
                self.live = None
            self.recompute()

    def recompute(self) -> None:
        """Totals from the buckets, exactly; times re-based to the first bucket."""
        self._reset_totals()
        frozen = self.frozen
        figures = [_FIGURES.unpack_from(frozen, at) for at in self.offsets]
        b = self.live
        if b is not None:
            figures.append((b.start, b.n, b.s, b.ss, b.su, b.suu, b.suv, b.min, b.max))
        if not figures:
            return
        self.origin = origin = figures[0][0]
        for start, n, s, ss, su, suu, suv, lo, hi in figures:
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

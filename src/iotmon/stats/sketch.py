"""A DDSketch-style quantile sketch: log-spaced bins with relative accuracy ``alpha``.

Mergeable and, since it only counts, subtractable: a window adds readings to its sketch and
subtracts a whole bucket's bins when the bucket expires. Any quantile it returns is within
``alpha`` (relative) of a value of the right rank.

Bins live in one plain dict per sketch (or per bucket: ``bin_key`` + a dict is all a bucket
keeps), keyed by an int that encodes sign and log-bin: 2k for +gamma^k, 2k+1 for -gamma^k,
and ``ZERO`` for |v| < 1e-9. A bucket of a steady signal touches a dozen keys.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator

DEFAULT_ALPHA = 0.005
GAMMA_LN = math.log((1 + DEFAULT_ALPHA) / (1 - DEFAULT_ALPHA))
_GAMMA = math.exp(GAMMA_LN)
_MIN = 1e-9
ZERO = 1 << 62


def bin_key(v: float) -> int:
    if v > _MIN:
        return 2 * math.ceil(math.log(v) / GAMMA_LN)
    if v < -_MIN:
        return 2 * math.ceil(math.log(-v) / GAMMA_LN) + 1
    return ZERO


def key_from_parts(sign: int, k: int) -> int:
    """The key of log-bin ``k`` with ``sign`` (as computed in SQL by stats/rebuild.py)."""
    if sign > 0:
        return 2 * k
    if sign < 0:
        return 2 * k + 1
    return ZERO


def _bin_value(key: int) -> float:
    if key == ZERO:
        return 0.0
    k, negative = divmod(key, 2)
    v = 2 * _GAMMA**k / (_GAMMA + 1)  # the midpoint, in relative terms, of the bin
    return -v if negative else v


class Bins:
    """A bucket's bins, compact: a dense array of counts over the positive log-bins it has
    seen (a steady signal spans a dozen), and a dict for the rare zero or negative values.
    About a tenth of the memory of a dict, which matters at 10,000 devices x 156 buckets."""

    __slots__ = ("counts", "offset", "other")

    def __init__(self) -> None:
        self.offset = 0
        self.counts: array[int] = array("I")
        self.other: dict[int, int] | None = None

    def add(self, key: int, n: int = 1) -> None:
        if key & 1 or key == ZERO:
            if self.other is None:
                self.other = {}
            self.other[key] = self.other.get(key, 0) + n
            return
        k = key >> 1
        counts = self.counts
        if not counts:
            self.offset = k
            counts.append(n)
            return
        i = k - self.offset
        if i < 0:
            self.counts = counts = array("I", bytes(4 * -i)) + counts
            self.offset = k
            i = 0
        elif i >= len(counts):
            counts.extend(array("I", bytes(4 * (i - len(counts) + 1))))
        counts[i] += n

    def items(self) -> Iterator[tuple[int, int]]:
        base = self.offset
        for i, n in enumerate(self.counts):
            if n:
                yield (base + i) << 1, n
        if self.other:
            yield from self.other.items()


class Sketch:
    __slots__ = ("bins", "count")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.count = 0

    def add(self, v: float, n: int = 1) -> None:
        k = bin_key(v)
        self.bins[k] = self.bins.get(k, 0) + n
        self.count += n

    def merge_bins(self, bins: Bins, sign: int = 1) -> None:
        """Add (sign=1) or subtract (sign=-1) a bucket's bins."""
        mine = self.bins
        for k, n in bins.items():
            left = mine.get(k, 0) + sign * n
            if left:
                mine[k] = left
            else:
                mine.pop(k, None)
            self.count += sign * n

    def quantile(self, q: float) -> float | None:
        if self.count <= 0:
            return None
        rank = q * (self.count - 1)
        bins = self.bins
        keys = sorted(bins)
        # Ascending values: negatives from the largest magnitude down, zero, then positives.
        ordered = [k for k in reversed(keys) if k & 1]
        if ZERO in bins:
            ordered.append(ZERO)
        ordered += [k for k in keys if not k & 1 and k != ZERO]
        seen = 0
        for k in ordered:
            seen += bins[k]
            if seen > rank:
                return _bin_value(k)
        return _bin_value(ordered[-1])

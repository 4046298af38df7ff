"""A DDSketch-style quantile sketch: log-spaced bins with relative accuracy ``alpha``.

Mergeable and, since it only counts, subtractable: a window adds readings to its sketch and
subtracts a whole bucket's sketch when the bucket expires. Any quantile it returns is within
``alpha`` (relative) of a value of the right rank. Bins are plain dicts: a bucket of a steady
signal touches a dozen of them.
"""

from __future__ import annotations

import math

DEFAULT_ALPHA = 0.005
_MIN = 1e-9  # |v| below this counts as zero


class Sketch:
    __slots__ = ("_gamma_ln", "count", "neg", "pos", "zero")

    def __init__(self, alpha: float = DEFAULT_ALPHA) -> None:
        self._gamma_ln = math.log((1 + alpha) / (1 - alpha))
        self.pos: dict[int, int] = {}
        self.neg: dict[int, int] = {}
        self.zero = 0
        self.count = 0

    def key(self, v: float) -> int:
        return math.ceil(math.log(abs(v)) / self._gamma_ln)

    def add(self, v: float, n: int = 1) -> None:
        self.count += n
        if v > _MIN:
            k = math.ceil(math.log(v) / self._gamma_ln)
            self.pos[k] = self.pos.get(k, 0) + n
        elif v < -_MIN:
            k = math.ceil(math.log(-v) / self._gamma_ln)
            self.neg[k] = self.neg.get(k, 0) + n
        else:
            self.zero += n

    def add_bin(self, sign: int, k: int, n: int) -> None:
        """Add ``n`` to a bin directly (rebuilding from a histogram computed elsewhere)."""
        self.count += n
        if sign > 0:
            self.pos[k] = self.pos.get(k, 0) + n
        elif sign < 0:
            self.neg[k] = self.neg.get(k, 0) + n
        else:
            self.zero += n

    def merge(self, other: Sketch, sign: int = 1) -> None:
        """Add (sign=1) or subtract (sign=-1) another sketch of the same alpha."""
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            for k, n in theirs.items():
                left = mine.get(k, 0) + sign * n
                if left:
                    mine[k] = left
                else:
                    mine.pop(k, None)
        self.zero += sign * other.zero
        self.count += sign * other.count

    def _value(self, k: int) -> float:
        # The midpoint (in relative terms) of bin k: within alpha of anything in it.
        gamma = math.exp(self._gamma_ln)
        return 2 * gamma**k / (gamma + 1)

    def quantile(self, q: float) -> float | None:
        if self.count <= 0:
            return None
        rank = q * (self.count - 1)
        seen = 0
        for k in sorted(self.neg, reverse=True):
            seen += self.neg[k]
            if seen > rank:
                return -self._value(k)
        seen += self.zero
        if seen > rank:
            return 0.0
        for k in sorted(self.pos):
            seen += self.pos[k]
            if seen > rank:
                return self._value(k)
        return self._value(max(self.pos)) if self.pos else 0.0

"""Anomaly score per reading: a z-score against an exponentially weighted mean and variance
of the device's recent readings (O(1) per reading, no window kept)."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(slots=True)
class Ewma:
    alpha: float = 0.02  # ~50 readings of memory
    mean: float = 0.0
    var: float = 0.0
    n: int = 0

    def score(self, v: float) -> float:
        """The z-score of ``v`` against the history so far (0 while warming up)."""
        if self.n < 30 or self.var <= 0:
            return 0.0
        return (v - self.mean) / math.sqrt(self.var)

    def update(self, v: float, *, is_outlier: bool = False) -> None:
        """Learn from ``v``; outliers move the baseline only a little, so a spike does not
        become normal."""
        self.n += 1
        if self.n == 1:
            self.mean = v
            return
        a = self.alpha * (0.1 if is_outlier else 1.0)
        diff = v - self.mean
        incr = a * diff
        self.mean += incr
        self.var = (1 - a) * (self.var + diff * incr)

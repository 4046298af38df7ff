"""Flap detection: a (device, type) whose alert opens and resolves too often is flapping.

A state change is an alert opened or resolved. More than ``changes`` of them within
``window_s`` and the (device, type) starts flapping: its notifications are held back, and one
notification says it is flapping. Once ``quiet_s`` pass without a change it has settled: one
notification says so, with the state it settled in (an alert still open is a real problem;
resolved, the noise is over), and notifications go out as usual again.

This is Nagios's flap detection with a count in a window instead of a percentage of the last
21 checks, and a quiet period instead of a lower threshold: a device that keeps spiking stays
flapping (one notification, not one per spike), and one that holds a breach settles, open, after
``quiet_s`` (the notification a person needs). Pure: times in, verdicts out; the engine stores
the changes (``alert_transitions``) and the flag (``alerts.flapping``)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

Key = tuple[str, str]  # (device id, alert type)
Verdict = Literal["started", "flapping", "steady"]


@dataclass(frozen=True, slots=True)
class FlapConfig:
    changes: int = 4  # more than this many state changes ... (0: no flap detection)
    window_s: float = 600.0  # ... within this window: flapping
    quiet_s: float = 300.0  # no change for this long: settled

    @property
    def enabled(self) -> bool:
        return self.changes > 0


@dataclass
class FlapTracker:
    config: FlapConfig
    _changes: dict[Key, deque[float]] = field(default_factory=dict)
    _flapping: dict[Key, float] = field(default_factory=dict)  # key -> its latest change

    def change(self, key: Key, t: float) -> Verdict:
        """Record a state change of ``key`` at ``t``: ``started`` when this one makes it
        flapping, ``flapping`` when it was already, else ``steady``."""
        if not self.config.enabled:
            return "steady"
        times = self._changes.setdefault(key, deque())
        times.append(t)
        while times and times[0] < t - self.config.window_s:
            times.popleft()
        if key in self._flapping:
            self._flapping[key] = max(self._flapping[key], t)
            return "flapping"
        if len(times) > self.config.changes:
            self._flapping[key] = t
            return "started"
        return "steady"

    def restore(self, key: Key, times: list[float], flapping_since_change: float | None) -> None:
        """After a restart: the changes recorded, and whether (and since which change) the key
        was flapping."""
        if times:
            self._changes[key] = deque(times)
        if flapping_since_change is not None:
            self._flapping[key] = flapping_since_change

    def is_flapping(self, key: Key) -> bool:
        return key in self._flapping

    def settled(self, now: float) -> list[Key]:
        """The keys flapping and quiet for ``quiet_s``: due to settle (:meth:`settle` each once
        its settling is stored)."""
        return sorted(k for k, last in self._flapping.items() if now - last >= self.config.quiet_s)

    def settle(self, key: Key) -> None:
        """No longer flapping; its changes so far are forgotten (it counts afresh)."""
        self._flapping.pop(key, None)
        self._changes.pop(key, None)

    def forget_old(self, now: float) -> None:
        """Drop the changes older than the window (keys without any go)."""
        for key in list(self._changes):
            times = self._changes[key]
            while times and times[0] < now - self.config.window_s:
                times.popleft()
            if not times and key not in self._flapping:
                del self._changes[key]

    def flapping(self) -> list[Key]:
        return sorted(self._flapping)

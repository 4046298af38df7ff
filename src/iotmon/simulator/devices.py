"""The simulated fleet: each device sends at its interval (divided by the rate multiplier).

A heap of due times drives every device from one loop, so 10,000 devices cost one task.
Sending goes through a callback: this module knows nothing of Kafka.
"""

from __future__ import annotations

import heapq
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from iotmon.devices.models import DeviceSpec, fleet
from iotmon.simulator.scenarios import ActiveScenario, Scenario, ScenarioError
from iotmon.simulator.signals import Signal
from iotmon.timefmt import iso_utc

Send = Callable[[bytes, bytes], None]  # (key, value)


@dataclass
class SimulatorStats:
    sent: int = 0
    anomalies: int = 0
    suppressed: int = 0  # readings not sent because a device is offline


class Simulator:
    def __init__(
        self,
        devices: list[DeviceSpec],
        *,
        send: Send,
        rate: float = 1.0,
        anomaly_rate: float = 0.05,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.devices = {d.device_id: d for d in devices}
        rng = random.Random(seed)
        self.signals = {
            d.device_id: Signal(d, anomaly_rate=anomaly_rate, rng=random.Random(rng.random()))
            for d in devices
        }
        self.send = send
        self.rate = rate
        self.clock = clock
        self.stats = SimulatorStats()
        self.scenarios: dict[str, ActiveScenario] = {}
        now = clock()
        # Spread first readings over each interval so 10,000 devices do not fire at once.
        self._heap: list[tuple[float, str]] = [
            (now + rng.random() * d.interval_s / rate, d.device_id) for d in devices
        ]
        heapq.heapify(self._heap)

    @classmethod
    def with_fleet(cls, count: int, **kwargs: object) -> Simulator:
        return cls(fleet(count), **kwargs)  # type: ignore[arg-type]

    def start_scenario(self, scenario: Scenario) -> ActiveScenario:
        if scenario.device_id not in self.devices:
            raise ScenarioError(f"no simulated device {scenario.device_id!r}")
        active = ActiveScenario(scenario, self.clock())
        self.scenarios[scenario.device_id] = active
        return active

    def stop_scenario(self, device_id: str) -> bool:
        return self.scenarios.pop(device_id, None) is not None

    def reading(self, spec: DeviceSpec, t: float) -> dict[str, object] | None:
        value, anomaly = self.signals[spec.device_id].next(t)
        metadata: dict[str, object] | None = {"anomaly": True} if anomaly else None
        active = self.scenarios.get(spec.device_id)
        if active is not None:
            if t >= active.ends():
                del self.scenarios[spec.device_id]
            else:
                forced = active.value(spec, t, value)
                if forced is None:
                    return None
                value = round(forced, 2)
                metadata = {"scenario": active.scenario.kind}
        msg: dict[str, object] = {
            "deviceId": spec.device_id,
            "timestamp": iso_utc(t),
            "sensorType": spec.sensor_type,
            "value": value,
            "unit": spec.unit,
            "location": spec.location,
            "status": "active",
        }
        if metadata:
            msg["metadata"] = metadata
            if anomaly:
                self.stats.anomalies += 1
        return msg

    def tick(self) -> float:
        """Send every reading that is due; return seconds until the next one is."""
        now = self.clock()
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, device_id = heap[0]
            spec = self.devices[device_id]
            msg = self.reading(spec, due)
            if msg is None:
                self.stats.suppressed += 1
            else:
                self.send(device_id.encode(), orjson.dumps(msg))
                self.stats.sent += 1
            nxt = due + spec.interval_s / self.rate
            if nxt < now - 5:  # fell far behind (paused process): skip, do not burst
                nxt = now + spec.interval_s / self.rate
            heapq.heapreplace(heap, (nxt, device_id))
        return max(0.0, heap[0][0] - self.clock()) if heap else 1.0

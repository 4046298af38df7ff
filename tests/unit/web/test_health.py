from __future__ import annotations

import socket
import time

from iotmon.bus.memory import MemoryBus
from iotmon.web.health import RequestWindow, health


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_dependency_down_answers_503_and_names_it() -> None:
    window = RequestWindow()
    window.record(error=False)
    window.record(error=True)
    code, body = await health(
        bus=MemoryBus(),
        database_url=f"postgresql://x:y@127.0.0.1:{closed_port()}/db",
        redis_url=f"redis://127.0.0.1:{closed_port()}/0",
        started_at=time.time() - 5,
        window=window,
    )
    assert code == 503
    assert body["status"] == "unhealthy"
    deps = body["dependencies"]
    assert deps["database"]["status"] == "unhealthy"
    assert deps["database"]["error"]
    assert deps["redis"]["status"] == "unhealthy"
    assert deps["kafka"]["status"] == "healthy"
    assert all(isinstance(d["responseTime"], float) for d in deps.values())
    assert body["metrics"]["requestsPerMinute"] == 2
    assert body["metrics"]["errorRate"] == 0.5
    assert body["metrics"]["uptime"] >= 5
    assert body["timestamp"].endswith("Z")

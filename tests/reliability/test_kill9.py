"""Nothing lost, nothing doubled: SIGKILL the ingestion process mid-drain, restart it, count."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from tests.integration.helpers import free_port, produce_readings, query

pytestmark = pytest.mark.reliability

N = 100_000


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every process a test starts is gone when it ends, pass or fail."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


def start_ingestion(
    env: dict[str, str], log: Path, children: list[subprocess.Popen[bytes]]
) -> subprocess.Popen[bytes]:
    env = env | {
        "IOTMON_HTTP_PORT": str(free_port()),
        "IOTMON_INGEST_BATCH_SIZE": "2000",
        "IOTMON_INGEST_BATCH_WAIT_MS": "20",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "iotmon", "run", "ingestion"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stored(url: str) -> int:
    return int(query(url, "SELECT count(*) FROM sensor_readings")[0][0])


def wait_for(
    url: str, at_least: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 120
) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = stored(url)
        if n >= at_least:
            return n
        if proc.poll() is not None:
            pytest.fail(f"ingestion exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        time.sleep(0.02)
    pytest.fail(
        f"only {stored(url)} of {at_least} readings stored in {timeout} s:\n"
        f"{log.read_text()[-3000:]}"
    )


def assert_exactly_once(url: str) -> None:
    total, distinct = query(url, "SELECT count(*), count(DISTINCT value) FROM sensor_readings")[0]
    assert (total, distinct) == (N, N), f"{total} rows, {distinct} distinct, expected {N}"


def test_sigkill_mid_drain_loses_and_doubles_nothing(
    settings: Settings, kafka_bus: KafkaBus, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    produce_readings(kafka_bus, settings.topic("sensors-data"), N)
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    log = tmp_path / "ingestion.log"
    kills = []
    for fraction in (0.1, 0.35, 0.6, 0.85):
        proc = start_ingestion(subprocess_env, log, children)
        reached = wait_for(url, int(N * fraction), proc, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills.append(reached)
    assert all(k < N for k in kills), f"killed too late to test anything: {kills}"

    proc = start_ingestion(subprocess_env, log, children)
    wait_for(url, N, proc, log)
    time.sleep(1.0)  # anything doubled would land now
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, log.read_text()[-3000:]
    assert_exactly_once(url)


def test_two_consumers_in_a_group_one_killed(
    settings: Settings, kafka_bus: KafkaBus, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    """A rebalance moves partitions mid-batch: the fenced offsets keep it exactly once."""
    produce_readings(kafka_bus, settings.topic("sensors-data"), N)
    url = settings.database_url.get_secret_value()  # type: ignore[union-attr]
    log_a, log_b = tmp_path / "a.log", tmp_path / "b.log"
    a = start_ingestion(subprocess_env, log_a, children)
    b = start_ingestion(subprocess_env, log_b, children)
    wait_for(url, int(N * 0.3), a, log_a)
    os.kill(a.pid, signal.SIGKILL)
    a.wait()
    wait_for(url, N, b, log_b, timeout=180)
    time.sleep(1.0)
    b.send_signal(signal.SIGTERM)
    assert b.wait(30) == 0, log_b.read_text()[-3000:]
    assert_exactly_once(url)

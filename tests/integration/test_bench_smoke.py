"""``iotmon bench mqtt`` in a smoke size on the real services: it runs end to end (20 device
connections, 4 s), writes its figures to a temporary path and never to BENCHMARKS.md, and
what it measured is there: every acknowledged reading stored once, a latency, CPU by side.
No timing is asserted (a slow run on a shared box is not a broken one)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def test_bench_mqtt_smoke(infra: dict[str, str], tmp_path: Path) -> None:
    output, markdown = tmp_path / "mqtt.json", tmp_path / "BENCHMARKS.md"
    before = _digest(BENCHMARKS_MD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")} | infra
    env["IOTMON_LOG_LEVEL"] = "WARNING"
    args = ["--devices", "20", "--seconds", "4", "--rate", "20", "--publishers", "2"]
    files = ["--output", str(output), "--markdown", str(markdown)]
    done = subprocess.run(
        [sys.executable, "-m", "iotmon", "bench", "mqtt", *args, *files],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert done.returncode == 0, f"bench mqtt failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    assert _digest(BENCHMARKS_MD) == before, "bench mqtt wrote to BENCHMARKS.md"
    assert "bench:mqtt:start" in markdown.read_text()
    r = orjson.loads(output.read_bytes())
    for key in ("machine", "date", "command"):
        assert r[key], r
    assert r["devices"] == 20
    assert r["published"] == r["acknowledged"] > 0, r
    assert r["stored"] == r["distinct_stored"] == r["acknowledged"], r
    assert r["stored_per_s_sustained"] > 0, r
    assert r["latency_p50_s"] is not None, r
    assert r["latency_p99_s"] >= r["latency_p50_s"], r
    assert r["cpu_cores"]["publishers"] > 0, r
    assert r["cpu_cores"]["mqtt-bridge"] > 0, r

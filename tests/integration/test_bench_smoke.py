"""``iotmon bench mqtt`` in a smoke size on the real services: it runs end to end (20 device
connections, 4 s; one reading per message, then three, with two decoders), writes its
figures to a temporary path and never to BENCHMARKS.md, and what it measured is there:
every acknowledged reading stored once, a latency, CPU by side.
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
    args += ["--channels", "1,3", "--decoders", "2"]
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
    text = markdown.read_text()
    assert text.count("bench:mqtt:start") == 1, text
    assert "run 2" in text, text
    for channels in (1, 3):
        r = orjson.loads((tmp_path / f"mqtt-{channels}ch.json").read_bytes())
        for key in ("machine", "date", "command"):
            assert r[key], r
        assert r["devices"] == 20
        assert r["channels_per_message"] == channels, r
        assert r["decoders"] == 2, r
        assert r["published"] == r["acknowledged"] > 0, r
        assert r["acknowledged_readings"] == r["acknowledged"] * channels, r
        assert r["stored"] == r["distinct_stored"] == r["acknowledged_readings"], r
        assert r["stored_per_s_sustained"] > 0, r
        assert r["latency_p50_s"] is not None, r
        assert r["latency_p99_s"] >= r["latency_p50_s"], r
        assert r["cpu_cores"]["publishers"] > 0, r
        assert r["cpu_cores"]["mqtt-bridge"] > 0, r
        decoded = sum(r["roles"][d]["consumed"] for d in ("mqtt-decoder", "mqtt-decoder-2"))
        assert decoded == r["acknowledged"], r["roles"]

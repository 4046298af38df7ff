"""Every benchmark, in a smoke size, on the real services: it runs, it writes its figures to a
temporary path (never to BENCHMARKS.md), and the figures are there and nonzero.

No timing is asserted: on a shared 2-core box a slow run is not a broken one. What fails here
is a benchmark that no longer runs (an import moved, an option renamed, a role that does not
start) or one that measured nothing (zero readings drained, no request answered, no event
delivered). Each runs as ``python -m iotmon bench <name>``, the way a person runs it.

Tools: bench api needs wrk and bench dashboard Chromium; both are installed from Debian when
missing (wrk by bench/api.py itself, Chromium by ``scripts/dashboard.sh browser``, which
``make test`` runs first); the machine running ``make test`` is root in CI.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS_MD = REPO / "BENCHMARKS.md"

pytestmark = pytest.mark.integration


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def _run(
    name: str, args: list[str], infra: dict[str, str], tmp_path: Path, timeout: float = 540
) -> dict[str, Any]:
    output, markdown = tmp_path / f"{name}.json", tmp_path / "BENCHMARKS.md"
    before = _digest(BENCHMARKS_MD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")} | infra
    env["IOTMON_LOG_LEVEL"] = "WARNING"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "iotmon",
            "bench",
            name,
            *args,
            "--output",
            str(output),
            "--markdown",
            str(markdown),
        ],
        env=env,
        cwd=tmp_path,  # nothing may depend on running from the checkout
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (
        f"bench {name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    )
    assert _digest(BENCHMARKS_MD) == before, f"bench {name} wrote to BENCHMARKS.md"
    assert markdown.exists(), f"bench {name} wrote no markdown section"
    assert output.exists(), f"bench {name} wrote no results"
    result: dict[str, Any] = orjson.loads(output.read_bytes())
    for key in ("machine", "date", "command"):
        assert result.get(key), result
    return result


def _ingest(r: dict[str, Any]) -> None:
    assert r["readings"] == 20_000
    assert len(r["pipeline_runs"]) == len(r["copy_runs"]) == 2
    assert all(x > 0 for x in r["pipeline_runs"] + r["copy_runs"])
    assert r["insert_rps"] > 0
    assert r["insert_sample"] == 200
    assert r["pipeline_vs_copy"] > 0
    for size in r["sizes"]:
        assert size["first_row_s"] > 0
        assert size["pipeline_rps"] > 0
        assert size["copy_rps"] > 0


def _processing(r: dict[str, Any]) -> None:
    assert r["readings"] == 100 * 60
    assert r["readings_per_s"] > 0
    assert r["flush_all_devices_ms"] > 0
    assert r["engine"]
    if r["engine"].startswith("compiled"):  # then the pure-Python side ran beside it
        assert r["pure_python"]["readings_per_s"] > 0


def _alerts(r: dict[str, Any]) -> None:
    small, large = r["runs"]
    assert small["devices"] == 5
    assert large["devices"] == 50
    for run in (small, large):
        assert run["sensor_data"]["n"] > 0
        assert run["sensor_data"]["p99_ms"] is not None
        assert run["processing_readings_per_s"] > 0
        assert all(v > 0 for v in run["rss_mib"].values()), run["rss_mib"]
    # Alert latency is measured when a threshold is crossed in the window: in seconds that is
    # chance (0 in one run of three here), so only its presence is required.
    for run in (small, large):
        assert run["alert_triggered"]["n"] >= 0
        assert (run["alert_triggered"]["p99_ms"] is None) == (run["alert_triggered"]["n"] == 0)


def _api(r: dict[str, Any]) -> None:
    assert r["loaded"]["readings"] > 0
    assert {e["endpoint"] for e in r["endpoints"]} >= {"devices", "history", "dashboard"}
    for e in r["endpoints"]:
        assert e["status"] == 200, e
        assert e["requests"] > 0, e
        assert e["non_2xx"] == 0, e
        assert e["one_connection"]["requests_per_s"] > 0, e


def _ws(r: dict[str, Any]) -> None:
    run = r["run"]
    assert run["clients"] == 20
    assert run["events"] > 0
    assert run["deliveries"] == run["expected_deliveries"] > 0, run
    assert run["duplicates"] == 0, run
    assert run["disconnects"] == 0, run


def _dashboard(r: dict[str, Any]) -> None:
    assert r["bundle"]["total_gzip_bytes"] > 0
    assert r["bundle"]["files"]
    assert r["runs"]
    for run in r["runs"]:
        assert run["frames"] > 0, run
        assert run["dom_nodes"] > 0, run


def _sustained(r: dict[str, Any]) -> None:
    assert r["steps"], r
    first = r["steps"][0]
    assert first["produced_per_s"] > 0
    for role in ("ingestion", "processing"):
        assert first["consumed_per_s"][role] > 0, first
    # The alerts role reads only the readings past a threshold: in a 10 s step there may be
    # none; when there were, it read them (or they are its lag at the end of the step).
    alerts_in = first["alerts_topic_per_s"] * first["seconds"]
    assert alerts_in < 1 or first["consumed"]["alerts"] > 0 or first["lag_end"]["alerts"] > 0
    for role in ("simulator", "ingestion", "processing", "alerts", "web"):
        assert first["rss_mib"][role] > 0, first
        assert first["cpu_pct"][role] >= 0, first
    assert set(r["best_per_role"]) == {"simulator", "ingestion", "processing", "alerts"}, r
    # --full-windows: every device's last 24 h stored before the roles started
    assert r["filled_readings"] == 300 * (92 * 12 + 60), r["filled_readings"]


BENCHES: dict[str, tuple[list[str], Callable[[dict[str, Any]], None]]] = {
    "ingest": (["--readings", "20000", "--insert-sample", "200", "--repeat", "2"], _ingest),
    "processing": (["--devices", "100", "--minutes", "1"], _processing),
    "alerts": (["--seconds", "4", "--devices", "50"], _alerts),
    "api": (["--connections", "10", "--seconds", "1", "--warmup", "0.5"], _api),
    "ws": (["--clients", "20", "--client-procs", "1", "--seconds", "4"], _ws),
    "dashboard": (["--seconds", "2", "--devices", "20"], _dashboard),
    "sustained": (
        [
            *("--rates", "1500", "--step-seconds", "10", "--warmup-seconds", "5"),
            *("--devices", "300", "--full-windows"),
        ],
        _sustained,
    ),
}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(BENCHES))
def test_bench_smoke(name: str, infra: dict[str, str], tmp_path: Path) -> None:
    args, check = BENCHES[name]
    check(_run(name, args, infra, tmp_path))


def test_every_benchmark_is_smoked() -> None:
    """A new bench/<name>.py without a smoke test fails. bench mqtt's is its own helper's
    (tests/integration/test_bench_smoke.py): it counts when some test runs it."""
    benches = {p.stem for p in (REPO / "bench").glob("*.py")} - {"common"}
    elsewhere = {
        name
        for name in benches - set(BENCHES)
        for test in (REPO / "tests").rglob("test_*.py")
        if test != Path(__file__) and f'"iotmon", "bench", "{name}"' in test.read_text()
    }
    assert benches <= set(BENCHES) | elsewhere, sorted(benches - set(BENCHES) - elsewhere)

"""Processing benchmark: the live-statistics engine (stats/processor.py) alone, at fleet
scale: readings/s it absorbs, the cost of a flush (every device's snapshot), and its memory.

Run: ``iotmon bench processing --devices 10000 --minutes 10``. No services needed: this
measures the engine, not Kafka or Redis. Writes bench/results/processing.json and a section
of BENCHMARKS.md.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common import machine, write_section
from iotmon import native
from iotmon.devices.models import fleet
from iotmon.stats.processor import DeviceConfig, Processor

START, END = "<!-- bench:processing:start -->", "<!-- bench:processing:end -->"


def vm_rss_mib() -> float:
    """The process's resident memory now (not its peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def spread(k: int) -> list[float]:
    """``k`` z-scores evenly spaced over the normal distribution's central 98 %."""
    nd = statistics.NormalDist()
    return [nd.inv_cdf(0.01 + 0.98 * (i + 0.5) / k) for i in range(k)]


def full_windows(specs: list[Any], configs: dict[str, DeviceConfig], per_bucket: int) -> Any:
    """A Processor whose every device has full windows: each 15-min bucket of the 24 h one
    holds ``per_bucket`` readings spread over the device's normal band as a 1 Hz signal's
    900 would be (so its sketch bins are as many), and each minute of the last hour one
    more (every 1 h bucket filled)."""
    proc = Processor(configs)
    day, b24, b1 = 86_400.0, proc.cfg.bucket_24h_s, proc.cfg.bucket_1h_s
    now = time.time()
    now -= now % b24
    zs = spread(per_bucket)
    add = proc.add
    for d in specs:
        centre, sd = (d.normal_min + d.normal_max) / 2, (d.normal_max - d.normal_min) * 0.03
        values = [centre + z * sd for z in zs]
        t0 = now - day + b24
        # the first 23 h straight into the 24 h window (the 1 h one would only drop them)
        w24h = proc.state(d.device_id, d.sensor_type, d.unit).w24h
        for b in range(int((day - 3600) / b24)):
            start = t0 + b * b24
            for i, v in enumerate(values):
                t = start + i * b24 / per_bucket
                w24h.add(t, v, t)
        for m in range(int(3600 / b1)):
            t = now - 3600 + b1 + m * b1 + b1 / 2
            add(d.device_id, t, values[m % per_bucket], t)
    return proc


def _configs(specs: list[Any]) -> dict[str, DeviceConfig]:
    return {
        d.device_id: DeviceConfig(
            d.device_id, d.sensor_type, d.unit, d.normal_min, d.normal_max, d.alert_min, d.alert_max
        )
        for d in specs
    }


def run_bench(
    *,
    devices: int,
    minutes: int,
    output: str,
    markdown: str,
    console: Console,
    per_bucket: int = 12,
) -> dict[str, Any]:
    specs = fleet(devices)
    configs = _configs(specs)
    # 1. Memory with full 1 h and 24 h windows (DESIGN 7), first, in a fresh process.
    gc.collect()
    rss_empty = vm_rss_mib()
    console.print(f"  filling full 24 h and 1 h windows of {devices:,} devices ...")
    began = time.perf_counter()
    full = full_windows(specs, configs, per_bucket)
    fill_s = time.perf_counter() - began
    gc.collect()
    rss_full = vm_rss_mib()
    buckets = sum(len(st.w1h) + len(st.w24h) for st in full.devices.values())
    bins = sum(
        len(b.bins.counts)
        for st in full.devices.values()
        for b in (*st.w1h.thawed(), *st.w24h.thawed())
    )
    del full
    gc.collect()
    console.print(
        f"  full windows: {buckets:,} buckets ({bins / max(buckets, 1):.1f} sketch bins each), "
        f"RSS {rss_empty:,.0f} -> {rss_full:,.0f} MiB (+{rss_full - rss_empty:,.0f}) "
        f"in {fill_s:.0f} s"
    )
    rate = measure_rate(specs, configs, minutes, console)
    pure = _pure_python_rate(devices, minutes, console) if native.status().compiled else None
    result = {
        "devices": devices,
        "minutes": minutes,
        "readings": rate["readings"],
        "readings_per_s": round(rate["readings_per_s"]),
        "flush_all_devices_ms": round(rate["flush_s"] * 1000, 1),
        "rss_growth_mib": round(rate["rss_growth_mib"], 1),
        "engine": native.status().reason,
        "pure_python": pure,
        "full_windows": {
            "per_bucket": per_bucket,
            "buckets": buckets,
            "bins_per_bucket": round(bins / max(buckets, 1), 1),
            "rss_before_mib": round(rss_empty, 1),
            "rss_full_mib": round(rss_full, 1),
            "rss_growth_mib": round(rss_full - rss_empty, 1),
        },
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": (
            f"iotmon bench processing --devices {devices} --minutes {minutes} "
            f"--per-bucket {per_bucket}"
        ),
    }
    console.print(
        f"  {result['readings_per_s']:,} readings/s into the windows; "
        f"snapshot of all {devices:,} devices: {result['flush_all_devices_ms']} ms; "
        f"RSS +{result['rss_growth_mib']} MiB ({result['engine']})"
    )
    if pure is not None:
        console.print(
            f"  pure Python: {pure['readings_per_s']:,} readings/s, snapshot "
            f"{pure['flush_all_devices_ms']} ms: compiled is "
            f"{result['readings_per_s'] / max(pure['readings_per_s'], 1):.2f}x / "
            f"{pure['flush_all_devices_ms'] / max(result['flush_all_devices_ms'], 0.1):.2f}x"
        )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    _write_markdown(Path(markdown), result)
    return result


def measure_rate(
    specs: list[Any], configs: dict[str, DeviceConfig], minutes: int, console: Console | None
) -> dict[str, float]:
    """Readings/s into the windows over ``minutes`` simulated minutes at 1 Hz per device, then
    one snapshot of every device."""
    proc = Processor(configs)
    rng = random.Random(1)
    centre = {d.device_id: (d.normal_min + d.normal_max) / 2 for d in specs}
    span = {d.device_id: (d.normal_max - d.normal_min) for d in specs}
    ids = [d.device_id for d in specs]
    rss_before = vm_rss_mib()
    start = time.time() - minutes * 60
    total = len(ids) * minutes * 60
    gc.set_threshold(100_000, 50, 100)
    added = 0
    elapsed = 0.0
    with Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=console is None,
    ) as progress:
        task = progress.add_task("readings (1 Hz each)", total=total)
        for second in range(minutes * 60):
            t = start + second
            batch = [(i, t + rng.random(), centre[i] + rng.gauss(0, 0.03) * span[i]) for i in ids]
            began = time.perf_counter()
            add = proc.add
            for device_id, ts, v in batch:
                add(device_id, ts, v, ts)
            elapsed += time.perf_counter() - began
            added += len(batch)
            if second % 10 == 0:
                progress.update(task, completed=added)
        progress.update(task, completed=added)
    now = start + minutes * 60
    began = time.perf_counter()
    for device_id in ids:
        proc.snapshot(device_id, now)
    flush_s = time.perf_counter() - began
    return {
        "readings": added,
        "readings_per_s": added / elapsed,
        "flush_s": flush_s,
        "rss_growth_mib": vm_rss_mib() - rss_before,
    }


def rate_only(devices: int, minutes: int) -> dict[str, float]:
    """``measure_rate`` for a fleet, without output (the pure-Python side of a comparison)."""
    specs = fleet(devices)
    return measure_rate(specs, _configs(specs), minutes, None)


def _pure_python_rate(devices: int, minutes: int, console: Console) -> dict[str, Any]:
    """The same measurement in a child process on the pure-Python engine (IOTMON_NATIVE=0),
    right after the compiled one: the ratio is side by side, on the same box."""
    console.print("  the same readings on the pure-Python engine (IOTMON_NATIVE=0) ...")
    code = (
        "import sys, orjson; sys.path.insert(0, 'bench'); import processing;"
        f"print(orjson.dumps(processing.rate_only({devices}, {minutes})).decode())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "IOTMON_NATIVE": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    r = orjson.loads(out.stdout.strip().splitlines()[-1])
    return {
        "readings_per_s": round(r["readings_per_s"]),
        "flush_all_devices_ms": round(r["flush_s"] * 1000, 1),
    }


def _engine_table(r: dict[str, Any]) -> list[str]:
    pure = r.get("pure_python")
    if pure is None:
        return [
            f"Engine: {r['engine']}.",
            "",
            "| figure | value |",
            "|---|---:|",
            f"| readings/s absorbed (one core) | {r['readings_per_s']:,} |",
            f"| snapshot of all devices | {r['flush_all_devices_ms']:,} ms |",
            f"| memory (RSS growth over the run) | {r['rss_growth_mib']:,} MiB |",
        ]
    return [
        f"Engine: {r['engine']}; beside it, right after in a child process, the same readings "
        "on the pure-Python engine (`IOTMON_NATIVE=0`, what runs where nothing can compile).",
        "",
        "| figure | compiled | pure Python | ratio |",
        "|---|---:|---:|---:|",
        f"| readings/s absorbed (one core) | {r['readings_per_s']:,} | "
        f"{pure['readings_per_s']:,} | "
        f"{r['readings_per_s'] / max(pure['readings_per_s'], 1):.2f}x |",
        f"| snapshot of all devices | {r['flush_all_devices_ms']:,} ms | "
        f"{pure['flush_all_devices_ms']:,} ms | "
        f"{pure['flush_all_devices_ms'] / max(r['flush_all_devices_ms'], 0.1):.2f}x |",
        f"| memory (RSS growth over the run) | {r['rss_growth_mib']:,} MiB | | |",
    ]


def _write_markdown(path: Path, r: dict[str, Any]) -> None:
    fw = r["full_windows"]
    section = "\n".join(
        [
            "## Processing: live statistics engine at fleet scale",
            "",
            f"`{r['command']}` on {r['date']}, {r['machine']}.",
            f"{r['devices']:,} devices at 1 Hz for {r['minutes']} simulated minutes "
            f"({r['readings']:,} readings) into the 1 h and 24 h windows (buckets, sketches, "
            "trend sums, anomaly score), then one snapshot of every device (what a flush "
            "computes). The engine alone: no Kafka, no Redis.",
            "",
            *_engine_table(r),
            "",
            f"Memory with every device's windows full (DESIGN 7): {fw['buckets']:,} buckets "
            f"(60 of 1 min + 96 of 15 min per device, {fw['bins_per_bucket']} sketch bins each: "
            f"{fw['per_bucket']} readings per 15-min bucket spread over the normal band as a "
            "1 Hz signal's 900 would be), built in a fresh process before the run above: RSS "
            f"{fw['rss_before_mib']:,.0f} MiB -> {fw['rss_full_mib']:,.0f} MiB "
            f"(**+{fw['rss_growth_mib']:,.0f} MiB** for the windows).",
        ]
    )
    write_section(path, START, END, section)

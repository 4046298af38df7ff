"""The whole system's sustained limit (issue 14): the simulator, ingestion, processing, alerts
and web each as its own ``iotmon run <role>`` process on Kafka, PostgreSQL and Redis, the
simulator's rate raised step by step until a consumer's lag grows.

Per step: the simulator is restarted at the step's rate (``--devices`` devices, the send-rate
multiplier that makes the target), given ``--warmup-seconds``, then watched for
``--step-seconds``: every ``SAMPLE_S`` the end offsets of ``sensors-data`` and ``alerts`` and
each consumer group's committed offsets (Kafka's own view: what a group has taken for good),
CPU and RSS of every process. A role *holds* a step when its lag (end - committed, summed over
partitions) grows by less than ``GROWTH`` of the input rate over the window (least-squares
slope: processing commits at its flushes, so the lag is a saw, not a line), or ends the step
under ``LAG_OK_S`` seconds of input; the simulator
*holds* when it produced at least 95 % of the target. The run goes on while the simulator
holds and some consumer still does (a role that fell behind keeps running, behind: its own
limit is the last step it held), up to the last rate.

With ``--full-windows`` every simulated device's last 24 hours are in PostgreSQL before the
roles start (``fill_windows``), so processing rebuilds full 1 h and 24 h windows first and
its RSS is the one of a role that has run for a day (DESIGN 7, issue 14's item 4).

Run: ``iotmon bench sustained --rates 5000,10000,15000,20000,25000 --step-seconds 300``.
Writes bench/results/sustained.json and its section of BENCHMARKS.md.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import psycopg
from confluent_kafka import Consumer as KConsumer
from confluent_kafka import TopicPartition as KTP
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common import Sandbox, free_port, machine, stop_all, write_section
from iotmon import native
from iotmon.config import Settings
from iotmon.db import partitions
from iotmon.devices.models import fleet
from iotmon.readings.ingest import COPY_SQL
from iotmon.readings.models import COPY_TYPES
from processing import spread

REDIS_DB = 15  # bench alerts uses 11, api 12, ws and mqtt 13, dashboard 14, the e2e tests 10
SAMPLE_S = 2.0
GROWTH = 0.02  # a lag growing by less than 2 % of the input rate is flat
LAG_OK_S = 5.0  # ... and so is one never past 5 s of input at the end of the step
CONSUMERS = {  # role -> the topic it consumes
    "ingestion": "sensors-data",
    "processing": "sensors-data",
    "alerts": "alerts",
}
ROLES = ("ingestion", "processing", "alerts", "web")
FILL_PER_BUCKET = 12  # readings a 15-minute bucket of a full 24 h window (as bench processing)


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int, field: str = "VmRSS:") -> float:
    """RSS now, or with ``field="VmHWM:"`` the peak so far."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _service_pids() -> dict[str, list[int]]:
    """PostgreSQL (every backend), Kafka (the JVM) and Redis processes of this machine."""
    found: dict[str, list[int]] = {"postgres": [], "kafka": [], "redis": []}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm = (entry / "comm").read_text().strip()
            if comm == "postgres":
                found["postgres"].append(int(entry.name))
            elif comm.startswith("redis-server"):
                found["redis"].append(int(entry.name))
            elif comm == "java" and b"kafka" in (entry / "cmdline").read_bytes():
                found["kafka"].append(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _machine_busy_s() -> float:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(parts[:8]) - parts[3] - parts[4]) / os.sysconf("SC_CLK_TCK")


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y)."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / var if var else 0.0


class Offsets:
    """End offsets of the topics and committed offsets of the groups, from Kafka."""

    def __init__(self, bootstrap: str, prefix: str, groups: dict[str, str]) -> None:
        self.prefix = prefix
        self._probe = KConsumer({"bootstrap.servers": bootstrap, "group.id": f"{prefix}probe"})
        self._groups = {
            role: KConsumer(
                {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
            )
            for role, group in groups.items()
        }
        self._parts: dict[str, list[int]] = {}

    def _partitions(self, topic: str) -> list[int]:
        if topic not in self._parts:
            meta = self._probe.list_topics(topic, timeout=10).topics[topic]
            self._parts[topic] = sorted(meta.partitions)
        return self._parts[topic]

    def end(self, name: str) -> int:
        topic = self.prefix + name
        total = 0
        for p in self._partitions(topic):
            _, high = self._probe.get_watermark_offsets(KTP(topic, p), timeout=10)
            total += high
        return total

    def committed(self, role: str) -> int:
        topic = self.prefix + CONSUMERS[role]
        got = self._groups[role].committed(
            [KTP(topic, p) for p in self._partitions(topic)], timeout=10
        )
        return sum(max(k.offset, 0) for k in got)

    def close(self) -> None:
        for c in (self._probe, *self._groups.values()):
            c.close()


def _start(role: str, env: dict[str, str], port: int, logs: Path) -> subprocess.Popen[bytes]:
    out = (logs / f"{role}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "iotmon", "run", role],
        env=env | {"IOTMON_HTTP_PORT": str(port)},
        stdout=out,
        stderr=subprocess.STDOUT,
    )


def fill_windows(url: str, devices: int, console: Console) -> int:
    """Every simulated device registered (its simulator configuration) with its last 24 hours
    of readings: ``FILL_PER_BUCKET`` a 15-minute bucket of the first 23 hours, spread over the
    device's normal band as a 1 Hz signal's would be, then one a minute (so every bucket of
    both windows holds data). Returns the rows stored."""
    specs = fleet(devices)
    now = time.time()
    b24 = 900.0
    first = now - now % b24 - 86_400 + b24
    zs = spread(FILL_PER_BUCKET)
    step = b24 / FILL_PER_BUCKET
    stamps = [  # the same instants for every device
        datetime.fromtimestamp(t, UTC)
        for t in [first + b * b24 + k * step for b in range(92) for k in range(FILL_PER_BUCKET)]
        + [now - 3600 + m * 60 + 30 for m in range(60)]
    ]
    per_device = len(stamps)
    with psycopg.connect(url, autocommit=True) as conn:
        days = {datetime.fromtimestamp(t, UTC).date() for t in (first, now)}
        partitions.ensure(conn, days)
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO devices (device_id, device_type, location, unit, normal_min,"
                " normal_max, alert_min, alert_max, interval_ms)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                [
                    (
                        d.device_id,
                        d.sensor_type,
                        d.location,
                        d.unit,
                        d.normal_min,
                        d.normal_max,
                        d.alert_min,
                        d.alert_max,
                        round(d.interval_s * 1000),
                    )
                    for d in specs
                ],
            )
        progress = Progress(
            TextColumn("{task.description:<26}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        with progress:
            task = progress.add_task("24 h of readings stored", total=len(specs) * per_device)
            for i in range(0, len(specs), 500):
                with conn.transaction(), conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
                    copy.set_types(COPY_TYPES)
                    for d in specs[i : i + 500]:
                        centre = (d.normal_min + d.normal_max) / 2
                        sd = (d.normal_max - d.normal_min) * 0.03
                        values = [centre + z * sd for z in zs]
                        for j, ts in enumerate(stamps):
                            copy.write_row(
                                (
                                    d.device_id,
                                    ts,
                                    d.sensor_type,
                                    values[j % FILL_PER_BUCKET],
                                    d.unit,
                                    d.location,
                                    "active",
                                    None,
                                )
                            )
                progress.update(task, completed=min(i + 500, len(specs)) * per_device)
    return len(specs) * per_device


def _wait_rebuilt(
    port: int, proc: subprocess.Popen[bytes], devices: int, timeout: float = 900
) -> dict[str, Any]:
    """Wait until processing has every device's state (its rebuild from PostgreSQL, on its
    partitions' assignment, is done): how long from now, and its peak RSS so far."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the processing role exited with {proc.returncode}")
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except httpx.HTTPError:
            text = ""
        for line in text.splitlines():
            if line.startswith("iotmon_processing_devices ") and float(line.split()[1]) >= devices:
                return {
                    "seconds": round(time.monotonic() - started, 1),
                    "processing_peak_mib": round(_rss_mib(proc.pid, "VmHWM:"), 1),
                }
        time.sleep(1.0)
    raise RuntimeError(f"processing did not rebuild {devices:,} devices within {timeout:g} s")


def _wait_healthy(ports: dict[str, int], procs: dict[str, subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    waiting = dict(ports)
    while waiting:
        for role, port in list(waiting.items()):
            if procs[role].poll() is not None:
                raise RuntimeError(f"the {role} role exited with {procs[role].returncode}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    del waiting[role]
            except httpx.HTTPError:
                pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"not healthy within 120 s: {', '.join(waiting)}")
        time.sleep(0.5)


def run_bench(
    settings: Settings,
    *,
    rates: list[int],
    step_seconds: float,
    warmup_seconds: float,
    devices: int,
    output: str,
    markdown: str,
    console: Console,
    full_windows: bool = False,
) -> dict[str, Any]:
    assert settings.kafka_bootstrap
    base_hz = sum(1 / d.interval_s for d in fleet(devices))  # readings/s at multiplier 1
    box = Sandbox.open(settings, redis_db=REDIS_DB)
    logs = Path(tempfile.mkdtemp(prefix="iotmon-sustained-"))  # the roles' output
    console.print(f"  role logs: {logs}")
    env = box.env | {"IOTMON_SIMULATOR_DEVICES": str(devices), "IOTMON_MQTT_EMBEDDED_PORT": "0"}
    ports = {role: free_port() for role in (*ROLES, "simulator")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    offsets: Offsets | None = None
    steps: list[dict[str, Any]] = []
    down: set[str] = set()  # consumers that fell behind at some step
    filled = 0
    rebuild: dict[str, Any] | None = None
    try:
        if full_windows:
            filled = fill_windows(env["IOTMON_DATABASE_URL"], devices, console)
        for role in ROLES:
            procs[role] = _start(role, env, ports[role], logs)
        _wait_healthy({r: ports[r] for r in ROLES}, procs)
        if full_windows:
            rebuild = _wait_rebuilt(ports["processing"], procs["processing"], devices)
            rebuild["rss_mib"] = {r: round(_rss_mib(procs[r].pid), 1) for r in ROLES}
            console.print(
                f"  processing rebuilt {devices:,} devices' windows from {filled:,} readings"
                f" in {rebuild['seconds']:.0f} s (peak RSS {rebuild['processing_peak_mib']:,.0f}"
                f" MiB); RSS MiB now {rebuild['rss_mib']}"
            )
        groups = {role: box.env[f"IOTMON_{role.upper()}_GROUP"] for role in CONSUMERS}
        offsets = Offsets(settings.kafka_bootstrap, box.prefix, groups)
        console.print(
            f"  roles up ({', '.join(f'{r} pid {p.pid}' for r, p in procs.items())}); "
            f"{devices:,} simulated devices, {base_hz:,.0f} readings/s at multiplier 1"
        )
        for rate in rates:
            multiplier = rate / base_hz
            if "simulator" in procs:
                stop_all([procs.pop("simulator")])
            procs["simulator"] = _start(
                "simulator",
                env | {"IOTMON_SIMULATOR_RATE": f"{multiplier:.6f}"},
                ports["simulator"],
                logs,
            )
            console.print(
                f"  step {rate:,} readings/s: warm-up {warmup_seconds:g} s, "
                f"then {step_seconds:g} s ..."
            )
            time.sleep(warmup_seconds)
            step = _step(offsets, procs, rate, step_seconds)
            steps.append(step)
            failed = [r for r in CONSUMERS if not step["held"][r]]
            console.print(
                f"    produced {step['produced_per_s']:,.0f}/s; consumed "
                + ", ".join(f"{r} {step['consumed_per_s'][r]:,.0f}/s" for r in CONSUMERS)
                + "; lag slope "
                + ", ".join(f"{r} {step['lag_slope_per_s'][r]:+,.0f}/s" for r in CONSUMERS)
                + "; CPU % "
                + ", ".join(f"{k} {v:.0f}" for k, v in step["cpu_pct"].items())
                + f"; held by {', '.join(r for r, ok in step['held'].items() if ok) or 'none'}",
                highlight=False,
            )
            down |= set(failed)
            if down == set(CONSUMERS) or not step["held"]["simulator"]:
                break
    finally:
        stop_all(list(procs.values()))
        if offsets is not None:
            offsets.close()
        box.close()
    result = _summary(steps, rates, step_seconds, warmup_seconds, devices, filled)
    result["rebuild"] = rebuild
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    write_section(Path(markdown), START, END, _section(result))
    console.print(f"results: {output}, {markdown}")
    return result


def _step(
    offsets: Offsets, procs: dict[str, subprocess.Popen[bytes]], rate: int, seconds: float
) -> dict[str, Any]:
    services = _service_pids()
    pids = {name: [p.pid] for name, p in procs.items()} | services
    cpu0 = {name: sum(map(_cpu_s, ps)) for name, ps in pids.items()}
    busy0 = _machine_busy_s()
    t0 = time.monotonic()
    first_end = {"sensors-data": offsets.end("sensors-data"), "alerts": offsets.end("alerts")}
    first_committed = {r: offsets.committed(r) for r in CONSUMERS}
    lags: dict[str, list[tuple[float, float]]] = {r: [] for r in CONSUMERS}
    rss: dict[str, float] = dict.fromkeys(procs, 0.0)
    ends: dict[str, int] = dict(first_end)
    committed = dict(first_committed)
    while True:
        now = time.monotonic() - t0
        ends = {name: offsets.end(name) for name in ends}
        committed = {r: offsets.committed(r) for r in CONSUMERS}
        for r, topic in CONSUMERS.items():
            lags[r].append((now, ends[topic] - committed[r]))
        for name, p in procs.items():
            rss[name] = max(rss[name], _rss_mib(p.pid))
            if p.poll() is not None:
                raise RuntimeError(f"the {name} process exited with {p.returncode}")
        if now >= seconds:
            break
        time.sleep(min(SAMPLE_S, max(seconds - now, 0.05)))
    elapsed = time.monotonic() - t0
    cpu = {name: (sum(map(_cpu_s, ps)) - cpu0[name]) / elapsed * 100 for name, ps in pids.items()}
    produced = (ends["sensors-data"] - first_end["sensors-data"]) / elapsed
    inputs = {r: (ends[t] - first_end[t]) / elapsed for r, t in CONSUMERS.items()}
    slopes = {r: _slope(points) for r, points in lags.items()}
    held: dict[str, bool] = {"simulator": produced >= 0.95 * rate}
    for r in CONSUMERS:
        # flat: growing by under GROWTH of the input, or never past LAG_OK_S of input (the
        # saw of batches and flushes over a short window is not a trend)
        small = lags[r][-1][1] <= max(LAG_OK_S * inputs[r], 1000)
        held[r] = slopes[r] <= GROWTH * max(inputs[r], 1.0) or small
    return {
        "rate": rate,
        "seconds": round(elapsed, 1),
        "produced_per_s": round(produced),
        "alerts_topic_per_s": round(inputs["alerts"], 1),
        # one decimal: the alerts role's input is the few readings past a threshold
        "consumed_per_s": {
            r: round((committed[r] - first_committed[r]) / elapsed, 1) for r in CONSUMERS
        },
        "consumed": {r: committed[r] - first_committed[r] for r in CONSUMERS},
        "lag_start": {r: int(lags[r][0][1]) for r in CONSUMERS},
        "lag_end": {r: int(lags[r][-1][1]) for r in CONSUMERS},
        "lag_max": {r: int(max(y for _, y in lags[r])) for r in CONSUMERS},
        "lag_slope_per_s": {r: round(s, 1) for r, s in slopes.items()},
        "held": held,
        "cpu_pct": {k: round(v, 1) for k, v in cpu.items()},
        "machine_busy_pct": round((_machine_busy_s() - busy0) / elapsed * 100, 1),
        "rss_mib": {k: round(v, 1) for k, v in rss.items()},
    }


def _summary(
    steps: list[dict[str, Any]],
    rates: list[int],
    step_seconds: float,
    warmup_seconds: float,
    devices: int,
    filled: int = 0,
) -> dict[str, Any]:
    roles = ("simulator", *CONSUMERS)
    best: dict[str, int | None] = {}
    for r in roles:  # the highest step held before the role first fell behind
        best[r] = None
        for s in steps:
            if not s["held"][r]:
                break
            best[r] = s["rate"]
    everyone = [s for s in steps if all(s["held"].values())]
    bottleneck = None
    for s in steps:
        failing = [r for r in roles if not s["held"][r]]
        if failing:
            bottleneck = {"rate": s["rate"], "roles": failing}
            break
    rates_arg = ",".join(str(r) for r in rates)
    return {
        "steps": steps,
        "best_per_role": best,
        "held": ({"rate": everyone[-1]["rate"], "step": everyone[-1]} if everyone else None),
        "first_bottleneck": bottleneck,
        "devices": devices,
        "filled_readings": filled,  # --full-windows: readings of the last 24 h stored first
        "step_seconds": step_seconds,
        "warmup_seconds": warmup_seconds,
        "growth_threshold": GROWTH,
        "lag_ok_s": LAG_OK_S,
        "machine": machine(),
        # the roles import the same sources with the same IOTMON_NATIVE (bench/common.py)
        "engine": native.status().reason,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": (
            f"iotmon bench sustained --rates {rates_arg} --step-seconds {step_seconds:g} "
            f"--warmup-seconds {warmup_seconds:g} --devices {devices}"
            + (" --full-windows" if filled else "")
        ),
    }


START, END = "<!-- bench:sustained:start -->", "<!-- bench:sustained:end -->"


def _section(r: dict[str, Any]) -> str:
    procs = ("simulator", "ingestion", "processing", "alerts", "web", "postgres", "kafka", "redis")
    lines = [
        "## Sustained: every role its own process, rate raised until lag grows",
        "",
        f"`{r['command']}` on {r['date']}, {r['machine']} (load average at the end "
        f"{', '.join(str(x) for x in r['load_average'])}; the box was shared with other work).",
        f"{r['devices']:,} simulated devices; each step restarts the simulator at its rate, "
        f"waits {r['warmup_seconds']:g} s, then watches {r['step_seconds']:g} s. Lag: each "
        "group's committed offsets against the end offsets, from Kafka; flat = its "
        f"least-squares slope under {r['growth_threshold']:.0%} of the input rate, or the "
        f"lag at the end of the step under {r['lag_ok_s']:g} s of input. Statistics "
        f"engine: {r.get('engine', 'not recorded')}."
        + (
            f" Full windows: {r['filled_readings']:,} readings of the last 24 h in PostgreSQL "
            "before the roles started (processing rebuilt every device's 1 h and 24 h windows)."
            if r.get("filled_readings")
            else ""
        ),
        "",
        "| target/s | produced/s | ingestion/s | processing/s | alerts in/s "
        "| lag slope ing/proc/alerts (/s) | held by |",
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    for s in r["steps"]:
        c, sl = s["consumed_per_s"], s["lag_slope_per_s"]
        held = ", ".join(k for k, ok in s["held"].items() if ok) or "none"
        lines.append(
            f"| {s['rate']:,} | {s['produced_per_s']:,} | {c['ingestion']:,.0f} "
            f"| {c['processing']:,.0f} | {c['alerts']:,.0f} "
            f"| {sl['ingestion']:+,.0f} / {sl['processing']:+,.0f} / {sl['alerts']:+,.0f} "
            f"| {held} |"
        )
    lines += [
        "",
        "CPU (% of one core) and peak RSS (MiB) per process, per step:",
        "",
        "| target/s | " + " | ".join(procs) + " | machine |",
        "|---:|" + "---:|" * (len(procs) + 1),
    ]
    for s in r["steps"]:
        cells = []
        for p in procs:
            cpu = s["cpu_pct"].get(p)
            mem = s["rss_mib"].get(p)
            cells.append(
                "-" if cpu is None else f"{cpu:.0f} %" + ("" if mem is None else f", {mem:.0f}")
            )
        lines.append(
            f"| {s['rate']:,} | " + " | ".join(cells) + f" | {s['machine_busy_pct']:.0f} % |"
        )
    if r.get("rebuild"):
        rb = r["rebuild"]
        lines += [
            "",
            f"Processing rebuilt every device's windows from PostgreSQL in {rb['seconds']:g} s "
            f"before the first step (peak RSS {rb['processing_peak_mib']:,.0f} MiB; RSS then: "
            + ", ".join(f"{k} {v:,.0f}" for k, v in rb["rss_mib"].items())
            + " MiB).",
        ]
    best = ", ".join(
        f"{k} {v:,}/s" if v is not None else f"{k} none" for k, v in r["best_per_role"].items()
    )
    lines += ["", f"Highest step held: {best}."]
    if r["first_bottleneck"]:
        b = r["first_bottleneck"]
        lines.append(f"First bottleneck: {', '.join(b['roles'])} at {b['rate']:,} readings/s.")
    else:
        lines.append("No role fell behind at the highest rate tried.")
    return "\n".join(lines)

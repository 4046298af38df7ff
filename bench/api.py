"""REST API benchmark: requests/s and p50/p99 latency of the read endpoints under wrk, 100
connections (DESIGN.md 7: p99 < 20 ms for the device list and the dashboard metrics, < 100 ms
for 24 h of one device's history).

The web role runs alone as a child process (`iotmon run web`) on the real PostgreSQL and Redis,
on a fresh database: migrated, 24 h of readings loaded with COPY (device-001 at 1 Hz, the other
four seeded devices at their own intervals), and Redis filled the way processing fills it (the
processing role runs on a fresh topic prefix until it has written every device's keys, then
stops, so nothing but the web role and wrk runs while wrk measures). The API's rate limit is
off in the web role (IOTMON_RATE_LIMIT_PER_MINUTE=0): one client address sending thousands of
requests a second is the point here.

wrk comes from Debian (`apt-get install -y wrk`); when it is missing the benchmark installs it
if it runs as root. A small Lua script prints wrk's own percentiles as JSON.

Run: ``iotmon bench api`` with the services of ``scripts/infra.sh`` in the environment.
"""

from __future__ import annotations

import math
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import orjson
import psycopg
import redis
from rich.console import Console

from common import (
    BENCH_PASSWORD,
    BENCH_USER,
    Sandbox,
    free_port,
    machine,
    stop_all,
    write_section,
)
from iotmon.config import Settings
from iotmon.db import partitions
from iotmon.devices.models import SEEDED
from iotmon.timefmt import iso_utc

START, END = "<!-- bench:api:start -->", "<!-- bench:api:end -->"
REDIS_DB = 12  # bench alerts uses 11, bench ws 13
HISTORY_DEVICE = "device-001"
DAY_S = 86_400
SINGLE_S = 5  # the one-connection run per endpoint


class Endpoint(NamedTuple):
    name: str
    path: str  # {from} and {to} are filled in when the run starts
    target_p99_ms: float | None  # None: measured for scale, no target in the issue


ENDPOINTS = (
    Endpoint("devices", "/api/devices", 20),
    Endpoint(
        "history",
        f"/api/devices/{HISTORY_DEVICE}/history?from={{from}}&to={{to}}&limit=500",
        100,
    ),
    Endpoint("dashboard", "/api/metrics/dashboard", 20),
    # Not cached: every request runs the whole stack and two queries over the loaded alerts.
    Endpoint("alerts", "/api/alerts?status=all&limit=50", None),
)
ALERTS = 2_000  # resolved alerts over the last day, for the alert list

# wrk's own histogram, printed once at the end as one JSON line (latencies in microseconds).
LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


def ensure_wrk(console: Console) -> str:
    """wrk's path; installs the Debian package when missing and running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise RuntimeError(
            "wrk is not installed: install it with `sudo apt-get install -y wrk` "
            "(Debian/Ubuntu), then run the benchmark again"
        )
    console.print("  wrk not found: apt-get install -y wrk ...")
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"apt-get install -y wrk failed:\n{done.stderr.strip()}")
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("apt-get installed wrk but it is not on PATH")
    return found


def parse_wrk(output: str) -> dict[str, Any]:
    """The JSON line the Lua script prints, as figures in ms and requests/s."""
    for line in output.splitlines():
        if line.startswith("WRK_JSON "):
            raw = orjson.loads(line.removeprefix("WRK_JSON "))
            break
    else:
        raise RuntimeError(f"no figures in wrk's output:\n{output}")
    seconds = raw["duration_us"] / 1e6
    return {
        "requests": raw["requests"],
        "seconds": round(seconds, 2),
        "requests_per_s": round(raw["requests"] / seconds, 1) if seconds else 0.0,
        "p50_ms": round(raw["p50_us"] / 1000, 2),
        "p90_ms": round(raw["p90_us"] / 1000, 2),
        "p99_ms": round(raw["p99_us"] / 1000, 2),
        "p999_ms": round(raw["p999_us"] / 1000, 2),
        "mean_ms": round(raw["mean_us"] / 1000, 2),
        "max_ms": round(raw["max_us"] / 1000, 2),
        "bytes_per_response": round(raw["bytes"] / raw["requests"]) if raw["requests"] else 0,
        "non_2xx": raw["status"],
        "socket_errors": {k: raw[k] for k in ("connect", "read", "write", "timeout")},
    }


def _proc_cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent not idle (every core)."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]  # idle + iowait
    return (sum(parts[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _postgres_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process (the server and its backends)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    total += _proc_cpu_s(int(entry.name))
            except (OSError, ValueError):
                continue
    return total


def _children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _readings(now: float) -> tuple[list[tuple[Any, ...]], int]:
    """24 h up to ``now``: device-001 every second, the other seeded devices at their own
    intervals; values wander inside each device's normal range."""
    rng = random.Random(7)
    rows: list[tuple[Any, ...]] = []
    history = 0
    for spec in SEEDED:
        step = 1.0 if spec.device_id == HISTORY_DEVICE else spec.interval_s
        mid = (spec.normal_min + spec.normal_max) / 2
        amp = (spec.normal_max - spec.normal_min) / 4
        n = int(DAY_S / step)
        for i in range(n):
            t = now - DAY_S + (i + 1) * step
            value = round(mid + amp * math.sin(t / 3600) + rng.gauss(0, amp / 10), 2)
            rows.append(
                (
                    spec.device_id,
                    datetime.fromtimestamp(t, UTC),
                    spec.sensor_type,
                    value,
                    spec.unit,
                    spec.location,
                    "active",
                )
            )
        if spec.device_id == HISTORY_DEVICE:
            history = n
    return rows, history


def _load(url: str, now: float, console: Console) -> dict[str, Any]:
    rows, history = _readings(now)
    days = {r[1].date() for r in rows}
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        partitions.ensure(conn, days)  # the sandbox is migrated, with partitions ahead
        with conn.transaction(), conn.cursor() as cur:
            sql = (
                'COPY sensor_readings (device_id, "timestamp", sensor_type, value, unit, '
                "location, status) FROM STDIN (FORMAT BINARY)"
            )
            with cur.copy(sql) as copy:
                copy.set_types(["text", "timestamptz", "text", "float8", "text", "text", "text"])
                for row in rows:
                    copy.write_row(row)
        conn.execute(
            "INSERT INTO alerts (device_id, alert_type, message, severity, value, threshold,"
            " status, triggered_at, resolved_at)"
            " SELECT 'device-00' || (1 + mod(g, 5)), 'threshold_exceeded', 'bench alert ' || g,"
            " (ARRAY['low', 'medium', 'high', 'critical'])[1 + mod(g, 4)], 90, 85, 'resolved',"
            " now() - g * interval '40 seconds', now() - g * interval '40 seconds' + interval"
            " '20 seconds' FROM generate_series(1, %s) g",
            (ALERTS,),
        )
        conn.execute("ANALYZE sensor_readings")
        conn.execute("ANALYZE alerts")
    seconds = time.perf_counter() - started
    console.print(
        f"  loaded {len(rows):,} readings ({history:,} of {HISTORY_DEVICE} at 1 Hz) "
        f"with COPY and {ALERTS:,} alerts in {seconds:.1f} s"
    )
    return {"readings": len(rows), "history_device_readings": history, "alerts": ALERTS}


def _fill_redis(env: dict[str, str], redis_url: str, console: Console) -> None:
    """Run the processing role until it has rebuilt the loaded day and written every seeded
    device's live keys and system:metrics, then stop it."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "iotmon", "run", "processing"],
        env=env | {"IOTMON_HTTP_PORT": str(free_port())},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    r = redis.Redis.from_url(redis_url)
    wanted = [f"device:{d.device_id}:stats:24h" for d in SEEDED] + ["system:metrics"]
    try:
        while r.exists(*wanted) < len(wanted):
            if proc.poll() is not None:
                raise RuntimeError(f"the processing role exited ({proc.returncode})")
            if time.monotonic() - started > 120:
                raise RuntimeError("the processing role did not write the live keys in 120 s")
            time.sleep(0.5)
    finally:
        stop_all([proc])
        r.close()
    console.print(f"  Redis filled by the processing role in {time.monotonic() - started:.1f} s")


def _token(web: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        try:
            login = httpx.post(
                f"{web}/api/auth/token",
                json={"username": BENCH_USER, "password": BENCH_PASSWORD},
                timeout=5,
            )
            return str(login.json()["data"]["accessToken"])
        except (httpx.HTTPError, KeyError, ValueError, TypeError):
            if time.monotonic() > deadline:
                raise RuntimeError("the web role did not start within 60 s") from None
            time.sleep(0.5)


def _wrk(
    wrk: str,
    script: str,
    url: str,
    token: str,
    *,
    connections: int,
    threads: int,
    seconds: float,
) -> dict[str, Any]:
    cmd = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        script,
        "-H",
        f"Authorization: Bearer {token}",
        url,
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    return parse_wrk(done.stdout)


def _measure(
    settings: Settings,
    wrk: str,
    *,
    connections: int,
    threads: int,
    seconds: float,
    warmup: float,
    endpoints: tuple[Endpoint, ...],
    console: Console,
) -> dict[str, Any]:
    box = Sandbox.open(settings, redis_db=REDIS_DB)
    url, redis_url, env = box.url, box.redis_url, box.env
    procs: list[subprocess.Popen[bytes]] = []
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)  # noqa: SIM115
    script.write(LUA)
    script.close()
    try:
        now = time.time()
        loaded = _load(url, now, console)
        _fill_redis(env, redis_url, console)
        port = free_port()
        web_proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "run", "web"],
            env=env | {"IOTMON_HTTP_PORT": str(port), "IOTMON_RATE_LIMIT_PER_MINUTE": "0"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(web_proc)
        web = f"http://127.0.0.1:{port}"
        token = _token(web)
        console.print(
            f"  web role up (pid {web_proc.pid}, IOTMON_RATE_LIMIT_PER_MINUTE=0: rate limit "
            f"off); wrk -t{threads} -c{connections}, {warmup:g} s warm-up + {seconds:g} s "
            "per endpoint"
        )
        results = []
        frm, to = iso_utc(now - DAY_S, "seconds"), iso_utc(now, "seconds")
        for ep in endpoints:
            path = ep.path.replace("{from}", frm).replace("{to}", to)
            check = httpx.get(web + path, headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if warmup > 0:
                _wrk(
                    wrk,
                    script.name,
                    web + path,
                    token,
                    connections=connections,
                    threads=threads,
                    seconds=warmup,
                )
            # One connection first: the time one request takes when nothing waits before it.
            single = _wrk(
                wrk,
                script.name,
                web + path,
                token,
                connections=1,
                threads=1,
                seconds=SINGLE_S,
            )
            web_cpu, busy, kids = _proc_cpu_s(web_proc.pid), _machine_busy_s(), _children_cpu_s()
            pg = _postgres_cpu_s()
            figures = _wrk(
                wrk,
                script.name,
                web + path,
                token,
                connections=connections,
                threads=threads,
                seconds=seconds,
            )
            elapsed = figures["seconds"] or seconds
            cpu = {
                "web_role_pct": round(100 * (_proc_cpu_s(web_proc.pid) - web_cpu) / elapsed),
                "wrk_pct": round(100 * (_children_cpu_s() - kids) / elapsed),
                "postgres_pct": round(100 * (_postgres_cpu_s() - pg) / elapsed),
                "machine_pct": round(100 * (_machine_busy_s() - busy) / elapsed),
            }
            result = {
                "endpoint": ep.name,
                "path": path,
                "status": check.status_code,
                "target_p99_ms": ep.target_p99_ms,
                **figures,
                "cpu": cpu,
                "one_connection": {
                    k: single[k] for k in ("requests_per_s", "p50_ms", "p99_ms", "non_2xx")
                },
            }
            result["valid"] = (
                check.status_code == 200 and figures["non_2xx"] == 0 and single["non_2xx"] == 0
            )
            result["met"] = (
                None
                if ep.target_p99_ms is None
                else result["valid"] and figures["p99_ms"] < ep.target_p99_ms
            )
            results.append(result)
            console.print(_line(result))
    finally:
        stop_all(procs)
        os.unlink(script.name)
        box.close()
    return {"loaded": loaded, "endpoints": results}


def _line(r: dict[str, Any]) -> str:
    one = r["one_connection"]
    if not r["valid"]:
        verdict = (
            f"[red]{r['non_2xx']:,} of {r['requests']:,} non-2xx (first answer {r['status']})[/]"
        )
    elif r["met"] is None:
        verdict = "no target"
    else:
        verdict = f"target < {r['target_p99_ms']:g} ms: " + (
            "[green]met[/]" if r["met"] else "[yellow]missed[/]"
        )
    return (
        f"  {r['endpoint']:<10} {r['requests_per_s']:>9,.0f} req/s  p50 {r['p50_ms']:>7.2f} ms  "
        f"p99 {r['p99_ms']:>7.2f} ms ({verdict}); "
        f"1 connection: {one['requests_per_s']:,.0f} req/s, p50 {one['p50_ms']:.2f} ms, "
        f"p99 {one['p99_ms']:.2f} ms;  "
        f"CPU: web {r['cpu']['web_role_pct']}%, PostgreSQL {r['cpu']['postgres_pct']}%, "
        f"wrk {r['cpu']['wrk_pct']}%, "
        f"machine {r['cpu']['machine_pct']}% of 200%"
    )


def run_bench(
    settings: Settings,
    *,
    connections: int,
    threads: int,
    seconds: float,
    warmup: float = 5,
    output: str,
    markdown: str,
    console: Console,
    endpoints: tuple[Endpoint, ...] = ENDPOINTS,
) -> dict[str, Any]:
    wrk = ensure_wrk(console)
    version = subprocess.run([wrk, "--version"], capture_output=True, text=True)
    measured = _measure(
        settings,
        wrk,
        connections=connections,
        threads=threads,
        seconds=seconds,
        warmup=warmup,
        endpoints=endpoints,
        console=console,
    )
    result = {
        **measured,
        "connections": connections,
        "threads": threads,
        "seconds": seconds,
        "warmup_s": warmup,
        "rate_limit": "off (IOTMON_RATE_LIMIT_PER_MINUTE=0 in the web role)",
        "wrk": " ".join((version.stdout or version.stderr).split()[:2]),
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": f"iotmon bench api --connections {connections} --seconds {seconds:g}",
    }
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    rows = []
    for r in result["endpoints"]:
        if not r["valid"]:
            verdict = f"invalid: {r['non_2xx']:,} non-2xx (HTTP {r['status']})"
        elif r["met"] is None:
            verdict = "none (not cached)"
        else:
            verdict = f"< {r['target_p99_ms']:g} ms: " + ("met" if r["met"] else "**missed**")
        one = r["one_connection"]
        rows.append(
            f"| `GET {r['path'].split('?')[0]}` | {r['requests_per_s']:,.0f} | {r['p50_ms']} "
            f"| {r['p99_ms']} | {verdict} | {one['p50_ms']} / "
            f"{one['p99_ms']} | {r['bytes_per_response']:,} | {r['cpu']['web_role_pct']}% / "
            f"{r['cpu']['postgres_pct']}% / {r['cpu']['machine_pct']}% |"
        )
    loaded = result["loaded"]
    write_section(
        Path(markdown),
        START,
        END,
        "\n".join(
            [
                "## REST API under load (wrk)",
                "",
                f"`{result['command']}` on {result['date']}, {result['machine']} (a shared "
                "box: other work may have run at the same time). "
                f"{result['wrk']}, `-t{threads} -c{connections}`, {warmup:g} s warm-up then "
                f"{seconds:g} s per endpoint, bearer token of a `viewer`. The web role alone "
                "(`iotmon run web`, one process) on PostgreSQL/Redis, a fresh database with "
                f"{loaded['readings']:,} readings of the last 24 h loaded with COPY "
                f"({loaded['history_device_readings']:,} of {HISTORY_DEVICE}, 1 Hz; the other "
                "four devices at their own intervals), Redis filled by the processing role "
                "(then stopped). Rate limit off (`IOTMON_RATE_LIMIT_PER_MINUTE=0`). History: "
                "`?from=<24 h ago>&to=<now>&limit=500`, the range fixed when the run starts (so "
                "the API's one-second answer cache computes it about once a second). The alert "
                f"list is not cached: {loaded['alerts']:,} resolved alerts of the last day, "
                "`?status=all&limit=50` (the dashboard's Alerts page), the whole stack and two "
                "PostgreSQL queries per request. Repeats of a cached answer are served by "
                "`AnswerReplay` in front of FastAPI, with the token, "
                "rate limit and metrics still checked per request (README, design notes). "
                "With a fixed number of connections each waiting for its answer, latency is about "
                "connections / throughput; the one-connection run shows a request's own time.",
                "",
                "| endpoint | requests/s | p50 ms | p99 ms | p99 target | 1 connection: p50 / "
                "p99 ms | bytes/answer | CPU web role / PostgreSQL / machine (of 200%) |",
                "|---|---:|---:|---:|---|---|---:|---:|",
                *rows,
            ]
        ),
    )
    return result

"""End-to-end latency benchmark (DESIGN.md 7): a reading produced -> ``sensor-data`` at a
Socket.IO client, and a threshold-crossing reading -> ``alert-triggered`` at the client;
p50/p95/p99, with the processing role's readings/s and RSS.

The five roles run as separate processes (`iotmon run ...`) on the real Kafka, PostgreSQL and
Redis, the web role's Socket.IO service among them; one Socket.IO client in this process logs
in, subscribes to the alerts room and to some devices. Latency is measured against the
reading's own timestamp, which the simulator sets when it produces it (same clock: one
machine).

Run: ``iotmon bench alerts`` with the services of ``scripts/infra.sh`` in the environment.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import socketio
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

START, END = "<!-- bench:alerts:start -->", "<!-- bench:alerts:end -->"
ROLES = ("ingestion", "processing", "alerts", "web", "simulator")


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


async def _measure(
    settings: Settings,
    *,
    devices: int,
    rate: float,
    seconds: float,
    subscribe: int,
    console: Console,
) -> dict[str, Any]:
    # Redis database 11: bench api uses 12, ws 13, dashboard 14, the e2e tests 10.
    box = Sandbox.open(settings, redis_db=11)
    env = box.env | {
        "IOTMON_SIMULATOR_DEVICES": str(devices),
        "IOTMON_SIMULATOR_RATE": str(rate),
    }
    ports = {role: free_port() for role in ROLES}
    procs = {
        role: subprocess.Popen(  # noqa: ASYNC220 (started once, before anything is measured)
            [sys.executable, "-m", "iotmon", "run", role],
            env=env | {"IOTMON_HTTP_PORT": str(ports[role])},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for role in ROLES
    }
    client = socketio.AsyncClient()
    data_lat: list[float] = []
    alert_lat: list[float] = []
    collecting = False

    @client.on("sensor-data")
    async def on_data(payload: dict[str, Any]) -> None:
        if collecting:
            data_lat.append(time.time() - datetime.fromisoformat(payload["timestamp"]).timestamp())

    @client.on("alert-triggered")
    async def on_alert(payload: dict[str, Any]) -> None:
        if collecting and payload.get("type") in ("threshold_exceeded", "threshold_below"):
            at = datetime.fromisoformat(payload["triggeredAt"]).timestamp()
            alert_lat.append(time.time() - at)

    try:
        web = f"http://127.0.0.1:{ports['web']}"
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    login = await http.post(
                        f"{web}/api/auth/token",
                        json={"username": BENCH_USER, "password": BENCH_PASSWORD},
                    )
                    token = login.json()["data"]["accessToken"]
                    break
                except (httpx.HTTPError, KeyError, ValueError):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the web role did not start within 60 s") from None
                    await asyncio.sleep(0.5)
        await client.connect(web, auth={"token": token}, transports=["websocket"])
        health = f"http://127.0.0.1:{ports['processing']}/health"
        async with httpx.AsyncClient(timeout=5) as http:
            deadline = time.monotonic() + 90
            while True:  # warm-up: processing is consuming
                try:
                    roles = (await http.get(health)).json().get("roles", {})
                    if roles.get("processing", {}).get("processed", 0) > devices:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("the roles did not start within 90 s")
                await asyncio.sleep(0.5)
            # Subscribe once ingestion has registered the devices (the web role refuses
            # unknown ones), then give processing a second to see the rooms are watched.
            await client.call("subscribe-alerts", {})
            wanted = [
                f"device-{n:03d}" if n <= 5 else f"device-{n:04d}"
                for n in range(1, min(devices, subscribe) + 1)
            ]
            while wanted:
                answer = await client.call("subscribe-device", {"deviceId": wanted[0]})
                if answer.get("ok"):
                    wanted.pop(0)
                elif time.monotonic() > deadline:
                    raise RuntimeError(f"cannot subscribe to {wanted[0]}: {answer}")
                else:
                    await asyncio.sleep(0.5)
            await asyncio.sleep(2)
            console.print(f"  {devices:,} devices: warm, measuring {seconds:g} s ...")
            before = (await http.get(health)).json()["roles"]["processing"]["processed"]
            collecting, started = True, time.monotonic()
            await asyncio.sleep(seconds)
            collecting = False
            after = (await http.get(health)).json()["roles"]["processing"]["processed"]
        rss = {role: _rss_mib(p.pid) for role, p in procs.items()}
        elapsed = time.monotonic() - started
    finally:
        await client.disconnect()
        stop_all(list(procs.values()))
        box.close()
    return {
        "devices": devices,
        "rate": rate,
        "seconds": seconds,
        "subscribed": min(devices, subscribe),
        "sensor_data": {
            "n": len(data_lat),
            "p50_ms": _pct(data_lat, 0.5),
            "p95_ms": _pct(data_lat, 0.95),
            "p99_ms": _pct(data_lat, 0.99),
        },
        "alert_triggered": {
            "n": len(alert_lat),
            "p50_ms": _pct(alert_lat, 0.5),
            "p95_ms": _pct(alert_lat, 0.95),
            "p99_ms": _pct(alert_lat, 0.99),
        },
        "processing_readings_per_s": round((after - before) / elapsed),
        "rss_mib": rss,
    }


def run_bench(
    settings: Settings, *, seconds: float, large: int, output: str, markdown: str, console: Console
) -> dict[str, Any]:
    # The five devices at 10x their rates (more alerts to time), then `large` devices at 1 Hz
    # each on average (the five kinds send every 1-5 s: rate = large / readings per second).
    per_device_hz = statistics.fmean([1 / 2, 1 / 3, 1, 1 / 5, 1 / 4])
    runs = [
        asyncio.run(
            _measure(settings, devices=5, rate=10, seconds=seconds, subscribe=5, console=console)
        ),
        asyncio.run(
            _measure(
                settings,
                devices=large,
                rate=round(1 / per_device_hz, 3),
                seconds=seconds,
                subscribe=200,
                console=console,
            )
        ),
    ]
    result = {
        "runs": runs,
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": f"iotmon bench alerts --seconds {seconds:g} --devices {large}",
    }
    for r in runs:
        console.print(
            f"  {r['devices']:,} devices: sensor-data p50/p95/p99 "
            f"{r['sensor_data']['p50_ms']}/{r['sensor_data']['p95_ms']}/"
            f"{r['sensor_data']['p99_ms']} ms (n={r['sensor_data']['n']}), "
            f"alert-triggered {r['alert_triggered']['p50_ms']}/"
            f"{r['alert_triggered']['p95_ms']}/{r['alert_triggered']['p99_ms']} ms "
            f"(n={r['alert_triggered']['n']}), processing "
            f"{r['processing_readings_per_s']:,} readings/s, RSS {r['rss_mib']}"
        )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    rows = []
    for r in runs:
        d, a = r["sensor_data"], r["alert_triggered"]
        rows.append(
            f"| {r['devices']:,} | {d['p50_ms']} / {d['p95_ms']} / {d['p99_ms']} "
            f"(n={d['n']:,}) | {a['p50_ms']} / {a['p95_ms']} / {a['p99_ms']} "
            f"(n={a['n']:,}) | {r['processing_readings_per_s']:,} | "
            f"{r['rss_mib']['processing']} |"
        )
    write_section(
        Path(markdown),
        START,
        END,
        "\n".join(
            [
                "## End to end: produce -> Socket.IO client",
                "",
                f"`{result['command']}` on {result['date']}, {result['machine']}. The five "
                "roles as separate processes on Kafka/PostgreSQL/Redis (`iotmon run <role>`), "
                "one Socket.IO client in the benchmark process logged in to the web role and "
                "subscribed to the alerts room and to the first 200 devices; latency from the "
                "reading's timestamp (set when produced) to its arrival at the client. Five "
                "devices run at 10x their rates to have alerts to time; the large run is ~1 Hz "
                "per device. Processing counts every reading into the statistics but publishes "
                "`sensor-data` only for the rooms some client watches (`live:watched`).",
                "",
                "| devices | sensor-data p50 / p95 / p99 ms | alert-triggered p50 / p95 / p99 ms "
                "| processing readings/s | processing RSS MiB |",
                "|---:|---|---|---:|---:|",
                *rows,
            ]
        ),
    )
    return result

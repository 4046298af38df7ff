"""Socket.IO fan-out benchmark: 1,000 concurrent clients, each subscribed to the five devices
of the specification; deliveries/s and p50/p95/p99 latency from a reading's timestamp (set by
the simulator when it produces it) to its arrival at a client. Target (DESIGN.md 7): p99 <
250 ms with 1,000 clients.

The roles run as separate processes on the real Kafka, PostgreSQL and Redis, on a fresh
database, topic prefix, consumer groups and Redis database: the simulator (five devices),
ingestion, processing (which publishes ``sensor-data`` for watched rooms) and one or more web
roles (`iotmon run web`). The clients are python-socketio ``AsyncClient`` instances (websocket
transport), spread over a few client processes (this file run as a script) so that no client
process's event loop is what is being measured; each client process reports its event-loop
lag beside its figures. Optionally, ``LivePublisher`` adds events published straight to the
device rooms (``--extra``, events/s), timestamped when published.

Every process's CPU over the measuring window is recorded (the machine has 2 cores, shared
by the roles, Kafka, PostgreSQL, Redis and the clients themselves).

Run: ``iotmon bench ws`` with the services of ``scripts/infra.sh`` in the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
import threading
import time
from array import array
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
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
from iotmon.devices.models import SEEDED
from iotmon.realtime.publish import LivePublisher, channel_for
from iotmon.timefmt import iso_utc

START, END = "<!-- bench:ws:start -->", "<!-- bench:ws:end -->"
REDIS_DB = 13  # bench alerts uses 11, bench api 12
DEVICES = tuple(d.device_id for d in SEEDED)
PIPELINE = ("ingestion", "processing", "simulator")
CONNECT_CONCURRENCY = 25  # handshakes in flight per client process


# --- the client process --------------------------------------------------------------------
async def _clients(cfg: dict[str, Any]) -> None:
    """Connect ``cfg['clients']`` clients, subscribe each to every device, print ``ready``;
    on ``start`` from stdin collect for ``seconds``, write the latencies, print ``done``."""
    n: int = cfg["clients"]
    urls: list[str] = cfg["urls"]
    collecting = False
    latencies = array("d")
    ids = array("q")
    counts = [0] * n
    seen: set[int] = set()
    mine: list[set[int]] = [set() for _ in range(n)]
    duplicates = 0
    disconnects = 0
    clients: list[socketio.AsyncClient] = []
    parse = datetime.fromisoformat

    def handler(i: int) -> Any:
        def on_data(payload: dict[str, Any]) -> None:
            nonlocal duplicates
            if collecting:
                latencies.append(time.time() - parse(payload["timestamp"]).timestamp())
                counts[i] += 1
                event = int(payload["eventId"])
                ids.append(event)
                if event in mine[i]:
                    duplicates += 1
                mine[i].add(event)
                seen.add(event)

        return on_data

    def on_disconnect(*_: Any) -> None:
        nonlocal disconnects
        if collecting:
            disconnects += 1

    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect(i: int) -> None:
        client = socketio.AsyncClient(reconnection=False)
        client.on("sensor-data", handler(i))
        client.on("disconnect", on_disconnect)
        async with gate:
            await client.connect(
                urls[(cfg["first"] + i) % len(urls)],
                auth={"token": cfg["token"]},
                transports=["websocket"],
                wait_timeout=60,
            )
            for device in cfg["devices"]:
                answer = await client.call("subscribe-device", {"deviceId": device}, timeout=60)
                if not answer.get("ok"):
                    raise RuntimeError(f"subscribe-device {device}: {answer}")
        clients.append(client)

    started = time.monotonic()
    await asyncio.gather(*(connect(i) for i in range(n)))
    _say({"ready": len(clients), "connect_s": round(time.monotonic() - started, 2)})
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    seconds = float(line.split()[1])

    lags = array("d")

    async def probe() -> None:  # how late this process's event loop wakes up
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            lags.append(time.perf_counter() - before - 0.01)

    prober = asyncio.create_task(probe())
    cpu = time.process_time()
    collecting = True
    await asyncio.sleep(seconds)
    collecting = False
    cpu = time.process_time() - cpu
    prober.cancel()
    await asyncio.to_thread(Path(cfg["results"]).write_bytes, latencies.tobytes())
    await asyncio.to_thread(Path(cfg["results"] + ".ids").write_bytes, ids.tobytes())
    _say(
        {
            "deliveries": len(latencies),
            "per_client_min": min(counts),
            "per_client_max": max(counts),
            "events": sorted(seen),
            "disconnects": disconnects,
            "duplicates": duplicates,
            "cpu_s": round(cpu, 2),
            "loop_lag_p99_ms": _pct(list(lags), 0.99),
            "loop_lag_max_ms": round(max(lags, default=0) * 1000, 1),
        }
    )
    await asyncio.gather(*(c.disconnect() for c in clients), return_exceptions=True)


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(message).decode() + "\n")
    sys.stdout.flush()


# --- the benchmark ---------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1)


def _cpu_by_pid() -> dict[int, tuple[str, float]]:
    """(command name, utime + stime seconds) of every process."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        out[int(entry.name)] = (comm, (int(fields[11]) + int(fields[12])) / tick)
    return out


def _machine_busy_s() -> float:
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(parts[:8]) - parts[3] - parts[4]) / os.sysconf("SC_CLK_TCK")


INFRA = {"postgres": "postgres", "redis-server": "redis", "java": "kafka"}


def _cpu_split(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    names: dict[int, str],
    seconds: float,
    busy: float,
) -> dict[str, float]:
    """% of one core over the window: our processes by role, the services (PostgreSQL, Redis,
    Kafka), and the rest of the machine's busy time (``busy``, seconds) as 'other work' (other
    processes, including ones that started or ended during the window)."""
    split = dict.fromkeys(names.values(), 0.0) | dict.fromkeys(INFRA.values(), 0.0)
    for pid, (comm, cpu) in after.items():
        label = names.get(pid) or INFRA.get(comm)
        if label is not None:
            split[label] += cpu - before.get(pid, (comm, 0.0))[1]
    split["other work"] = max(0.0, busy - sum(split.values()))
    return {k: round(100 * v / seconds, 1) for k, v in split.items()}


def _read(p: subprocess.Popen[bytes], what: str, timeout: float) -> dict[str, Any]:
    """One JSON line from a client process, or an error with what it said on stderr."""
    assert p.stdout is not None
    box: list[bytes] = []
    reader = threading.Thread(target=lambda: box.append(p.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not box or not box[0]:
        p.kill()
        err = p.stderr.read().decode(errors="replace")[-2000:] if p.stderr else ""
        raise RuntimeError(f"client process {p.pid}: no {what} within {timeout:g} s\n{err}")
    message: dict[str, Any] = orjson.loads(box[0])
    return message


def _extra(publisher: LivePublisher, rate: float, stop: threading.Event) -> None:
    """``rate`` events/s straight to the device rooms, round robin, timestamped now."""
    n = 0
    started = time.monotonic()
    while not stop.is_set():
        due = started + n / rate
        if (wait := due - time.monotonic()) > 0:
            stop.wait(wait)
            continue
        device = DEVICES[n % len(DEVICES)]
        publisher.emit_many(
            [
                (
                    "sensor-data",
                    {
                        "deviceId": device,
                        "timestamp": iso_utc(),
                        "data": {"value": 1.0, "unit": "", "status": "normal"},
                        "stats": {},
                    },
                    f"device:{device}",
                )
            ]
        )
        n += 1


def _listen(redis_url: str, out: dict[int, tuple[float, float]], stop: threading.Event) -> None:
    """When each sensor-data event reaches Redis pub/sub (what the web roles receive): the
    latency of the pipeline, before any fan-out."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(channel_for(REDIS_DB))
    try:
        while not stop.is_set():
            message = pubsub.get_message(timeout=0.2)
            if message is None:
                continue
            now = time.time()
            body = orjson.loads(message["data"])
            data = body.get("data") or [{}]
            if body.get("event") == "sensor-data" and "timestamp" in data[0]:
                stamp = datetime.fromisoformat(data[0]["timestamp"]).timestamp()
                out[int(data[0]["eventId"])] = (stamp, now - stamp)
    finally:
        pubsub.close()
        client.close()


def _measure(
    settings: Settings,
    *,
    clients: int,
    client_procs: int,
    web_procs: int,
    seconds: float,
    rate: float,
    extra: float,
    console: Console,
) -> dict[str, Any]:
    box = Sandbox.open(settings, redis_db=REDIS_DB)
    redis_url = box.redis_url
    # Every socket is a descriptor: 1,000 clients need more than the usual soft limit of 1,024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    env = box.env | {
        "IOTMON_SIMULATOR_DEVICES": str(len(DEVICES)),
        "IOTMON_SIMULATOR_RATE": str(rate),
    }
    names: dict[int, str] = {}
    procs: list[subprocess.Popen[bytes]] = []
    stop_extra = threading.Event()
    extra_thread: threading.Thread | None = None
    published: dict[int, tuple[float, float]] = {}
    listener = threading.Thread(
        target=_listen, args=(redis_url, published, stop_extra), daemon=True
    )
    tmp = Path(f"/tmp/iotmon-bench-ws-{box.prefix.strip('-')}")  # noqa: S108 (ours, removed at the end)
    tmp.mkdir()

    def start(label: str, cmd: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(cmd, **kwargs)
        procs.append(p)
        names[p.pid] = label
        return p

    try:
        ports = {role: free_port() for role in PIPELINE}
        for role in PIPELINE:
            start(
                role,
                [sys.executable, "-m", "iotmon", "run", role],
                env=env | {"IOTMON_HTTP_PORT": str(ports[role])},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        webs = [f"http://127.0.0.1:{free_port()}" for _ in range(web_procs)]
        for i, web in enumerate(webs):
            start(
                f"web {i + 1}" if web_procs > 1 else "web",
                [sys.executable, "-m", "iotmon", "run", "web"],
                env=env | {"IOTMON_HTTP_PORT": web.rsplit(":", 1)[1]},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        token = _login(webs)
        _wait_processing(f"http://127.0.0.1:{ports['processing']}/health")
        console.print(
            f"  pipeline up; connecting {clients:,} clients from {client_procs} process(es) "
            f"to {web_procs} web process(es) ..."
        )
        kids = []
        share = [
            clients // client_procs + (i < clients % client_procs) for i in range(client_procs)
        ]
        first = 0
        for i, n in enumerate(share):
            cfg = {
                "clients": n,
                "first": first,
                "urls": webs,
                "token": token,
                "devices": DEVICES,
                "results": str(tmp / f"client-{i}.bin"),
            }
            first += n
            kids.append(
                start(
                    f"clients {i + 1}" if client_procs > 1 else "clients",
                    [sys.executable, str(Path(__file__).resolve()), "client"],
                    env=env | {"IOTMON_BENCH_WS_CLIENT": orjson.dumps(cfg).decode()},
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                )
            )
        ready = [_read(k, "ready", 300) for k in kids]
        connect_s = max(r["connect_s"] for r in ready)
        console.print(
            f"  {sum(r['ready'] for r in ready):,} clients connected and subscribed to "
            f"{len(DEVICES)} devices in {connect_s:g} s"
        )
        if extra > 0:
            publisher = LivePublisher(redis.Redis.from_url(redis_url))
            extra_thread = threading.Thread(
                target=_extra, args=(publisher, extra, stop_extra), daemon=True
            )
            extra_thread.start()
        time.sleep(3)  # processing reads the watched rooms once a second
        listener.start()
        console.print(f"  measuring {seconds:g} s ...")
        cpu_before, busy_before = _cpu_by_pid(), _machine_busy_s()
        started = time.monotonic()
        for k in kids:
            assert k.stdin is not None
            k.stdin.write(f"start {seconds}\n".encode())
            k.stdin.flush()
        done = [_read(k, "results", seconds + 120) for k in kids]
        elapsed = time.monotonic() - started
        cpu_after, busy_after = _cpu_by_pid(), _machine_busy_s()
        stop_extra.set()
        latencies, ids = array("d"), array("q")
        for i in range(client_procs):
            latencies.frombytes((tmp / f"client-{i}.bin").read_bytes())
            ids.frombytes((tmp / f"client-{i}.bin.ids").read_bytes())
        events: set[int] = set()
        for d in done:
            events.update(d["events"])
    finally:
        stop_extra.set()
        if extra_thread is not None:
            extra_thread.join(5)
        if listener.is_alive():
            listener.join(5)
        stop_all(procs)
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
        box.close()
    values = latencies.tolist()
    first: dict[int, float] = {}
    last: dict[int, float] = {}
    for event, latency in zip(ids, values, strict=True):
        first[event] = min(first.get(event, latency), latency)
        last[event] = max(last.get(event, latency), latency)
    return {
        "clients": clients,
        "client_processes": client_procs,
        "web_processes": web_procs,
        "rate": rate,
        "extra_events_per_s": extra,
        "seconds": seconds,
        "connect_s": connect_s,
        "events": len(events),
        "events_per_s": round(len(events) / seconds, 1),
        "deliveries": len(values),
        "deliveries_per_s": round(len(values) / seconds),
        "expected_deliveries": len(events) * clients,
        "per_client_min": min(d["per_client_min"] for d in done),
        "per_client_max": max(d["per_client_max"] for d in done),
        "disconnects": sum(d["disconnects"] for d in done),
        "duplicates": sum(d["duplicates"] for d in done),
        "p50_ms": _pct(values, 0.5),
        "p95_ms": _pct(values, 0.95),
        "p99_ms": _pct(values, 0.99),
        "max_ms": round(max(values, default=0) * 1000, 1),
        # Per event: its first and its last delivery (the pipeline, then the fan-out).
        "published_p50_p99_ms": [
            _pct([published[e][1] for e in first if e in published], q) for q in (0.5, 0.99)
        ],
        "first_delivery_p50_p99_ms": [_pct(list(first.values()), q) for q in (0.5, 0.99)],
        "last_delivery_p50_p99_ms": [_pct(list(last.values()), q) for q in (0.5, 0.99)],
        # Every event: id, reading's timestamp, ms until Redis pub/sub, first and last delivery.
        "timeline": [
            [
                e,
                round(published[e][0], 3) if e in published else None,
                round(published[e][1] * 1000, 1) if e in published else None,
                round(first[e] * 1000, 1),
                round(last[e] * 1000, 1),
            ]
            for e in sorted(first)
        ],
        "client_loop_lag_p99_ms": [d["loop_lag_p99_ms"] for d in done],
        "cpu_pct": _cpu_split(cpu_before, cpu_after, names, elapsed, busy_after - busy_before),
        "machine_busy_pct": round(100 * (busy_after - busy_before) / elapsed, 1),
    }


def _login(webs: list[str]) -> str:
    deadline = time.monotonic() + 60
    token = ""
    for web in webs:  # every web process up; one token is good for all
        while True:
            try:
                login = httpx.post(
                    f"{web}/api/auth/token",
                    json={"username": BENCH_USER, "password": BENCH_PASSWORD},
                    timeout=5,
                )
                token = str(login.json()["data"]["accessToken"])
                break
            except (httpx.HTTPError, KeyError, ValueError, TypeError):
                if time.monotonic() > deadline:
                    raise RuntimeError("the web role did not start within 60 s") from None
                time.sleep(0.5)
    return token


def _wait_processing(health: str) -> None:
    deadline = time.monotonic() + 90
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            roles = httpx.get(health, timeout=5).json().get("roles", {})
            if roles.get("processing", {}).get("processed", 0) > len(DEVICES):
                return
        if time.monotonic() > deadline:
            raise RuntimeError("the pipeline did not start within 90 s")
        time.sleep(0.5)


def run_bench(
    settings: Settings,
    *,
    clients: int,
    client_procs: int,
    web_procs: int,
    seconds: float,
    rate: float,
    extra: float,
    output: str,
    markdown: str,
    console: Console,
) -> dict[str, Any]:
    r = _measure(
        settings,
        clients=clients,
        client_procs=client_procs,
        web_procs=web_procs,
        seconds=seconds,
        rate=rate,
        extra=extra,
        console=console,
    )
    command = (
        f"iotmon bench ws --clients {clients} --client-procs {client_procs} "
        f"--web-procs {web_procs} --rate {rate:g} --seconds {seconds:g}"
        + (f" --extra {extra:g}" if extra else "")
    )
    result = {
        "run": r,
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": command,
    }
    met = r["p99_ms"] is not None and r["p99_ms"] < 250
    console.print(
        f"  {r['clients']:,} clients: {r['deliveries_per_s']:,} deliveries/s "
        f"({r['events_per_s']} events/s x {r['clients']:,}; {r['deliveries']:,} of "
        f"{r['expected_deliveries']:,} expected, per client {r['per_client_min']}-"
        f"{r['per_client_max']}, {r['duplicates']} duplicates, {r['disconnects']} "
        "disconnects), latency p50/p95/p99 "
        f"{r['p50_ms']}/{r['p95_ms']}/{r['p99_ms']} ms (target p99 < 250 ms: "
        f"{'met' if met else 'missed'}), max {r['max_ms']} ms; per event, in Redis pub/sub p50/p99 "
        f"{r['published_p50_p99_ms']} ms, first delivery "
        f"p50/p99 {r['first_delivery_p50_p99_ms']} ms, last {r['last_delivery_p50_p99_ms']} ms"
    )
    console.print(
        f"  CPU (% of one core; machine {r['machine_busy_pct']}% of 200%): "
        + ", ".join(f"{k} {v}" for k, v in r["cpu_pct"].items())
        + f"; client event-loop lag p99 {r['client_loop_lag_p99_ms']} ms"
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    cpu = ", ".join(f"{k} {v:g}%" for k, v in r["cpu_pct"].items())
    pub = r["published_p50_p99_ms"]
    first, last = r["first_delivery_p50_p99_ms"], r["last_delivery_p50_p99_ms"]
    write_section(
        Path(markdown),
        START,
        END,
        "\n".join(
            [
                "## Socket.IO fan-out: 1,000 clients",
                "",
                f"`{command}` on {result['date']}, {result['machine']} (a shared box: other "
                "work may have run at the same time). The simulator (the five devices, "
                f"rate x{rate:g}), ingestion, processing and {web_procs} web role(s) as separate "
                "processes on Kafka/PostgreSQL/Redis (`iotmon run <role>`); "
                f"{clients:,} python-socketio clients (websocket) in {client_procs} client "
                "process(es), each logged in and subscribed to device-001..device-005"
                + (f", plus {extra:g} events/s published straight to the rooms" if extra else "")
                + ". Latency from the reading's timestamp (set when the simulator produces it) "
                "to its arrival at a client, every delivery counted.",
                "",
                "| clients | events/s | deliveries/s | p50 / p95 / p99 ms | max ms "
                "| p99 target | delivered |",
                "|---:|---:|---:|---|---:|---|---:|",
                f"| {r['clients']:,} | {r['events_per_s']} | {r['deliveries_per_s']:,} | "
                f"{r['p50_ms']} / {r['p95_ms']} / {r['p99_ms']} | {r['max_ms']} | "
                f"< 250 ms: {'met' if met else '**missed**'} | "
                f"{r['deliveries']:,} of {r['expected_deliveries']:,} |",
                "",
                "Where the time goes, per event (p50 / p99 ms): reading produced -> in Redis "
                f"pub/sub (Kafka, processing) {pub[0]} / {pub[1]}; -> its first delivery "
                f"{first[0]} / {first[1]}; -> its last delivery {last[0]} / {last[1]} (the web "
                "role writes each event to every subscribed socket in turn).",
                "",
                f"CPU over the window, % of one core (machine {r['machine_busy_pct']:g}% of "
                f"200%; 'other work' is what else ran on the box): {cpu}. Client event-loop lag "
                f"p99 per client process: {r['client_loop_lag_p99_ms']} ms.",
            ]
        ),
    )
    return result


if __name__ == "__main__" and sys.argv[1:] == ["client"]:
    config = orjson.loads(os.environ["IOTMON_BENCH_WS_CLIENT"])
    asyncio.run(_clients(config))

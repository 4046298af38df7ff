"""``iotmon bench mqtt``: N device connections publishing QoS 1 through Mosquitto -> bridge ->
Kafka (``mqtt-raw``) -> decoder -> Kafka (``sensors-data``) -> ingestion -> PostgreSQL.

The devices are provisioned on the broker (dynamic security, one client and role each), the
roles are real ``iotmon run`` processes on a fresh database and topic prefix (a Sandbox), and
the publishers are processes of their own (asyncio, a few hundred raw MQTT 3.1.1 connections
each: a device's client, not a library's loop per connection), so their CPU is measured apart
from the pipeline's. Each device publishes ``rate`` readings a second stamped with the publish
time; the latency publish -> row is ``created_at - timestamp`` of the stored rows
(``created_at`` is the ingestion transaction's start: it leaves out the COPY's own duration).

Results go to ``output`` (JSON) and, unless ``markdown`` is empty, to BENCHMARKS.md between
the bench:mqtt markers.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

START, END = "<!-- bench:mqtt:start -->", "<!-- bench:mqtt:end -->"
PROFILE = "spec-temperature"
MAX_PENDING = 200  # unacknowledged publishes per connection before it skips a beat


# --- the publisher process (runs as `python bench/mqtt.py publish SPEC RESULT`) -------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _s(b: bytes) -> bytes:
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id: str, username: str, password: str) -> bytes:
    var = _s(b"MQTT") + bytes([4, 0xC2]) + struct.pack("!H", 0)  # 3.1.1, user+pass+clean
    payload = _s(client_id.encode()) + _s(username.encode()) + _s(password.encode())
    body = var + payload
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: bytes, pid: int, payload: bytes) -> bytes:
    body = _s(topic) + struct.pack("!H", pid) + payload
    return b"\x32" + _varint(len(body)) + body


class Conn:
    __slots__ = ("acked", "device", "pending", "pid", "reader", "sent", "skipped", "topic", "w")

    def __init__(self, device: str, topic: bytes) -> None:
        self.device, self.topic = device, topic
        self.sent = self.acked = self.skipped = self.pending = 0
        self.pid = 0

    async def open(self, host: str, port: int, user: str, password: str) -> None:
        self.reader, self.w = await asyncio.open_connection(host, port)
        self.w.write(connect_packet(f"bench-{user}"[:64], user, password))
        ack = await self.reader.readexactly(4)
        if ack[0] != 0x20 or ack[3] != 0:
            raise RuntimeError(f"{self.device}: CONNACK {ack!r}")

    async def read_acks(self) -> None:
        rest = b""
        while True:
            data = await self.reader.read(65536)
            if not data:
                return
            data = rest + data
            n = len(data) // 4  # only PUBACKs (0x40 0x02 pid) come back
            rest = data[n * 4 :]
            self.acked += n
            self.pending -= n

    def publish(self, payload: bytes) -> None:
        if self.pending >= MAX_PENDING:
            self.skipped += 1
            return
        self.pid = self.pid % 65535 + 1
        self.w.write(publish_packet(self.topic, self.pid, payload))
        self.sent += 1
        self.pending += 1


async def publisher(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, rate = spec["host"], spec["port"], spec["rate"]
    conns = [
        Conn(d, f"{spec['root']}devices/{d}/telemetry".encode()) for d, _, _ in spec["devices"]
    ]
    for c, (_, user, password) in zip(conns, spec["devices"], strict=True):
        await c.open(host, port, user, password)
    readers = [asyncio.create_task(c.read_acks()) for c in conns]
    # Everyone publishes once per tick (1 / rate s): "every device reports every 50 ms".
    start_at = spec["start_at"]
    await asyncio.sleep(max(0.0, start_at - time.time()))
    tick, n = 1.0 / rate, 0
    end_at = start_at + spec["seconds"]
    cpu0 = time.process_time()
    late = 0
    while True:
        now = time.time()
        if now >= end_at:
            break
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        value = 20 + (n % 1000) / 100
        payload = b'{"timestamp":"%s","value":%s}' % (stamp.encode(), repr(value).encode())
        for c in conns:
            c.publish(payload)
        n += 1
        delay = start_at + n * tick - time.time()
        if delay < 0:
            late += 1
        await asyncio.sleep(max(0.0, delay))
    deadline = time.time() + 60
    # polled: hundreds of connections' counters, once at the end
    while any(c.pending > 0 for c in conns) and time.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    cpu = time.process_time() - cpu0
    for r in readers:
        r.cancel()
    for c in conns:
        c.w.write(b"\xe0\x00")  # DISCONNECT
        c.w.close()
    return {
        "sent": sum(c.sent for c in conns),
        "acked": sum(c.acked for c in conns),
        "skipped": sum(c.skipped for c in conns),
        "late_ticks": late,
        "cpu_s": cpu,
    }


def _publisher_main(spec_path: str, result_path: str) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    spec = json.loads(Path(spec_path).read_text())
    result = asyncio.run(publisher(spec))
    Path(result_path).write_text(json.dumps(result))


# --- the benchmark ---------------------------------------------------------------------------
def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its waited-for children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return sum(int(f) for f in fields[11:15]) / ticks


def _machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


def _env(key: str) -> str | None:
    """IOTMON_* from the environment, else from what `scripts/infra.sh up` wrote."""
    if os.environ.get(key):
        return os.environ[key]
    repo = Path(__file__).resolve().parents[1]
    state = Path(os.environ.get("IOTMON_INFRA_DIR", repo / "var" / "infra")) / "env"
    if state.exists():
        for line in state.read_text().splitlines():
            k, _, v = line.partition("=")
            if k.strip() == key:
                return v.strip()
    return None


def _provision(devices: list[str], root: str) -> list[tuple[str, str, str]]:
    """Each device's client and role on the broker, 200 a round trip (no password hashing
    on our side: the bench keeps nothing)."""
    import secrets

    from iotmon.mqtt.credentials import DynsecAdmin, device_topics, role_name

    admin_url = _env("IOTMON_MQTT_ADMIN_URL")
    out: list[tuple[str, str, str]] = []
    if not admin_url:  # a broker that admits anyone
        return [(d, d, "x") for d in devices]
    with DynsecAdmin(admin_url, timeout_s=60) as admin:
        for i in range(0, len(devices), 200):
            commands: list[dict[str, Any]] = []
            for d in devices[i : i + 200]:
                password = secrets.token_urlsafe(18)
                acls = [
                    {"acltype": "publishClientSend", "topic": t, "allow": True}
                    for t in device_topics(d, root)
                ]
                commands += [
                    {"command": "deleteClient", "username": d},
                    {"command": "deleteRole", "rolename": role_name(d)},
                    {"command": "createRole", "rolename": role_name(d), "acls": acls},
                    {
                        "command": "createClient",
                        "username": d,
                        "password": password,
                        "roles": [{"rolename": role_name(d)}],
                    },
                ]
                out.append((d, d, password))
            responses = admin.run(commands)
            bad = [r for j, r in enumerate(responses) if j % 4 >= 2 and r.get("error")]
            if bad:
                raise RuntimeError(f"provisioning refused: {bad[:2]}")
    return out


def _revoke(devices: list[str]) -> None:
    from iotmon.mqtt.credentials import DynsecAdmin

    admin_url = _env("IOTMON_MQTT_ADMIN_URL")
    if admin_url:
        with DynsecAdmin(admin_url, timeout_s=60) as admin:
            for i in range(0, len(devices), 500):
                admin.revoke_many(devices[i : i + 500])


def _start_role(name: str, env: dict[str, str], logs: Path) -> tuple[subprocess.Popen[bytes], int]:
    from common import free_port

    port = free_port()
    with (logs / f"{name}.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "run", name],
            env=env | {"IOTMON_HTTP_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return proc, port


def _wait_connected(port: int, logs: Path, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            if body["roles"]["mqtt-bridge"]["connected"]:
                return
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the bridge did not connect:\n" + _tails(logs))
        time.sleep(0.2)


def _statuses(ports: dict[str, int]) -> dict[str, Any]:
    """Each role's own counters from /health (the decoder's time by stage, the bridge's
    received/forwarded), read before the roles stop."""
    import httpx

    out: dict[str, Any] = {}
    for name, port in ports.items():
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            out[name] = body["roles"][name]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            out[name] = {"error": str(exc)[:200]}
    return out


def _tails(logs: Path) -> str:
    return "\n".join(
        f"--- {f.name}\n{f.read_text(errors='replace')[-2000:]}" for f in sorted(logs.glob("*.log"))
    )


def run_bench(
    settings: Any,
    *,
    devices: int,
    seconds: float,
    rate: float,
    publishers: int,
    warmup: float,
    output: str,
    markdown: str,
    console: Any,
) -> dict[str, Any]:
    import psycopg

    from common import Sandbox, machine, stop_all, write_section

    mqtt_url = _env("IOTMON_MQTT_URL") or (
        settings.mqtt_url.get_secret_value() if settings.mqtt_url else None
    )
    if not mqtt_url:
        raise RuntimeError(
            "bench mqtt needs IOTMON_MQTT_URL (scripts/infra.sh up starts Mosquitto)"
        )
    u = urlsplit(mqtt_url)
    host, port = u.hostname or "127.0.0.1", u.port or 1883
    sandbox = Sandbox.open(settings, redis_db=13)
    tag = uuid.uuid4().hex[:6]
    root = f"b{tag}/"
    ids = [f"bm{tag}-{i:05d}" for i in range(devices)]
    logs = Path(tempfile.mkdtemp(prefix="iotmon-bench-mqtt-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (
            psycopg.connect(sandbox.url, autocommit=True) as conn,
            conn.cursor().copy(
                "COPY devices (device_id, device_type, location, profile) FROM STDIN"
            ) as cp,
        ):
            for d in ids:
                cp.write_row((d, "temperature", "bench", PROFILE))
        t0 = time.monotonic()
        creds = _provision(ids, root)
        provision_s = time.monotonic() - t0
        console.print(f"provisioned {devices} devices on the broker in {provision_s:.1f} s")
        env = sandbox.env | {
            "IOTMON_MQTT_URL": mqtt_url,
            "IOTMON_MQTT_TOPIC_ROOT": root,
            "IOTMON_MQTT_SHARE_GROUP": f"bench{tag}",
            "IOTMON_MQTT_CLIENT_ID": f"bench-bridge-{tag}",
            "IOTMON_MQTT_DECODER_GROUP": f"{sandbox.prefix}mqtt-decoder",
            "IOTMON_MQTT_DECODER_ID": tag,
        }
        started = {
            name: _start_role(name, env, logs)
            for name in ("ingestion", "mqtt-decoder", "mqtt-bridge")
        }
        roles = {name: proc for name, (proc, _) in started.items()}
        procs += roles.values()
        _wait_connected(started["mqtt-bridge"][1], logs)
        time.sleep(2.0)  # the SUBACK, the decoder's and ingestion's assignment

        start_at = time.time() + 3.0 + devices / 500  # after every publisher connected
        shares = [creds[i::publishers] for i in range(publishers)]
        pubs = []
        for i, share in enumerate(shares):
            spec = logs / f"pub-{i}.json"
            spec.write_text(
                json.dumps(
                    {
                        "host": host,
                        "port": port,
                        "root": root,
                        "rate": rate,
                        "seconds": seconds,
                        "start_at": start_at,
                        "devices": share,
                    }
                )
            )
            with (logs / f"pub-{i}.log").open("wb") as out:
                pubs.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            __file__,
                            "publish",
                            str(spec),
                            str(logs / f"pub-{i}.out"),
                        ],
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
        procs += pubs
        time.sleep(max(0.0, start_at - time.time()))
        cpu0 = {name: _cpu_s(p.pid) for name, p in roles.items()}
        mosq_pid = _mosquitto_pid()
        mosq0 = _cpu_s(mosq_pid) if mosq_pid else 0.0
        busy0 = _machine_busy()
        time.sleep(seconds)
        cpu1 = {name: _cpu_s(p.pid) for name, p in roles.items()}
        mosq1 = _cpu_s(mosq_pid) if mosq_pid else 0.0
        busy1 = _machine_busy()
        for p in pubs:
            p.wait(120)
        results = []
        for i, p in enumerate(pubs):
            out_path = logs / f"pub-{i}.out"
            if p.returncode != 0 or not out_path.exists():
                raise RuntimeError(f"publisher {i} failed:\n{_tails(logs)}")
            results.append(json.loads(out_path.read_text()))
        acked = sum(r["acked"] for r in results)
        # Drain: every acknowledged reading stored (or give up after 120 s without progress).
        stored, last_change, last = 0, time.monotonic(), -1
        while True:
            with psycopg.connect(sandbox.url) as conn:
                stored = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()[0]  # type: ignore[index]
            if stored >= acked:
                break
            if stored != last:
                last, last_change = stored, time.monotonic()
            elif time.monotonic() - last_change > 120:
                break
            time.sleep(0.5)
        drained_at = time.time()
        role_status = _statuses({name: port for name, (_, port) in started.items()})
        window = (start_at + warmup, start_at + seconds)
        with psycopg.connect(sandbox.url) as conn:
            row = conn.execute(
                """WITH r AS (SELECT created_at, device_id, "timestamp",
                                     extract(epoch FROM created_at - "timestamp") AS lag
                              FROM sensor_readings)
                   SELECT count(*) FILTER (WHERE created_at >= to_timestamp(%s)
                                             AND created_at < to_timestamp(%s)),
                          count(DISTINCT (device_id, "timestamp")),
                          percentile_cont(0.5) WITHIN GROUP (ORDER BY lag),
                          percentile_cont(0.99) WITHIN GROUP (ORDER BY lag),
                          max(lag)
                   FROM r""",
                window,
            ).fetchone()
            assert row is not None
            in_window, distinct = int(row[0]), int(row[1])
            p50, p99, worst = (None if x is None else float(x) for x in row[2:])
        span = window[1] - window[0]
        busy = (busy1[0] - busy0[0]) / max(1.0, busy1[1] - busy0[1]) * (os.cpu_count() or 1)
        pub_cpu = sum(r["cpu_s"] for r in results)
        result: dict[str, Any] = {
            "devices": devices,
            "rate_per_device": rate,
            "seconds": seconds,
            "publishers": publishers,
            "offered_per_s": devices * rate,
            "published": sum(r["sent"] for r in results),
            "acknowledged": acked,
            "skipped_backpressure": sum(r["skipped"] for r in results),
            "late_ticks": max(r["late_ticks"] for r in results),
            "stored": stored,
            "distinct_stored": distinct,
            "stored_per_s_sustained": in_window / span if span > 0 else 0.0,
            "stored_per_s_end_to_end": stored / max(1e-9, drained_at - start_at),
            "latency_p50_s": p50,
            "latency_p99_s": p99,
            "latency_max_s": worst,
            "cpu_cores": {
                "publishers": pub_cpu / seconds,
                **{name: (cpu1[name] - cpu0[name]) / seconds for name in roles},
                "mosquitto": (mosq1 - mosq0) / seconds,
                "machine_busy": busy,
            },
            "provision_s": provision_s,
            "roles": role_status,
            "command": _command(devices, seconds, rate, publishers),
            "machine": machine(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        out = Path(output)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        console.print_json(json.dumps(result))
        if markdown:
            write_section(Path(markdown), START, END, _section(result))
        return result
    finally:
        stop_all(procs)
        try:
            _revoke(ids)
        finally:
            sandbox.close()


def _mosquitto_pid() -> int | None:
    state = Path(
        os.environ.get("IOTMON_INFRA_DIR", Path(__file__).resolve().parents[1] / "var" / "infra")
    )
    try:
        return int((state / "run" / "mosquitto.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _command(devices: int, seconds: float, rate: float, publishers: int) -> str:
    return (
        f"iotmon bench mqtt --devices {devices} --seconds {seconds:g} --rate {rate:g}"
        f" --publishers {publishers}"
    )


def _section(r: dict[str, Any]) -> str:
    c = r["cpu_cores"]
    ms = 1000.0
    rows = [
        (
            "published / acknowledged by the broker",
            f"{r['published']:,} / {r['acknowledged']:,}"
            f" (skipped for backpressure: {r['skipped_backpressure']:,})",
        ),
        ("stored / distinct (device, timestamp)", f"{r['stored']:,} / {r['distinct_stored']:,}"),
        (
            "**readings/s stored, sustained** (rows committed after the warm-up, while publishing)",
            f"**{r['stored_per_s_sustained']:,.0f}**",
        ),
        (
            "readings/s end to end (first publish to last row)",
            f"{r['stored_per_s_end_to_end']:,.0f}",
        ),
        (
            "latency publish -> row p50 / p99 / max",
            f"{(r['latency_p50_s'] or 0) * ms:,.0f} ms / {(r['latency_p99_s'] or 0) * ms:,.0f} ms"
            f" / {(r['latency_max_s'] or 0) * ms:,.0f} ms",
        ),
        ("CPU, publishers (cores)", f"{c['publishers']:.2f}"),
        (
            "CPU, bridge / decoder / ingestion (cores)",
            f"{c['mqtt-bridge']:.2f} / {c['mqtt-decoder']:.2f} / {c['ingestion']:.2f}",
        ),
        ("CPU, Mosquitto (cores)", f"{c['mosquitto']:.2f}"),
        (f"CPU, whole machine busy (cores, of {os.cpu_count()})", f"{c['machine_busy']:.2f}"),
        (f"provisioning {r['devices']:,} devices (200 a round trip)", f"{r['provision_s']:.1f} s"),
    ]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return (
        "## MQTT: devices -> Mosquitto -> bridge -> Kafka -> decoder -> ingestion -> PostgreSQL\n\n"
        f"`{r['command']}` on {r['machine']}, {r['date']}.\n\n"
        f"{r['devices']:,} device connections (MQTT 3.1.1, each with its own credentials), each"
        f" publishing QoS 1 {r['rate_per_device']:g} times a second for {r['seconds']:g} s:"
        f" {r['offered_per_s']:,.0f} readings/s offered.\n\n| | |\n|---|---|\n{table}\n"
    )


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "publish":
    _publisher_main(sys.argv[2], sys.argv[3])

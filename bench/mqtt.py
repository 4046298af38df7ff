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
    channels = spec.get("channels", 1)
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
    last_ms = 0
    while True:
        now = time.time()
        if now >= end_at:
            break
        # Strictly increasing milliseconds: a late tick caught up in the same millisecond
        # would repeat (device, timestamp), which the decoder rightly stores once.
        ms = max(int(now * 1000), last_ms + 1)
        last_ms = ms
        stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        value = repr(20 + (n % 1000) / 100).encode()
        if channels == 1:
            payload = b'{"timestamp":"%s","value":%s}' % (stamp.encode(), value)
        else:  # one message, several channels (c0, c1, ...), as a multi-sensor device sends
            payload = b'{"timestamp":"%s",%s}' % (
                stamp.encode(),
                b",".join(b'"c%d":%s' % (i, value) for i in range(channels)),
            )
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


def _start_role(
    role: str, env: dict[str, str], logs: Path, name: str | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    from common import free_port

    port = free_port()
    with (logs / f"{name or role}.log").open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "run", role],
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
        role = name if not name.startswith("mqtt-decoder") else "mqtt-decoder"
        try:
            body = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            out[name] = body["roles"][role]
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
    channels: int = 1,
    decoders: int = 1,
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
        profile = PROFILE if channels == 1 else f"bench-{channels}-channels"
        with psycopg.connect(sandbox.url, autocommit=True) as conn:
            if channels > 1:
                conn.execute(
                    "INSERT INTO device_profiles (name, description, channels) VALUES (%s, %s, %s)",
                    (profile, "bench mqtt: one JSON number per channel", _channels_json(channels)),
                )
            with conn.cursor().copy(
                "COPY devices (device_id, device_type, location, profile) FROM STDIN"
            ) as cp:
                for d in ids:
                    cp.write_row((d, "temperature", "bench", profile))
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
        started = {"ingestion": _start_role("ingestion", env, logs)}
        for i in range(decoders):  # each its own transactional id; mqtt-raw has 3 partitions
            name = "mqtt-decoder" if i == 0 else f"mqtt-decoder-{i + 1}"
            started[name] = _start_role(
                "mqtt-decoder", env | {"IOTMON_MQTT_DECODER_ID": f"{tag}-{i}"}, logs, name
            )
        started["mqtt-bridge"] = _start_role("mqtt-bridge", env, logs)
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
                        "channels": channels,
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
        acked_messages = sum(r["acked"] for r in results)
        acked = acked_messages * channels  # readings
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
            "channels_per_message": channels,
            "decoders": decoders,
            "seconds": seconds,
            "publishers": publishers,
            "offered_per_s": devices * rate * channels,
            "offered_messages_per_s": devices * rate,
            "published": sum(r["sent"] for r in results),
            "acknowledged": acked_messages,
            "acknowledged_readings": acked,
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
            "messages_per_s_sustained": in_window / channels / span if span > 0 else 0.0,
            "command": _command(devices, seconds, rate, publishers, channels, decoders),
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


def _channels_json(n: int) -> str:
    return json.dumps(
        [
            {
                "name": f"c{i}",
                "topic": "devices/{device}/telemetry",
                "path": f"c{i}",
                "timestampPath": "timestamp",
                "encoding": "json_number",
                "sensorType": "temperature",
                "unit": "celsius",
            }
            for i in range(n)
        ]
    )


def _mosquitto_pid() -> int | None:
    state = Path(
        os.environ.get("IOTMON_INFRA_DIR", Path(__file__).resolve().parents[1] / "var" / "infra")
    )
    try:
        return int((state / "run" / "mosquitto.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _command(
    devices: int, seconds: float, rate: float, publishers: int, channels: int, decoders: int
) -> str:
    return (
        f"iotmon bench mqtt --devices {devices} --seconds {seconds:g} --rate {rate:g}"
        f" --publishers {publishers} --channels {channels} --decoders {decoders}"
    )


def run_many(
    settings: Any, *, channels: list[int], rates: list[float], markdown: str, **kw: Any
) -> list[dict[str, Any]]:
    """``run_bench`` once per (channel count, rate), back to back, then one table side by
    side."""
    out = Path(kw.pop("output"))
    results = []
    for n, rate in zip(channels, rates, strict=True):
        path = out if len(channels) == 1 else out.with_name(f"{out.stem}-{n}ch{out.suffix}")
        results.append(
            run_bench(settings, channels=n, rate=rate, markdown="", output=str(path), **kw)
        )
    if markdown:
        from common import write_section

        write_section(Path(markdown), START, END, _section(results))
    return results


def _section(runs: list[dict[str, Any]]) -> str:
    ms = 1000.0

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs) + " |"

    def cpu(r: dict[str, Any], *names: str) -> str:
        c = r["cpu_cores"]
        return " / ".join(f"{sum(v for k, v in c.items() if k.startswith(n)):.2f}" for n in names)

    rows = [
        row("readings per message (channels)", lambda r: str(r["channels_per_message"])),
        row("messages a second per device", lambda r: f"{r['rate_per_device']:g}"),
        row(
            "messages/s offered (readings/s)",
            lambda r: f"{r['offered_messages_per_s']:,.0f} ({r['offered_per_s']:,.0f})",
        ),
        row(
            "published / acknowledged by the broker (messages)",
            lambda r: f"{r['published']:,} / {r['acknowledged']:,}",
        ),
        row(
            "stored / distinct (device, timestamp) (readings)",
            lambda r: f"{r['stored']:,} / {r['distinct_stored']:,}",
        ),
        row(
            "**readings/s stored, sustained** (committed after the warm-up, while publishing)",
            lambda r: f"**{r['stored_per_s_sustained']:,.0f}**",
        ),
        row(
            "messages/s decoded and stored, sustained",
            lambda r: f"{r['messages_per_s_sustained']:,.0f}",
        ),
        row(
            "readings/s end to end (first publish to last row)",
            lambda r: f"{r['stored_per_s_end_to_end']:,.0f}",
        ),
        row(
            "latency publish -> row p50 / p99 / max",
            lambda r: (
                f"{(r['latency_p50_s'] or 0) * ms:,.0f} / {(r['latency_p99_s'] or 0) * ms:,.0f}"
                f" / {(r['latency_max_s'] or 0) * ms:,.0f} ms"
            ),
        ),
        row("CPU, publishers (cores)", lambda r: cpu(r, "publishers")),
        row(
            "CPU, bridge / decoder(s) / ingestion (cores)",
            lambda r: cpu(r, "mqtt-bridge", "mqtt-decoder", "ingestion"),
        ),
        row("CPU, Mosquitto (cores)", lambda r: cpu(r, "mosquitto")),
        row(
            f"CPU, whole machine busy (cores, of {os.cpu_count()})",
            lambda r: cpu(r, "machine_busy"),
        ),
    ]
    first = runs[0]
    header = "| | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " |"
    rule = "|---|" + "---:|" * len(runs)
    commands = "; ".join(f"`{r['command']}`" for r in runs)
    return (
        "## MQTT: devices -> Mosquitto -> bridge -> Kafka -> decoder -> ingestion -> PostgreSQL\n\n"
        f"{commands} on {first['machine']}, {first['date']} (back to back).\n\n"
        f"{first['devices']:,} device connections (MQTT 3.1.1, each with its own credentials), each"
        f" publishing QoS 1 for {first['seconds']:g} s;"
        f" provisioning them took {first['provision_s']:.1f} s (200 a round trip).\n\n"
        f"{header}\n{rule}\n" + "\n".join(rows) + "\n"
    )


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "publish":
    _publisher_main(sys.argv[2], sys.argv[3])

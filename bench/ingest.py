"""Ingestion benchmark (DESIGN.md 7): N readings in Kafka drained into PostgreSQL, offsets
committed, exactly once; beside it, in the same run and on the same schema, raw binary COPY
of the same rows from memory (the ceiling) and single-row INSERTs of a sample (the
specification's way).

Run: ``make bench-ingest`` or ``iotmon bench ingest --readings 1000000`` with the services of
``scripts/infra.sh`` in the environment. Writes bench/results/ingest.json and BENCHMARKS.md.
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg import conninfo
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from common import machine, write_section
from iotmon.bus import topic_specs
from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.db import migrate, partitions
from iotmon.devices.models import fleet
from iotmon.readings.ingest import COPY_SQL, IngestConfig, Ingestor
from iotmon.readings.models import COPY_TYPES, Row, parse
from iotmon.roles.runtime import tune_gc
from iotmon.simulator.signals import Signal

BATCH = 20_000
DEVICES = 1_000


def readings(n: int) -> list[tuple[bytes, bytes]]:
    """n realistic readings from a fleet of DEVICES, spread over the last hour."""
    devices = fleet(DEVICES)
    signals = [Signal(d) for d in devices]
    start = time.time() - 3600
    out = []
    for i in range(n):
        k = i % DEVICES
        d = devices[k]
        t = start + 3600 * i / n
        value, _ = signals[k].next(t)
        ts = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
        msg = {
            "deviceId": d.device_id,
            "timestamp": ts.replace("+00:00", "Z"),
            "sensorType": d.sensor_type,
            "value": value,
            "unit": d.unit,
            "location": d.location,
            "status": "active",
        }
        out.append((d.device_id.encode(), orjson.dumps(msg)))
    return out


def _db_url(url: str, name: str) -> str:
    info = conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def run_bench(
    settings: Settings,
    *,
    readings: int,
    insert_sample: int,
    output: str,
    markdown: str,
    console: Console,
    repeat: int = 3,
) -> dict[str, Any]:
    assert settings.kafka_bootstrap
    assert settings.database_url
    admin_url = settings.database_url.get_secret_value()
    tag = uuid.uuid4().hex[:8]
    dbname = f"iotmon_bench_{tag}"
    prefix = f"bench-{tag}-"
    bus = KafkaBus(settings.kafka_bootstrap)
    bus.create_topics(topic_specs(prefix))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {dbname}")
    url = _db_url(admin_url, dbname)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.migrate(conn)
            partitions.ensure_ahead(conn, ahead_days=1)
        result = _measure(bus, url, prefix, readings, insert_sample, repeat, console)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        bus.delete_topics([s.name for s in topic_specs(prefix)])
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    _write_markdown(Path(markdown), result)
    console.print(f"results: {output}, {markdown}")
    return result


def _measure(
    bus: KafkaBus, url: str, prefix: str, n: int, insert_sample: int, repeat: int, console: Console
) -> dict[str, Any]:
    topic = f"{prefix}sensors-data"
    console.print(f"generating {n:,} readings from {DEVICES:,} devices ...")
    msgs = readings(n)

    producer = bus.producer(name="iotmon-bench")
    with _progress(console) as progress:
        task = progress.add_task("producing to Kafka", total=n)
        for i, (key, value) in enumerate(msgs, 1):
            producer.produce(topic, value, key=key)
            if i % 10_000 == 0:
                progress.update(task, completed=i)
        producer.flush(120)
        progress.update(task, completed=n)
    ends = bus.end_offsets(topic)
    assert sum(ends) == n, f"Kafka holds {sum(ends)} of {n} readings"

    # 1. The pipeline: drain Kafka into PostgreSQL with offsets committed per batch, with the
    # ingestion role's process settings. 2. The ceiling: binary COPY of the same rows, already
    # parsed, from memory. Alternated `repeat` times on an emptied table; medians reported.
    tune_gc()
    now = datetime.now(UTC)
    rows: list[Row] = [parse(v, now) for _, v in msgs]
    pipeline_runs, copy_runs = [], []
    for run in range(1, repeat + 1):
        _truncate(url)
        pipeline_runs.append(_drain(bus, url, topic, prefix, ends, n, run, console))
        _truncate(url)
        copy_runs.append(_copy(url, rows, run, console))
    pipeline_rps, copy_rps = statistics.median(pipeline_runs), statistics.median(copy_runs)

    # 3. The specification's way: one INSERT per reading, each its own transaction.
    _truncate(url)
    sample = rows[: min(insert_sample, n)]
    with psycopg.connect(url, autocommit=True) as conn, _progress(console) as progress:
        task = progress.add_task("single-row INSERT", total=len(sample))
        started = time.perf_counter()
        for i, row in enumerate(sample, 1):
            conn.execute(
                'INSERT INTO sensor_readings (device_id, "timestamp", sensor_type, value, unit,'
                " location, status, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                row,
            )
            if i % 500 == 0:
                progress.update(task, completed=i)
        insert_s = time.perf_counter() - started
    insert_rps = len(sample) / insert_s
    console.print(f"  single-row INSERT: {insert_rps:,.0f} readings/s ({len(sample):,} rows)")

    return {
        "readings": n,
        "repeat": repeat,
        "pipeline_runs": [round(r) for r in pipeline_runs],
        "copy_runs": [round(r) for r in copy_runs],
        "pipeline_rps": round(pipeline_rps),
        "copy_rps": round(copy_rps),
        "insert_rps": round(insert_rps),
        "pipeline_vs_copy": round(pipeline_rps / copy_rps, 3),
        "insert_sample": len(sample),
        "batch_size": BATCH,
        "devices": DEVICES,
        "machine": machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "command": f"iotmon bench ingest --readings {n} --repeat {repeat}",
    }


def _drain(
    bus: KafkaBus,
    url: str,
    topic: str,
    prefix: str,
    ends: list[int],
    n: int,
    run: int,
    console: Console,
) -> float:
    ingestor = Ingestor(
        config=IngestConfig(
            topic=topic,
            dlq_topic=f"{prefix}sensors-data.dlq",
            group_id=f"iotmon-bench-{run}",
            batch_size=BATCH,
            batch_wait_s=0.05,
        ),
        bus=bus,
        database_url=url,
    )
    stop = threading.Event()
    until = {(topic, p): end for p, end in enumerate(ends)}
    with _progress(console) as progress:
        task = progress.add_task(f"pipeline drain #{run}", total=n)
        runner = threading.Thread(target=lambda: ingestor.run(stop, until=until))
        started = time.perf_counter()
        runner.start()
        while runner.is_alive():
            runner.join(0.25)
            progress.update(task, completed=ingestor.stats.stored)
        elapsed = time.perf_counter() - started
    stored = _count(url)
    assert stored == n, f"pipeline stored {stored} of {n}"
    console.print(f"  pipeline #{run}: {n / elapsed:,.0f} readings/s ({elapsed:.1f} s)")
    return n / elapsed


def _copy(url: str, rows: list[Row], run: int, console: Console) -> float:
    n = len(rows)
    with psycopg.connect(url, autocommit=True) as conn, _progress(console) as progress:
        task = progress.add_task(f"raw COPY #{run}", total=n)
        started = time.perf_counter()
        for i in range(0, n, BATCH):
            with conn.transaction(), conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows[i : i + BATCH]:
                    copy.write_row(row)
            progress.update(task, completed=min(i + BATCH, n))
        elapsed = time.perf_counter() - started
    console.print(f"  raw COPY #{run}: {n / elapsed:,.0f} readings/s ({elapsed:.1f} s)")
    return n / elapsed


def _count(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM sensor_readings").fetchone()
        return int(row[0]) if row else 0


def _truncate(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE sensor_readings")
        conn.execute("CHECKPOINT")


START, END = "<!-- bench:ingest:start -->", "<!-- bench:ingest:end -->"


def _write_markdown(path: Path, r: dict[str, Any]) -> None:
    section = "\n".join(
        [
            "## Ingestion: Kafka -> PostgreSQL, exactly once",
            "",
            f"`{r['command']}` on {r['date']}, {r['machine']}.",
            f"{r['readings']:,} readings from {r['devices']:,} devices already in Kafka (3 "
            f"partitions), drained in batches of {r['batch_size']:,}; each batch's COPY and its "
            "offsets commit in one transaction. Same schema, same run, one after another.",
            "",
            f"Medians of {r['repeat']} alternated runs (pipeline runs: "
            f"{', '.join(f'{x:,}' for x in r['pipeline_runs'])}; COPY runs: "
            f"{', '.join(f'{x:,}' for x in r['copy_runs'])}).",
            "",
            "| path | readings/s | vs raw COPY |",
            "|---|---:|---:|",
            f"| pipeline: Kafka -> validate -> COPY + offsets | {r['pipeline_rps']:,} | "
            f"{r['pipeline_rps'] / r['copy_rps']:.0%} |",
            f"| raw binary COPY from memory (ceiling) | {r['copy_rps']:,} | 100% |",
            f"| single-row INSERT, autocommit ({r['insert_sample']:,} rows; the specification's"
            " way)"
            f" | {r['insert_rps']:,} | {r['insert_rps'] / r['copy_rps']:.1%} |",
        ]
    )
    write_section(path, START, END, section)

"""Ingestion benchmark (DESIGN.md 7): N readings in Kafka drained into PostgreSQL, offsets
committed, exactly once; beside it, in the same run and on the same schema, raw binary COPY
of the same rows from memory (the ceiling) and single-row INSERTs of a sample (the
specification's way).

Run: ``make bench-ingest`` or ``iotmon bench ingest --readings 1000000`` with the services of
``scripts/infra.sh`` in the environment. Writes bench/results/ingest.json and BENCHMARKS.md.
"""

from __future__ import annotations

import os
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
    small: int | None = None,
) -> dict[str, Any]:
    """``readings`` (the large backlog) and ``small`` (default a fifth of it) drained and
    COPYed, alternated ``repeat`` times in one run."""
    assert settings.kafka_bootstrap
    assert settings.database_url
    small = readings // 5 if small is None else small
    admin_url = settings.database_url.get_secret_value()
    tag = uuid.uuid4().hex[:8]
    dbname = f"iotmon_bench_{tag}"
    prefixes = {readings: f"bench-{tag}-", small: f"bench-{tag}-s-"}
    bus = KafkaBus(settings.kafka_bootstrap)
    for prefix in prefixes.values():
        bus.create_topics(topic_specs(prefix))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {dbname}")
    url = _db_url(admin_url, dbname)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.migrate(conn)
            partitions.ensure_ahead(conn, ahead_days=1)
        result = _measure(bus, url, prefixes, readings, insert_sample, repeat, console)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
        for prefix in prefixes.values():
            bus.delete_topics([s.name for s in topic_specs(prefix)])
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    _write_markdown(Path(markdown), result)
    console.print(f"results: {output}, {markdown}")
    return result


def _measure(
    bus: KafkaBus,
    url: str,
    prefixes: dict[int, str],
    n: int,
    insert_sample: int,
    repeat: int,
    console: Console,
) -> dict[str, Any]:
    console.print(f"generating {n:,} readings from {DEVICES:,} devices ...")
    msgs = readings(n)

    producer = bus.producer(name="iotmon-bench")
    ends: dict[int, list[int]] = {}
    with _progress(console) as progress:
        for size, prefix in prefixes.items():
            topic = f"{prefix}sensors-data"
            task = progress.add_task(f"producing {size:,}", total=size)
            for i, (key, value) in enumerate(msgs[:size], 1):
                producer.produce(topic, value, key=key)
                if i % 10_000 == 0:
                    progress.update(task, completed=i)
            producer.flush(120)
            progress.update(task, completed=size)
            ends[size] = bus.end_offsets(topic)
            assert sum(ends[size]) == size, f"Kafka holds {sum(ends[size])} of {size} readings"

    # 1. The pipeline: drain Kafka into PostgreSQL with offsets committed per batch, with the
    # ingestion role's process settings. 2. The ceiling: binary COPY of the same rows, already
    # parsed, from memory. Alternated `repeat` times on an emptied table, for each backlog
    # size in turn (large, small, large, small, ...); medians reported.
    tune_gc()
    now = datetime.now(UTC)
    rows: list[Row] = [parse(v, now) for _, v in msgs]
    runs: dict[int, dict[str, list[float]]] = {
        size: {"pipeline": [], "copy": [], "first_row": [], "exit": []} for size in prefixes
    }
    for run in range(1, repeat + 1):
        for size, prefix in prefixes.items():
            _truncate(url)
            rps, first, exit_s = _drain(bus, url, prefix, ends[size], size, run, console)
            runs[size]["pipeline"].append(rps)
            runs[size]["first_row"].append(first)
            runs[size]["exit"].append(exit_s)
            _truncate(url)
            runs[size]["copy"].append(_copy(url, rows[:size], run, console))
    sizes = []
    for size, r in runs.items():
        pipeline_rps, copy_rps = statistics.median(r["pipeline"]), statistics.median(r["copy"])
        sizes.append(
            {
                "readings": size,
                "pipeline_runs": [round(x) for x in r["pipeline"]],
                "copy_runs": [round(x) for x in r["copy"]],
                "first_row_runs_s": [round(x, 3) for x in r["first_row"]],
                "exit_runs_s": [round(x, 3) for x in r["exit"]],
                "pipeline_rps": round(pipeline_rps),
                "copy_rps": round(copy_rps),
                "pipeline_vs_copy": round(pipeline_rps / copy_rps, 3),
                # each drain against the COPY right after it: steadier on a shared box
                "pairwise_vs_copy": round(
                    statistics.median(p / c for p, c in zip(r["pipeline"], r["copy"], strict=True)),
                    3,
                ),
                "first_row_s": round(statistics.median(r["first_row"]), 3),
            }
        )
    large = sizes[0]

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
    small = sizes[-1]["readings"]
    return {
        "readings": n,
        "small": small,
        "repeat": repeat,
        "pipeline_runs": large["pipeline_runs"],
        "copy_runs": large["copy_runs"],
        "pipeline_rps": large["pipeline_rps"],
        "copy_rps": large["copy_rps"],
        "pipeline_vs_copy": large["pipeline_vs_copy"],
        "sizes": sizes,
        "insert_rps": round(insert_rps),
        "insert_sample": len(sample),
        "batch_size": BATCH,
        "devices": DEVICES,
        "machine": machine(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": f"iotmon bench ingest --readings {n} --small {small} --repeat {repeat}",
    }


def _drain(
    bus: KafkaBus, url: str, prefix: str, ends: list[int], n: int, run: int, console: Console
) -> tuple[float, float, float]:
    """Readings/s from the start to the last row stored (its offsets commit with it), the
    time to the first stored row, and the time until the drain returned (the harness sees
    the end by an empty poll and leaves the consumer group: not part of the drain)."""
    topic = f"{prefix}sensors-data"
    ingestor = Ingestor(
        config=IngestConfig(
            topic=topic,
            dlq_topic=f"{prefix}sensors-data.dlq",
            group_id=f"iotmon-bench-{n}-{run}",
            batch_size=BATCH,
            batch_wait_s=0.05,
        ),
        bus=bus,
        database_url=url,
    )
    stop = threading.Event()
    until = {(topic, p): end for p, end in enumerate(ends)}
    with _progress(console) as progress:
        task = progress.add_task(f"pipeline {n:,} #{run}", total=n)
        runner = threading.Thread(target=lambda: ingestor.run(stop, until=until))
        # The ingestor notes when its first and latest batches committed: no polling of its
        # count here (a wake-up every 2 ms took the GIL from the threads being measured).
        started = time.perf_counter()
        runner.start()
        runner.join()
        exit_s = time.perf_counter() - started
        progress.update(task, completed=ingestor.stats.stored)
    stored = _count(url)
    assert stored == n, f"pipeline stored {stored} of {n}"
    assert ingestor.stats.stored == n, f"the ingestor counted {ingestor.stats.stored} of {n}"
    first = ingestor.stats.first_stored_at - started
    last = ingestor.stats.last_stored_at - started
    console.print(
        f"  pipeline {n:,} #{run}: {n / last:,.0f} readings/s ({last:.2f} s to the last row,"
        f" {first:.3f} s to the first)"
    )
    return n / last, first, exit_s


def _copy(url: str, rows: list[Row], run: int, console: Console) -> float:
    n = len(rows)
    with psycopg.connect(url, autocommit=True) as conn, _progress(console) as progress:
        task = progress.add_task(f"raw COPY {n:,} #{run}", total=n)
        started = time.perf_counter()
        for i in range(0, n, BATCH):
            with conn.transaction(), conn.cursor() as cur, cur.copy(COPY_SQL) as copy:
                copy.set_types(COPY_TYPES)
                for row in rows[i : i + BATCH]:
                    copy.write_row(row)
            progress.update(task, completed=min(i + BATCH, n))
        elapsed = time.perf_counter() - started
    console.print(f"  raw COPY {n:,} #{run}: {n / elapsed:,.0f} readings/s ({elapsed:.2f} s)")
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
    lines = [
        "## Ingestion: Kafka -> PostgreSQL, exactly once",
        "",
        f"`{r['command']}` on {r['date']}, {r['machine']} (load average at the end "
        f"{', '.join(str(x) for x in r['load_average'])}: the box is shared, so compare the "
        "ratios, measured side by side, more than the absolute figures).",
        f"Backlogs of {r['readings']:,} and {r['small']:,} readings from {r['devices']:,} devices "
        f"already in Kafka (3 partitions), drained in batches of up to {r['batch_size']:,} "
        "(the first after an assignment 1,000, doubling); each batch's COPY and its offsets "
        "commit in one transaction. Raw COPY: the same rows, already parsed, from memory, same "
        f"schema. Alternated {r['repeat']} times per size in one run (large drain, large COPY, "
        "small drain, small COPY, ...); medians, and the median of each drain's ratio to the "
        "COPY right after it (pairwise). A drain is timed from the start of the consumer "
        "(group join included) to the last row stored.",
        "",
        "| backlog | pipeline readings/s | raw COPY readings/s | pipeline vs COPY "
        "| pairwise | first row stored after | runs (pipeline; COPY) |",
        "|---:|---:|---:|---:|---:|---:|---|",
    ]
    for z in r["sizes"]:
        lines.append(
            f"| {z['readings']:,} | {z['pipeline_rps']:,} | {z['copy_rps']:,} "
            f"| {z['pipeline_vs_copy']:.0%} | {z['pairwise_vs_copy']:.0%} "
            f"| {z['first_row_s'] * 1000:.0f} ms "
            f"| {', '.join(f'{x:,}' for x in z['pipeline_runs'])}; "
            f"{', '.join(f'{x:,}' for x in z['copy_runs'])} |"
        )
    lines += [
        "",
        f"Single-row INSERT, autocommit ({r['insert_sample']:,} rows; the specification's way): "
        f"{r['insert_rps']:,} readings/s, {r['insert_rps'] / r['copy_rps']:.1%} of raw COPY.",
    ]
    write_section(path, START, END, "\n".join(lines))

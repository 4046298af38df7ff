"""Shared by the benchmarks: where they ran, and a fresh place on the real services to run."""

from __future__ import annotations

import os
import platform
import signal
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
from psycopg import conninfo

from iotmon.bus import topic_specs
from iotmon.bus.kafka import KafkaBus
from iotmon.config import Settings
from iotmon.db import migrate, partitions
from iotmon.users.service import create_user


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {system}"


def write_section(path: Path, start: str, end: str, section: str) -> None:
    """Replace the text between the ``start`` and ``end`` markers of BENCHMARKS.md (or append
    it), leaving the other benchmarks' sections alone."""
    text = (
        path.read_text()
        if path.exists()
        else (
            "# Benchmarks\n\nFigures are from the commands shown, on the machine named; compare "
            "ratios within one run, not across machines.\n"
        )
    )
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


BENCH_USER, BENCH_PASSWORD = "bench", "bench-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_all(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM every child still running, then wait (kill after 30 s)."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@dataclass
class Sandbox:
    """A fresh database (migrated, partitions ahead, a `viewer` called BENCH_USER), topic
    prefix with its consumer groups and Redis database on the real services, and ``env``: the
    environment for ``iotmon`` children on them. ``close()`` removes them."""

    admin: str
    db: str
    prefix: str
    url: str
    redis_url: str
    bus: KafkaBus
    env: dict[str, str]

    @classmethod
    def open(cls, settings: Settings, redis_db: int) -> Sandbox:
        assert settings.database_url is not None
        assert settings.redis_url is not None
        assert settings.kafka_bootstrap is not None
        admin = settings.database_url.get_secret_value()
        tag = uuid.uuid4().hex[:8]
        db, prefix = f"iotmon_bench_{tag}", f"bench-{tag}-"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {db}")
        info = conninfo.conninfo_to_dict(admin)
        info["dbname"] = db
        url = conninfo.make_conninfo(**info)  # type: ignore[arg-type]
        with psycopg.connect(url, autocommit=True) as conn:
            migrate.migrate(conn)
            partitions.ensure_ahead(conn, ahead_days=1)
            create_user(conn, BENCH_USER, BENCH_PASSWORD, "viewer")
        bus = KafkaBus(settings.kafka_bootstrap)
        bus.create_topics(topic_specs(prefix))
        redis_url = settings.redis_url.get_secret_value().rsplit("/", 1)[0] + f"/{redis_db}"
        redis.Redis.from_url(redis_url).flushdb()
        # the deployment's settings are the box's; IOTMON_NATIVE (which engine the roles run:
        # compiled or pure Python) is the caller's, so a comparison can ask for either
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("IOTMON_") or k == "IOTMON_NATIVE"
        } | {
            "IOTMON_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "IOTMON_DATABASE_URL": url,
            "IOTMON_REDIS_URL": redis_url,
            "IOTMON_TOPIC_PREFIX": prefix,
            "IOTMON_INGESTION_GROUP": f"{prefix}ingestion",
            "IOTMON_PROCESSING_GROUP": f"{prefix}processing",
            "IOTMON_ALERTS_GROUP": f"{prefix}alerts",
            "IOTMON_LOG_LEVEL": "WARNING",
        }
        return cls(admin, db, prefix, url, redis_url, bus, env)

    def close(self) -> None:
        self.bus.delete_topics([s.name for s in topic_specs(self.prefix)])
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
        redis.Redis.from_url(self.redis_url).flushdb()

"""The system and the browser for the end-to-end tests.

One `iotmon up` per test module, as a child process on the real Kafka, PostgreSQL and Redis
(its own database cloned from the migrated template, its own topic prefix and consumer groups,
its own Redis database), serving a copy of the built dashboard; Debian's Chromium driven by
Playwright, headless. Each test gets a fresh browser context (no session left over).
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from iotmon.bus import topic_specs
from iotmon.bus.kafka import KafkaBus
from iotmon.devices.models import SEEDED
from iotmon.simulator.signals import Signal
from iotmon.users.service import create_user
from tests.integration.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("E2E_CHROMIUM", "/usr/bin/chromium")
REDIS_DB = 10  # scenarios use 9, bench alerts 11, api 12, ws 13, bench dashboard 14
PASSWORD = "e2e-password-1"  # noqa: S105 (test users)
USERS = {"operator": "operator", "viewer": "viewer"}  # name -> role
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


@dataclass
class System:
    url: str  # http://127.0.0.1:<port>
    database_url: str
    log: Path
    proc: subprocess.Popen[bytes]

    def tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def token(self, user: str) -> str:
        r = httpx.post(
            f"{self.url}/api/auth/token",
            json={"username": user, "password": PASSWORD},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["data"]["accessToken"])

    def api(self, path: str, user: str = "operator", **params: Any) -> Any:
        r = httpx.get(
            f"{self.url}{path}",
            params=params,
            headers={"Authorization": f"Bearer {self.token(user)}"},
            timeout=10,
        )
        assert r.status_code == 200, r.text
        return r.json()["data"]

    def scenario(self, device: str, kind: str, seconds: float) -> None:
        r = httpx.post(
            f"{self.url}/simulator/scenarios",
            json={"deviceId": device, "kind": kind, "durationS": seconds},
            headers={"Authorization": f"Bearer {self.token('operator')}"},  # operators only
            timeout=10,
        )
        assert r.status_code == 201, r.text

    def wait_alert(self, device: str, alert_type: str, timeout_s: float = 45) -> dict[str, Any]:
        """The open alert of that device and type, once the alerts role raised it."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self.proc.poll() is None, self.tail()
            alerts = self.api("/api/alerts", deviceId=device, type=alert_type)["alerts"]
            if alerts:
                return dict(alerts[0])
            assert time.monotonic() < deadline, f"no {alert_type} for {device}\n{self.tail()}"
            time.sleep(0.5)


@pytest.fixture(scope="session")
def dashboard_dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The production build of the dashboard (built if its sources changed), copied aside so
    a rebuild while the tests run does not pull the files from under the server.
    E2E_DASHBOARD_DIST=<a built dist> tests that build instead (no build step)."""
    given = os.environ.get("E2E_DASHBOARD_DIST")
    if given:
        assert (Path(given) / "index.html").is_file(), f"E2E_DASHBOARD_DIST={given}: no index.html"
        return Path(given).resolve()
    built = subprocess.run(
        [str(REPO / "scripts" / "dashboard.sh"), "build"], capture_output=True, text=True
    )
    if built.returncode != 0:
        pytest.fail(f"scripts/dashboard.sh build failed:\n{built.stdout}\n{built.stderr}")
    dist = REPO / "dashboard" / "dist"
    assert (dist / "index.html").is_file(), "no dashboard/dist/index.html after the build"
    copy = tmp_path_factory.mktemp("dashboard") / "dist"
    shutil.copytree(dist, copy)
    return copy


def _with_db(url: str, name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(url)
    info["dbname"] = name
    return psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]


def seed_history(url: str, hours: float = 4) -> int:
    """The last ``hours`` of readings of the five devices, at their own intervals, from the
    simulator's own signals (so the live readings carry on where these stop): statistics,
    history charts and analytics have something to show on a system started a minute ago."""
    rng = random.Random(5)
    now = time.time()
    rows = []
    for spec in SEEDED:
        signal_ = Signal(spec, anomaly_rate=0, rng=rng)
        t = now - hours * 3600
        while t < now - 5:
            rows.append(
                (
                    spec.device_id,
                    datetime.fromtimestamp(t, UTC),
                    spec.sensor_type,
                    signal_.normal(t),
                    spec.unit,
                    spec.location,
                )
            )
            t += spec.interval_s
    with psycopg.connect(url, autocommit=True) as conn:
        columns = 'device_id, "timestamp", sensor_type, value, unit, location'
        with conn.cursor().copy(f"COPY sensor_readings ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    return len(rows)


@pytest.fixture(scope="module")
def system(
    request: pytest.FixtureRequest,
    infra: dict[str, str],
    template_db: str,
    dashboard_dist: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    """`iotmon up` on the real services, the five devices at 4x their rates, no random
    anomalies (alerts come from the scenarios the tests drive), 4 hours of history (a test
    module's HISTORY_HOURS, 0 = a fresh start), users operator and viewer, no embedded MQTT
    broker (port 1883 is one per machine: only the five devices); yielded once every device
    has a live reading in the API."""
    admin = infra["IOTMON_DATABASE_URL"]
    tag = uuid.uuid4().hex[:8]
    db, prefix = f"iotmon_e2e_{tag}", f"e2e{tag}-"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {db} TEMPLATE {template_db}")
    url = _with_db(admin, db)
    with psycopg.connect(url, autocommit=True) as conn:
        for name, role in USERS.items():
            create_user(conn, name, PASSWORD, role)
    history_hours = getattr(request.module, "HISTORY_HOURS", 4)
    if history_hours:
        seed_history(url, history_hours)
    bus = KafkaBus(infra["IOTMON_KAFKA_BOOTSTRAP"])
    specs = topic_specs(prefix)
    bus.create_topics(specs)
    redis_url = infra["IOTMON_REDIS_URL"].rsplit("/", 1)[0] + f"/{REDIS_DB}"
    redis.Redis.from_url(redis_url).flushdb()
    workdir = tmp_path_factory.mktemp("iotmon-up")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("IOTMON_")} | {
        "IOTMON_KAFKA_BOOTSTRAP": infra["IOTMON_KAFKA_BOOTSTRAP"],
        "IOTMON_DATABASE_URL": url,
        "IOTMON_REDIS_URL": redis_url,
        "IOTMON_TOPIC_PREFIX": prefix,
        "IOTMON_INGESTION_GROUP": f"{prefix}ingestion",
        "IOTMON_PROCESSING_GROUP": f"{prefix}processing",
        "IOTMON_ALERTS_GROUP": f"{prefix}alerts",
        "IOTMON_DATA_DIR": str(workdir),
        "IOTMON_HTTP_PORT": str(port),
        "IOTMON_RATE_LIMIT_PER_MINUTE": "0",
        "IOTMON_DASHBOARD_DIR": str(dashboard_dist),
        "IOTMON_SIMULATOR_RATE": "4",
        "IOTMON_SIMULATOR_ANOMALY_RATE": "0",
        "IOTMON_SIMULATOR_SEED": "11",
        "IOTMON_LOG_JSON": "true",
        "IOTMON_MQTT_EMBEDDED_PORT": "0",
    }
    log = workdir / "up.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "up"],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sys_ = System(url=f"http://127.0.0.1:{port}", database_url=url, log=log, proc=proc)
    try:
        deadline = time.monotonic() + 60
        while True:  # up: the web role answers and every device has a live reading
            assert proc.poll() is None, sys_.tail()
            try:
                devices = sys_.api("/api/devices")["devices"]
                if sum(1 for d in devices if d.get("lastReading")) >= 5:
                    break
            except (httpx.HTTPError, AssertionError):
                pass
            assert time.monotonic() < deadline, f"iotmon up not ready in 60 s\n{sys_.tail()}"
            time.sleep(0.5)
        yield sys_
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        bus.delete_topics([s.name for s in specs])
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    assert proc.returncode == 0, sys_.tail()


@pytest.fixture(scope="module")  # not session: Playwright's sync API holds an event loop
def browser() -> Iterator[Browser]:  # while it runs, which the async tests after it need
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: `scripts/dashboard.sh browser` installs Chromium")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"], headless=True)
        yield b
        b.close()


@pytest.fixture
def context(browser: Browser, system: System) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=system.url, viewport=DESKTOP, color_scheme="light")
    ctx.set_default_timeout(30_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    """A page that notes uncaught errors in ``page.problems`` (test_dashboard.check_page)."""
    p = context.new_page()
    problems: list[str] = []
    p.on("pageerror", lambda e: problems.append(f"uncaught error in the page: {e}"))
    p.problems = problems  # type: ignore[attr-defined]
    return p

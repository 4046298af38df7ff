"""Finding 8 (health, secrets, docs): probes share pooled connections and a short cache;
webhook URLs are masked in logs and in ``iotmon config show``; Swagger UI is pinned with
integrity."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import orjson
import pytest

from iotmon.alerts.models import Alert
from iotmon.alerts.notify import Notifier, NotifyConfig
from tests.integration.helpers import free_port
from tests.security.conftest import System, child_env

SECRET_HOOK = "https://hooks.example.invalid/services/T000/B000/s3cr3t-t0ken"  # noqa: S105


async def _flood(url: str, n: int) -> list[int]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        rs = await asyncio.gather(*(http.get(url) for _ in range(n)))
    return [r.status_code for r in rs]


@pytest.mark.parametrize("path", ["/health", "/api/health"])
def test_a_health_flood_neither_flaps_nor_opens_connections(system: System, path: str) -> None:
    web = system.start("web")
    before = system.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'iotmon-health'"
    )[0][0]
    for _ in range(3):
        codes = asyncio.run(_flood(f"{web.url}{path}", 300))
        assert set(codes) == {200}, {c: codes.count(c) for c in set(codes)}
    after = system.sql(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'iotmon-health'"
    )[0][0]
    assert after - before <= 2  # its own small pool, not a connection per probe
    body = httpx.get(f"{web.url}{path}", timeout=10).json()
    assert body["dependencies"]["database"]["status"] == "healthy"


def test_config_show_masks_webhook_urls(system: System) -> None:
    env = child_env(system.env) | {
        "IOTMON_NOTIFY_WEBHOOK_URLS": orjson.dumps([SECRET_HOOK]).decode()
    }
    out = subprocess.run(
        [sys.executable, "-m", "iotmon", "config", "show"], env=env, capture_output=True, timeout=60
    )
    assert out.returncode == 0, out.stderr.decode()
    text = out.stdout.decode()
    assert "s3cr3t" not in text, text
    assert "/services/" not in text, text
    assert "https://hooks.example.invalid/***" in text
    assert system.db not in text  # the database URL (with its password) neither


async def test_a_failing_webhook_is_logged_without_its_url(
    capfd: pytest.CaptureFixture[str],
) -> None:
    port = free_port()  # nobody listens: every attempt fails
    hook = f"http://127.0.0.1:{port}/services/T000/B000/s3cr3t-t0ken"
    notifier = Notifier(
        NotifyConfig(webhook_urls=(hook,), webhook_attempts=2, webhook_backoff_s=0.01)
    )
    now = datetime.now(UTC)
    alert = Alert(
        1,
        "device-001",
        "threshold_exceeded",
        "hot",
        "high",
        99.0,
        85.0,
        "triggered",
        now,
        None,
        None,
        None,
        None,
        None,
        1,
        99.0,
        now,
        False,
    )
    try:
        await notifier.notify("alert-triggered", alert)
    finally:
        await notifier.close()
    out, err = capfd.readouterr()
    logged = out + err
    assert "notification failed" in logged, logged
    assert "s3cr3t" not in logged, logged
    assert f"http://127.0.0.1:{port}/***" in logged


def test_swagger_ui_is_pinned_with_integrity(system: System) -> None:
    web = system.start("web")
    r = httpx.get(f"{web.url}/api/docs", timeout=10)
    assert r.status_code == 200
    tags = re.findall(r"<(?:script|link)[^>]*(?:src|href)=\"https?://[^>]*>", r.text)
    assert tags, r.text
    for tag in tags:
        assert re.search(r'integrity="sha384-[A-Za-z0-9+/=]{64}"', tag), tag
        assert re.search(r"@\d+\.\d+\.\d+/", tag), tag  # an exact version
    csp = r.headers["content-security-policy"]
    assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";", 1)[0]
    assert httpx.get(f"{web.url}/api/redoc", timeout=10).status_code == 200

"""The chart's probes, tried on real role processes: readiness is ``/health``, liveness and
start-up are ``/metrics`` (deploy/helm/iotmon). A role whose dependency goes away must turn
unready (``/health`` 503) while staying alive (``/metrics`` 200, the process running), and turn
ready again when the dependency is back, without a restart. The dependency is taken away by a TCP
proxy in front of the real service (the shared one is never stopped).
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import yaml

from tests.integration.helpers import Proxy, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]


def _wait(check: object, what: str, timeout: float, proc: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + timeout
    seen = "nothing yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the role exited ({proc.returncode}) while waiting for {what}")
        ok, seen = check()  # type: ignore[operator]
        if ok:
            return seen
        time.sleep(0.25)
    pytest.fail(f"{what}: not within {timeout:.0f} s; last seen: {seen}")


def _get(url: str) -> tuple[int, str]:
    try:
        r = httpx.get(url, timeout=5)
    except httpx.HTTPError as exc:
        return 0, f"{type(exc).__name__}: {exc}"
    return r.status_code, r.text[:300]


@pytest.fixture
def role_env(subprocess_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = dict(subprocess_env)
    group = f"probes-{uuid.uuid4().hex[:8]}"
    env["IOTMON_PROCESSING_GROUP"] = group
    env["IOTMON_HTTP_HOST"] = "127.0.0.1"
    env["IOTMON_DATA_DIR"] = str(tmp_path)
    return env


@contextlib.contextmanager
def role(name: str, env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "iotmon", "run", name],
            env={**env, "IOTMON_HTTP_PORT": str(port)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _chart_probe_paths() -> tuple[str, str]:
    tpl = (REPO / "deploy" / "helm" / "iotmon" / "templates" / "deployments.yaml").read_text()
    readiness = tpl.split("readinessProbe:", 1)[1].split("\n", 2)[1]
    liveness = tpl.split("livenessProbe:", 1)[1].split("\n", 2)[1]
    return (
        yaml.safe_load(readiness.strip())["httpGet"]["path"],
        yaml.safe_load(liveness.strip())["httpGet"]["path"],
    )


@pytest.mark.parametrize("case", ["processing/redis", "ingestion/database"])
def test_a_dependency_outage_makes_a_role_unready_not_dead(
    case: str, role_env: dict[str, str], tmp_path: Path
) -> None:
    name, dependency = case.split("/")
    ready_path, live_path = _chart_probe_paths()
    assert (ready_path, live_path) == ("/health", "/metrics")
    env = dict(role_env)
    if dependency == "redis":
        url = httpx.URL(env["IOTMON_REDIS_URL"])
        proxy = Proxy((url.host, url.port or 6379))
        env["IOTMON_REDIS_URL"] = str(url.copy_with(host="127.0.0.1", port=proxy.port))
    else:
        info = psycopg.conninfo.conninfo_to_dict(env["IOTMON_DATABASE_URL"])
        proxy = Proxy((str(info.get("host", "127.0.0.1")), int(info.get("port", 5432))))
        info.update(host="127.0.0.1", port=str(proxy.port))
        env["IOTMON_DATABASE_URL"] = psycopg.conninfo.make_conninfo(**info)  # type: ignore[arg-type]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proxy.up()
    try:
        with role(name, env, port, tmp_path / f"{name}.log") as proc:
            try:
                # start-up, then ready
                _wait(lambda: (_get(base + live_path)[0] == 200, "metrics"), "/metrics", 90, proc)
                _wait(
                    lambda: (_get(base + ready_path)[0] == 200, _get(base + ready_path)[1]),
                    "ready",
                    90,
                    proc,
                )
                pid = proc.pid

                proxy.down()  # the dependency goes away
                body = _wait(
                    lambda: ((r := _get(base + ready_path))[0] == 503, f"{r[0]} {r[1]}"),
                    f"/health 503 with {dependency} away",
                    60,
                    proc,
                )
                assert '"unhealthy"' in body
                # alive all along: what the liveness probe asks keeps answering
                for _ in range(5):
                    assert _get(base + live_path)[0] == 200
                    time.sleep(0.5)
                assert proc.poll() is None

                proxy.up()  # back: ready again, the same process
                _wait(
                    lambda: (_get(base + ready_path)[0] == 200, _get(base + ready_path)[1]),
                    f"/health 200 with {dependency} back",
                    90,
                    proc,
                )
                assert proc.pid == pid
                assert proc.poll() is None
            except BaseException:
                print((tmp_path / f"{name}.log").read_text()[-3000:], file=sys.stderr)
                raise
    finally:
        proxy.down()

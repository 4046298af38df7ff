"""deploy/docker-compose.yml, deploy/Dockerfile and .dockerignore, checked without a Docker
engine (none runs here): the compose file loads with compose-go, the loader of `docker compose`
itself (the compose-spec schema, interpolation, merges, consistency: scripts/compose-check.sh),
its references resolve (services, volumes, files mounted), every iotmon role of the registry
runs with the right command and port,
resources are those of specification 001 section 7.1, Redis has maxmemory and its eviction
policy, Prometheus gets its rules; the image builds the dashboard and serves it. What these
cannot show: that the images pull and the stack starts (deploy/README.md says so).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from iotmon.roles import ROLES

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ROLE_SERVICES = {
    "simulator",
    "ingestion",
    "processing",
    "alerts",
    "web",
    "mqtt-bridge",
    "mqtt-decoder",
}

# 001 section 7.1: requests -> reservations, limits -> limits (web = the api-gateway).
SIZING = {
    "simulator": (("0.1", "128M"), ("0.2", "256M")),
    "ingestion": (("0.2", "256M"), ("0.4", "512M")),
    "processing": (("0.3", "512M"), ("0.6", "1G")),
    "alerts": (("0.1", "128M"), ("0.2", "256M")),
    "web": (("0.2", "256M"), ("0.4", "512M")),
    "postgres": (("0.3", "512M"), ("0.6", "1G")),
    "redis": (("0.2", "256M"), ("0.4", "512M")),
    "kafka": (("0.5", "1G"), ("1.0", "2G")),
}


pytestmark = pytest.mark.timeout(900)  # the checker's first build (Go module proxy)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


@pytest.fixture(scope="module")
def checker() -> str:
    out = subprocess.run(
        [str(REPO / "scripts" / "compose-check.sh"), "path"],
        check=True,
        capture_output=True,
        text=True,
        timeout=800,
    )
    return out.stdout.strip().splitlines()[-1]


def load(checker: str, path: Path) -> subprocess.CompletedProcess[str]:
    # a clean environment: the ${...:-default} interpolations take their defaults
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(Path.home())}
    return subprocess.run(
        [checker, str(path)], capture_output=True, text=True, timeout=60, env=env, check=False
    )


@pytest.fixture(scope="module")
def project(checker: str) -> dict[str, Any]:
    """The project as `docker compose config` would see it."""
    out = load(checker, DEPLOY / "docker-compose.yml")
    assert out.returncode == 0, out.stderr
    data: dict[str, Any] = json.loads(out.stdout)
    return data


def test_the_compose_loader_takes_the_file(project: dict[str, Any]) -> None:
    services = project["services"]
    assert set(ROLE_SERVICES) <= set(services)
    # the merges (<<: [role, mqtt]) as Compose does them, not only as PyYAML does
    for role in ("web", "mqtt-bridge", "mqtt-decoder"):
        svc = services[role]
        assert svc["command"] == ["run", role]
        assert svc["entrypoint"][:2] == ["/bin/sh", "-c"]
        assert 'exec iotmon "$@"' in svc["entrypoint"][2]  # $$ interpolated to $
        (mount,) = svc["volumes"]
        assert mount["source"] == "mqttsecrets"
        assert mount["read_only"] is True
        assert "init" in svc["depends_on"]
    # 001 7.1 limits, in bytes and CPUs after normalization
    web = services["web"]["deploy"]["resources"]
    assert web["limits"]["cpus"] == 0.4
    assert int(web["limits"]["memory"]) == 512 << 20
    assert services["ingestion"]["deploy"]["replicas"] == 3
    assert services["redis"]["command"][1:5] == [
        "--maxmemory",
        "384mb",
        "--maxmemory-policy",
        "volatile-lru",
    ]
    rules = [v for v in services["prometheus"]["volumes"] if v["target"].endswith("rules.yml")]
    assert rules
    assert Path(rules[0]["source"]).is_file()


@pytest.mark.parametrize(
    ("breakage", "error"),
    [
        (
            lambda d: d["services"]["web"]["depends_on"].update(
                nosuch={"condition": "service_started"}
            ),
            "undefined service",
        ),
        (lambda d: d["services"]["redis"].update(memlimit="1g"), "memlimit"),
        (lambda d: d["services"]["web"].update(volumes=["nosuchvolume:/x"]), "undefined volume"),
        (lambda d: d["services"]["kafka"]["deploy"].update(replicas="three"), "replicas"),
    ],
    ids=["unknown-service", "unknown-key", "undeclared-volume", "wrong-type"],
)
def test_the_compose_loader_refuses_a_broken_file(
    checker: str, compose: dict[str, Any], tmp_path: Path, breakage: Any, error: str
) -> None:
    """The check above can fail: the same file, broken one way, is refused with the reason."""
    broken = json.loads(json.dumps(compose))
    breakage(broken)
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(broken))
    for rel in ("prometheus", "mosquitto"):  # the files it mounts, beside it
        (tmp_path / rel).symlink_to(DEPLOY / rel)
    out = load(checker, path)
    assert out.returncode == 1
    assert error in out.stderr


def test_every_reference_resolves(compose: dict[str, Any]) -> None:
    services = compose["services"]
    volumes = set(compose["volumes"])
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in services, f"{name} depends on unknown {dep}"
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name} mounts missing {source}"
            else:
                assert source in volumes, f"{name} mounts undeclared volume {source}"
        assert "image" in svc, name
    # nothing declared and never used
    used = {m.split(":", 1)[0] for s in services.values() for m in s.get("volumes", [])}
    assert volumes <= used


def test_every_role_of_the_registry_runs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(ROLES) == ROLE_SERVICES
    for role in ROLES:
        svc = services[role]
        assert svc["command"] == ["run", role]
        assert svc["image"] == "iotmon:local"
        assert int(svc["environment"]["IOTMON_HTTP_PORT"]) == ROLES[role].default_port
        assert svc["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert services["init"]["command"] == ["iotmon migrate && iotmon topics create"]


def test_mqtt_roles_and_web_read_the_brokers_secrets(compose: dict[str, Any]) -> None:
    services = compose["services"]
    start = (DEPLOY / "mosquitto" / "start.sh").read_text()
    assert 'SECRETS="${MQTT_SECRETS:-/mosquitto/secrets}"' in start
    assert "mqttsecrets:/mosquitto/secrets" in services["mosquitto"]["volumes"]
    for role in ("web", "mqtt-bridge", "mqtt-decoder"):
        svc = services[role]
        assert "mqttsecrets:/run/iotmon-mqtt:ro" in svc["volumes"]
        assert ". /run/iotmon-mqtt/mqtt.env" in svc["entrypoint"][2]
        assert svc["entrypoint"][-1] == "iotmon"  # $0 of sh -c; "$@" is the command
    assert services["mqtt-bridge"]["depends_on"]["mosquitto"]["condition"] == "service_healthy"


def test_resources_of_the_specification(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, ((rcpu, rmem), (lcpu, lmem)) in SIZING.items():
        res = services[name]["deploy"]["resources"]
        assert res["reservations"] == {"cpus": rcpu, "memory": rmem}, name
        assert res["limits"] == {"cpus": lcpu, "memory": lmem}, name
    for name, svc in services.items():
        if name != "init":
            assert svc["deploy"]["resources"]["limits"], name


def test_redis_has_maxmemory_under_its_limit_and_volatile_lru(compose: dict[str, Any]) -> None:
    cmd = compose["services"]["redis"]["command"]
    flags = dict(zip(cmd[1::2], cmd[2::2], strict=True))
    assert flags["--maxmemory-policy"] == "volatile-lru"
    maxmemory = int(flags["--maxmemory"].removesuffix("mb"))
    limit = int(compose["services"]["redis"]["deploy"]["resources"]["limits"]["memory"][:-1])
    assert maxmemory < limit
    infra = (REPO / "scripts" / "infra.sh").read_text()
    assert "maxmemory-policy volatile-lru" in infra


def test_prometheus_gets_the_rules_it_loads(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["prometheus"]["volumes"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for rule_file in config.get("rule_files", []):
        assert f"./prometheus/{rule_file}:/etc/prometheus/{rule_file}:ro" in mounts
    assert config.get("rule_files"), "prometheus.yml loads no rules"
    jobs = {j["job_name"] for j in config["scrape_configs"]}
    assert set(ROLES) <= jobs


# --------------------------------------------------------------------------------- the image
def _ignored(path: str, patterns: list[str]) -> bool:
    out = False
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat.removeprefix("!").strip("/")
        hit = any(
            fnmatch.fnmatch(part, pat)
            for part in [
                path,
                *(str(Path(*Path(path).parts[: i + 1])) for i in range(len(Path(path).parts))),
            ]
        ) or (pat.startswith("**/") and any(fnmatch.fnmatch(p, pat[3:]) for p in Path(path).parts))
        if hit:
            out = not neg
    return out


def test_the_image_builds_and_serves_the_dashboard() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)", dockerfile, re.M)
    assert stages == ["uv", "dashboard", "build", "runtime"]
    node = dockerfile.split("AS dashboard", 1)[1].split("AS build", 1)[0]
    assert "npm ci" in node
    assert "npm run build" in node
    assert "COPY --from=dashboard /dashboard/dist /app/dashboard" in dockerfile
    assert "IOTMON_DASHBOARD_DIR=/app/dashboard" in dockerfile
    # the setting the web role reads is the one the image sets
    from iotmon.config import Settings

    assert "dashboard_dir" in Settings.model_fields
    # what the build copies is in the context; what must stay out is kept out
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in re.findall(r"^COPY (?!--from)(?:--\S+ )*(.+) \S+$", dockerfile, re.M):
        for item in source.split():
            assert (REPO / item).exists(), item
            assert not _ignored(item.rstrip("/"), patterns), f"{item} is in .dockerignore"
    for bind in re.findall(r"source=([^,\s]+)", dockerfile):
        assert not _ignored(bind, patterns), bind
    for junk in (
        "var",
        ".venv",
        "node_modules",
        "dashboard/node_modules",
        "dashboard/dist",
        "src/iotmon/__pycache__",
        ".mypy_cache",
        ".git",
    ):
        assert _ignored(junk, patterns), f"{junk} would be sent to the build"

"""The Helm chart deploy/helm/iotmon, checked for real without a cluster: `helm lint --strict`,
`helm template` of the default values and of values-production.yaml (and an MQTT variant), every
rendered manifest validated strictly against the Kubernetes API schemas (kubernetes-validate,
unknown fields refused), plus what matters to an operator: probes, sizing, secrets, the hook,
the autoscaler's bound by partitions.

Helm is built from the Go module proxy by scripts/helm.sh and cached (~/.cache/iotmon): the first
run here takes a few minutes, hence the long timeout of this module.
"""

from __future__ import annotations

import base64
import functools
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource
from typer.testing import CliRunner

from iotmon.bus import topic_specs
from iotmon.cli import app as cli_app
from iotmon.roles import ROLES

pytestmark = pytest.mark.timeout(1800)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "iotmon"
PRODUCTION = REPO / "deploy" / "helm" / "values-production.yaml"
K8S_VERSION = kv_utils.latest_version()  # the newest API the package bundles (1.37.0)

# Specification 001 section 7.1 (replicas, requests, limits); web is the spec's api-gateway.
SIZING = {
    "simulator": (1, ("100m", "128Mi"), ("200m", "256Mi")),
    "ingestion": (2, ("200m", "256Mi"), ("400m", "512Mi")),
    "processing": (2, ("300m", "512Mi"), ("600m", "1Gi")),
    "alerts": (1, ("100m", "128Mi"), ("200m", "256Mi")),
    "web": (2, ("200m", "256Mi"), ("400m", "512Mi")),
}

# prometheus-operator's Duration
DURATION = (
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)

# Values that must never show outside a Secret.
SECRETS = {
    "postgresql.password": "pg-Secret-4711",
    "redis.password": "redis-Secret-4712",
    "jwtSecret": "jwt-Secret-4713",
    "mqtt.enabled": "true",
    "mqtt.url": "mqtt://_iotmon_bridge:mqtt-Secret-4714@mosquitto:1883",
    "mqtt.adminUrl": "mqtt://_iotmon_admin:mqtt-Secret-4715@mosquitto:1883",
    "smtpPassword": "smtp-Secret-4716",
}


@pytest.fixture(scope="module")
def helm() -> str:
    """scripts/helm.sh builds Helm once (Go module proxy) and prints the cached binary."""
    out = subprocess.run(
        [str(REPO / "scripts" / "helm.sh"), "path"],
        check=True,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    path = out.stdout.strip().splitlines()[-1]
    assert Path(path).is_file(), out.stderr
    return path


def _run_helm(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [helm, *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False
    )


def render(
    helm: str, *, values: Path | None = None, sets: dict[str, str] | None = None
) -> list[Any]:
    args = ["template", "iotmon", str(CHART), "--namespace", "iot-monitoring"]
    args += ["--kube-version", K8S_VERSION]
    if values is not None:
        args += ["-f", str(values)]
    for key, value in (sets or {}).items():
        args += ["--set", f"{key}={value}"]
    out = _run_helm(helm, *args)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def render_error(helm: str, sets: dict[str, str]) -> str:
    args = ["template", "iotmon", str(CHART), "--kube-version", K8S_VERSION]
    for key, value in sets.items():
        args += ["--set", f"{key}={value}"]
    out = _run_helm(helm, *args)
    assert out.returncode != 0, f"rendered although {sets} is wrong"
    return out.stderr


VARIANTS = {
    "default": {},
    "production": {"values": PRODUCTION},
    "mqtt+secrets+servicemonitor": {"sets": {**SECRETS, "serviceMonitor.enabled": "true"}},
}


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, list[Any]]:
    return {name: render(helm, **kw) for name, kw in VARIANTS.items()}  # type: ignore[arg-type]


def of_kind(docs: list[Any], kind: str) -> list[Any]:
    return [d for d in docs if d["kind"] == kind]


def containers(doc: Any) -> Iterator[Any]:
    spec = doc["spec"]["template"]["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


# ------------------------------------------------------------------------------ helm itself
@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["default", "production"])
def test_helm_lint_strict(helm: str, values: Path | None) -> None:
    args = ["lint", "--strict", str(CHART)] + (["-f", str(values)] if values else [])
    out = _run_helm(helm, *args)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in out.stdout


def test_values_schema_refuses_a_typo(helm: str) -> None:
    """values.schema.json: a misspelt key is an error, not a silently ignored setting."""
    err = render_error(helm, {"roles.web.replica": "4"})
    assert "replica" in err
    assert "not allowed" in err


# ------------------------------------------------------------------ Kubernetes API schemas
def _service_monitor_schema() -> dict[str, Any]:
    """The ServiceMonitor CRD (monitoring.coreos.com/v1) is not among the bundled schemas: the
    fields this chart writes, transcribed from prometheus-operator's CRD, strict; metadata and
    the selector are checked against the real ObjectMeta and LabelSelector of Kubernetes."""
    meta = "/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1."
    endpoint = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "port": {"type": "string"},
            "path": {"type": "string", "pattern": "^/"},
            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
            "interval": {
                "type": "string",
                "pattern": DURATION,
            },
            "scrapeTimeout": {"type": "string"},
            "honorLabels": {"type": "boolean"},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": "ServiceMonitor"},
            "metadata": {"$ref": meta + "ObjectMeta"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", "endpoints"],
                "properties": {
                    "jobLabel": {"type": "string"},
                    "selector": {"$ref": meta + "LabelSelector"},
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    "endpoints": {"type": "array", "minItems": 1, "items": endpoint},
                },
            },
        },
    }


@functools.cache
def _definitions() -> Registry:
    defs = kv_utils.schema_contents(
        f"kubernetes-json-schema/v{K8S_VERSION}-local-strict/_definitions.json", K8S_VERSION
    )
    return Registry().with_resource("/api/_definitions.json", Resource.from_contents(defs))


def validate(doc: Any) -> None:
    if doc["kind"] == "ServiceMonitor":
        validator = jsonschema.Draft202012Validator(
            _service_monitor_schema(), registry=_definitions()
        )
        validator.validate(doc)
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_manifest_is_valid_against_the_kubernetes_api(
    rendered: dict[str, list[Any]], variant: str
) -> None:
    docs = rendered[variant]
    assert len(docs) >= 15
    for doc in docs:
        try:
            validate(doc)
        except (jsonschema.ValidationError, kv_utils.SchemaNotFoundError) as exc:
            pytest.fail(f"{variant}: {doc['kind']} {doc['metadata']['name']}: {exc}")


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("spec", "template", "spec", "containers", 0, "livenessProbe", "httpGett"), {}),
        (("spec", "template", "spec", "containers", 0, "resources", "limits", "cpu"), [1]),
        (("spec", "strategy", "type"), 3),
    ],
)
def test_the_validation_refuses_a_broken_deployment(
    rendered: dict[str, list[Any]], path: tuple[Any, ...], bad: Any
) -> None:
    """The strict validation catches a misspelt field or a wrong type (the check above can fail)."""
    doc = json.loads(json.dumps(of_kind(rendered["default"], "Deployment")[0]))
    node = doc
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = bad
    with pytest.raises(jsonschema.ValidationError):
        validate(doc)


def test_the_service_monitor_schema_is_strict(rendered: dict[str, list[Any]]) -> None:
    (sm,) = of_kind(rendered["production"], "ServiceMonitor")
    validate(sm)
    broken = json.loads(json.dumps(sm))
    broken["spec"]["endpoints"][0]["intervall"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)
    broken = json.loads(json.dumps(sm))
    broken["spec"]["selector"]["matchLabel"] = {"a": "b"}
    with pytest.raises(jsonschema.ValidationError):
        validate(broken)


# -------------------------------------------------------------------------------- the roles
def _role(doc: Any) -> str:
    return str(doc["metadata"]["labels"]["app.kubernetes.io/component"])


def _workloads(docs: list[Any]) -> list[Any]:
    return of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")


def _iotmon_deployments(docs: list[Any]) -> dict[str, Any]:
    """The role workloads by role: Deployments, StatefulSets for the MQTT roles."""
    return {_role(d): d for d in _workloads(docs) if _role(d) != "redis"}


def test_a_deployment_per_role_of_the_registry(rendered: dict[str, list[Any]]) -> None:
    default = _iotmon_deployments(rendered["default"])
    # MQTT roles only when MQTT is configured; the simulator is off in production.
    assert set(default) == set(ROLES) - {"mqtt-bridge", "mqtt-decoder"}
    assert set(_iotmon_deployments(rendered["mqtt+secrets+servicemonitor"])) == set(ROLES)
    assert set(_iotmon_deployments(rendered["production"])) == set(ROLES) - {"simulator"}
    for variant in VARIANTS:
        for name, dep in _iotmon_deployments(rendered[variant]).items():
            (c,) = dep["spec"]["template"]["spec"]["containers"]
            assert c["args"] == ["run", name]
            (port,) = c["ports"]
            assert port["containerPort"] == ROLES[name].default_port
            env = {e["name"]: e["value"] for e in c["env"]}
            assert env["IOTMON_HTTP_PORT"] == str(ROLES[name].default_port)


def test_the_mqtt_roles_keep_their_identity_across_restarts(
    rendered: dict[str, list[Any]],
) -> None:
    """The bridge's MQTT client id (its persistent session) and the decoder's Kafka
    transactional id come from the hostname (unless set): a StatefulSet keeps a pod's name
    across restarts, a Deployment's replacement pod gets a new one."""
    docs = rendered["production"]
    services = {_role(s): s for s in of_kind(docs, "Service")}
    for name in ("mqtt-bridge", "mqtt-decoder"):
        (sts,) = [d for d in of_kind(docs, "StatefulSet") if _role(d) == name]
        assert sts["spec"]["serviceName"] == services[name]["metadata"]["name"]
        assert services[name]["spec"]["clusterIP"] == "None"
        assert sts["spec"]["updateStrategy"]["type"] == "RollingUpdate"
        assert sts["spec"]["replicas"] == 2
        env = {e["name"] for c in containers(sts) for e in c["env"]}
        assert not env & {"IOTMON_MQTT_CLIENT_ID", "IOTMON_MQTT_DECODER_ID"}
    assert {_role(d) for d in of_kind(docs, "StatefulSet")} == {"mqtt-bridge", "mqtt-decoder"}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_deployment_has_probes_resources_and_runs_unprivileged(
    rendered: dict[str, list[Any]], variant: str
) -> None:
    for dep in _workloads(rendered[variant]):
        spec = dep["spec"]
        strategy = spec["strategy" if dep["kind"] == "Deployment" else "updateStrategy"]
        assert strategy["type"] in ("RollingUpdate", "Recreate")
        pod = spec["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["readinessProbe"], dep["metadata"]["name"]
            assert c["livenessProbe"], dep["metadata"]["name"]
            for side in ("requests", "limits"):
                assert set(c["resources"][side]) >= {"cpu", "memory"}
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
        if _role(dep) == "redis":
            continue
        assert strategy["type"] == "RollingUpdate"
        (c,) = pod["containers"]
        # Readiness follows the dependencies (/health is 503 while one is down); liveness
        # and start-up ask only whether the process serves (/metrics), so an outage of
        # PostgreSQL or Kafka takes the pods out of the Service but restarts none.
        assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
        assert c["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "http"}
        assert c["startupProbe"]["httpGet"] == {"path": "/metrics", "port": "http"}


def test_sizing_of_the_specification(rendered: dict[str, list[Any]]) -> None:
    deps = _iotmon_deployments(rendered["default"])
    hpas = {_role(h): h for h in of_kind(rendered["default"], "HorizontalPodAutoscaler")}
    for name, (replicas, (rcpu, rmem), (lcpu, lmem)) in SIZING.items():
        dep = deps[name]
        res = dep["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert res == {
            "requests": {"cpu": rcpu, "memory": rmem},
            "limits": {"cpu": lcpu, "memory": lmem},
        }, name
        if name in hpas:  # the autoscaler owns the count; its floor is the spec's replicas
            assert "replicas" not in dep["spec"]
            assert hpas[name]["spec"]["minReplicas"] == replicas
        else:
            assert dep["spec"]["replicas"] == replicas, name
    assert set(hpas) == {"web", "ingestion"}
    assert deps["web"]["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": "25%",
        "maxUnavailable": "25%",
    }
    # alerts: one process; the old pod stops before the new one starts.
    assert deps["alerts"]["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 0,
        "maxUnavailable": 1,
    }


def test_ingestion_never_scales_above_the_partitions_of_sensors_data(
    helm: str, rendered: dict[str, list[Any]]
) -> None:
    partitions = {s.name: s.partitions for s in topic_specs()}
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    # the chart's idea of the partitions is the one `iotmon topics create` makes
    assert chart_values["kafka"]["partitions"] == {
        "sensorsData": partitions["sensors-data"],
        "mqttRaw": partitions["mqtt-raw"],
    }
    for variant in VARIANTS:
        (hpa,) = [
            h
            for h in of_kind(rendered[variant], "HorizontalPodAutoscaler")
            if _role(h) == "ingestion"
        ]
        assert hpa["spec"]["maxReplicas"] <= partitions["sensors-data"]
    err = render_error(helm, {"roles.ingestion.autoscaling.maxReplicas": "4"})
    assert "above the partitions of sensors-data" in err
    err = render_error(
        helm, {"roles.ingestion.autoscaling.enabled": "false", "roles.ingestion.replicas": "5"}
    )
    assert "above the partitions of sensors-data" in err
    # more partitions, more consumers: the bound follows the value
    docs = render(
        helm,
        sets={"kafka.partitions.sensorsData": "6", "roles.ingestion.autoscaling.maxReplicas": "6"},
    )
    (hpa,) = [h for h in of_kind(docs, "HorizontalPodAutoscaler") if _role(h) == "ingestion"]
    assert hpa["spec"]["maxReplicas"] == 6


def test_pod_disruption_budgets_cover_every_role(rendered: dict[str, list[Any]]) -> None:
    for variant in VARIANTS:
        docs = rendered[variant]
        pdbs = {_role(p): p for p in of_kind(docs, "PodDisruptionBudget")}
        assert set(pdbs) == set(_iotmon_deployments(docs))
        for name, pdb in pdbs.items():
            assert pdb["spec"]["maxUnavailable"] == 1
            assert pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == name


# ----------------------------------------------------------------------------- the secrets
def _decoded(secret: Any) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def test_secrets_are_only_in_the_secret(rendered: dict[str, list[Any]]) -> None:
    docs = rendered["mqtt+secrets+servicemonitor"]
    secrets = [s for s in of_kind(docs, "Secret") if _role_of(s) != "redis"]
    assert secrets  # the release's Secret and the setup hook's copy
    for secret in secrets:
        data = _decoded(secret)
        assert data["IOTMON_DATABASE_URL"] == (
            "postgresql://iotmon:pg-Secret-4711@postgresql:5432/iotmon"
        )
        assert data["IOTMON_REDIS_URL"] == "redis://:redis-Secret-4712@iotmon-redis:6379/0"
        assert data["IOTMON_JWT_SECRET"] == SECRETS["jwtSecret"]
        assert data["IOTMON_MQTT_URL"] == SECRETS["mqtt.url"]
        assert data["IOTMON_MQTT_ADMIN_URL"] == SECRETS["mqtt.adminUrl"]
        assert data["IOTMON_SMTP_PASSWORD"] == SECRETS["smtpPassword"]
    everything_else = yaml.safe_dump_all([d for d in docs if d["kind"] != "Secret"])
    assert "Secret-47" not in everything_else  # no secret value, nor a part of one
    # The pods read the Secret as a whole; nothing secret is spelled out in an env value.
    for dep in _iotmon_deployments(docs).values():
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        refs = [e for e in c["envFrom"] if "secretRef" in e]
        assert refs == [{"secretRef": {"name": "iotmon"}}]


def _role_of(doc: Any) -> str:
    return str(doc["metadata"]["labels"].get("app.kubernetes.io/component", ""))


def test_config_maps_hold_no_secret(rendered: dict[str, list[Any]]) -> None:
    secret_key = re.compile(r"PASSWORD|SECRET|_URL$|_URLS$")
    for variant in VARIANTS:
        for cm in of_kind(rendered[variant], "ConfigMap"):
            for key, value in cm["data"].items():
                assert not secret_key.search(key), (variant, key)
                assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), (variant, key)
                assert "Secret-47" not in value


def test_the_chart_refuses_a_secret_in_its_config(helm: str) -> None:
    err = render_error(helm, {"config.IOTMON_DATABASE_URL": "postgresql://u:p@h/d"})
    assert "belongs in the Secret" in err
    err = render_error(helm, {"config.IOTMON_SOMETHING": "redis://:pw@redis:6379/0"})
    assert "belongs in the Secret" in err


def test_production_uses_an_existing_secret(rendered: dict[str, list[Any]]) -> None:
    docs = rendered["production"]
    assert of_kind(docs, "Secret") == []  # the chart writes none: no secret in the values
    for dep in _iotmon_deployments(docs).values():
        (c,) = dep["spec"]["template"]["spec"]["containers"]
        assert {"secretRef": {"name": "iotmon-secrets"}} in c["envFrom"]
    (job,) = of_kind(docs, "Job")
    for c in containers(job):
        assert {"secretRef": {"name": "iotmon-secrets"}} in c["envFrom"]
    assert not [d for d in of_kind(docs, "Deployment") if _role(d) == "redis"]
    assert len(of_kind(docs, "ServiceMonitor")) == 1


# ------------------------------------------------------------------------ hook and ingress
def test_migrations_and_topics_run_as_a_pre_install_and_pre_upgrade_hook(
    rendered: dict[str, list[Any]],
) -> None:
    for command in (["migrate"], ["topics", "create"]):  # the commands the Job runs exist
        result = CliRunner().invoke(cli_app, [*command, "--help"])
        assert result.exit_code == 0, result.output
    for variant in VARIANTS:
        docs = rendered[variant]
        (job,) = of_kind(docs, "Job")
        notes = job["metadata"]["annotations"]
        assert notes["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "before-hook-creation" in notes["helm.sh/hook-delete-policy"]
        pod = job["spec"]["template"]["spec"]
        assert [c["args"] for c in pod["initContainers"]] == [["migrate"]]
        assert [c["args"] for c in pod["containers"]] == [["topics", "create"]]
        assert pod["restartPolicy"] == "Never"
        # What the Job reads exists before it: hooks of a lower weight (a pre-install hook
        # runs before the release's own ConfigMap and Secret are made).
        refs = {next(iter(r.values()))["name"] for c in containers(job) for r in c["envFrom"]}
        for ref in refs:
            if ref == "iotmon-secrets":  # existingSecret: the operator's own
                continue
            made = [d for d in docs if d["metadata"]["name"] == ref and d["kind"] != "Job"]
            assert made, ref
            for d in made:
                hook = d["metadata"]["annotations"]
                assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
                assert int(hook["helm.sh/hook-weight"]) < int(notes["helm.sh/hook-weight"])


def test_the_web_ingress_has_sticky_sessions(rendered: dict[str, list[Any]]) -> None:
    for variant in VARIANTS:
        (ing,) = of_kind(rendered[variant], "Ingress")
        notes = ing["metadata"]["annotations"]
        assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
        assert notes["nginx.ingress.kubernetes.io/session-cookie-name"]
        assert int(notes["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 60
        (rule,) = ing["spec"]["rules"]
        (path,) = rule["http"]["paths"]
        assert path["backend"]["service"]["name"] == "iotmon-web"
    (ing,) = of_kind(rendered["production"], "Ingress")
    assert ing["spec"]["tls"][0]["secretName"] == "iotmon-tls"


def test_redis_has_maxmemory_and_the_eviction_policy(rendered: dict[str, list[Any]]) -> None:
    (cm,) = [c for c in of_kind(rendered["default"], "ConfigMap") if _role_of(c) == "redis"]
    conf = dict(
        line.split(" ", 1) for line in cm["data"]["redis.conf"].splitlines() if line.strip()
    )
    assert conf["maxmemory-policy"] == "volatile-lru"
    (dep,) = [d for d in of_kind(rendered["default"], "Deployment") if _role(d) == "redis"]
    limit = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"]
    assert limit == "512Mi"
    # below the limit: Redis's own overhead and the RDB fork need the rest
    assert conf["maxmemory"] == "384mb"

"""Prometheus and promtool for the deploy checks: Debian's ``prometheus`` package, installed
here when missing (as ``scripts/infra.sh`` installs its packages: apt-get as root, with a
policy-rc.d so the package does not start a service of its own), and the parsing of the rule
and dashboard files both tests read."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TEST = PROMETHEUS_DIR / "rules_test.yml"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARDS = sorted((GRAFANA_DIR / "dashboards").glob("*.json"))
POLICY_RC = Path("/usr/sbin/policy-rc.d")


def _tools() -> dict[str, str] | None:
    found = {name: shutil.which(name) for name in ("prometheus", "promtool")}
    if all(found.values()):
        return {k: str(v) for k, v in found.items()}
    return None


@contextlib.contextmanager
def _no_service_start() -> Iterator[None]:
    created = False
    if not POLICY_RC.exists():
        POLICY_RC.write_text("#!/bin/sh\nexit 101\n")
        POLICY_RC.chmod(0o755)
        created = True
    try:
        yield
    finally:
        if created:
            POLICY_RC.unlink(missing_ok=True)


def ensure_prometheus() -> dict[str, str]:
    """Paths of ``prometheus`` and ``promtool``, installing Debian's package if needed."""
    tools = _tools()
    if tools is not None:
        return tools
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(
            "prometheus/promtool missing and not root with apt-get to install them: "
            "apt-get install -y prometheus (or run scripts/infra.sh up as root)"
        )
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    opts = ["-o", "DPkg::Lock::Timeout=600", "-o", "Dpkg::Options::=--force-confold"]
    with _no_service_start():
        for args in (["update"], ["install", "-y", "--no-install-recommends", "prometheus"]):
            done = subprocess.run(
                ["apt-get", *opts, *args], env=env, capture_output=True, text=True, timeout=900
            )
            assert done.returncode == 0, f"apt-get {' '.join(args)}:\n{done.stdout}{done.stderr}"
    tools = _tools()
    assert tools is not None, "the prometheus package is installed but its binaries are not"
    return tools


# --- the rules ------------------------------------------------------------------------------
def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


# --- the dashboards -------------------------------------------------------------------------
RATE_INTERVAL = "1m"  # what $__rate_interval becomes in the live test


@dataclass(frozen=True)
class Query:
    dashboard: str  # file name
    panel: str  # panel title, or "variable <name>"
    ref: str  # refId
    expr: str  # as written in the dashboard
    promql: str  # with the template variables substituted


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in board.get("panels", []):
        yield p
        yield from p.get("panels", [])  # collapsed rows hold theirs


def variables(board: dict[str, Any]) -> dict[str, str]:
    """Each template variable's value for querying: a constant's value, "All" (its allValue)
    for a query variable; Grafana's interval variables too."""
    out = {"__rate_interval": RATE_INTERVAL, "__interval": "15s", "__range": "1h"}
    for v in board.get("templating", {}).get("list", []):
        if v["type"] == "constant":
            out[v["name"]] = str(v["query"])
        elif v.get("includeAll"):
            out[v["name"]] = v.get("allValue") or ".*"
        else:
            raise AssertionError(f"variable {v['name']}: no value to query with")
    return out


_VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def substitute(expr: str, values: dict[str, str]) -> str:
    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise AssertionError(f"unknown template variable ${name} in {expr!r}")
        return values[name]

    return _VAR.sub(one, expr)


_LABEL_VALUES = re.compile(r"^label_values\((.*),\s*(\w+)\)$")


def queries() -> list[Query]:
    """Every expression of every dashboard: panel targets, and the selector of each
    ``label_values(...)`` variable."""
    out = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        values = variables(board)
        for v in board.get("templating", {}).get("list", []):
            if v["type"] != "query":
                continue
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = _LABEL_VALUES.match(q.strip())
            assert m, f"{path.name}: variable {v['name']}: only label_values(selector, label)"
            out.append(
                Query(path.name, f"variable {v['name']}", "-", q, substitute(m.group(1), values))
            )
        for p in panels(board):
            for t in p.get("targets", []):
                out.append(
                    Query(
                        path.name, p["title"], t["refId"], t["expr"], substitute(t["expr"], values)
                    )
                )
    return out

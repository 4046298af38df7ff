"""The alerting rules and the Prometheus configuration, checked by Prometheus's own promtool
(installed by the test when missing), and the Grafana dashboards' structure. What the
expressions return on a running system: test_prometheus_live.py."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from iotmon.roles import ROLES
from tests.deploy.prometheus_support import (
    CONFIG,
    DASHBOARDS,
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    RULES,
    RULES_TEST,
    ensure_prometheus,
    panels,
    queries,
    rules,
)


@pytest.fixture(scope="module")
def promtool() -> str:
    return ensure_prometheus()["promtool"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=PROMETHEUS_DIR, capture_output=True, text=True, timeout=120
    )


def test_promtool_checks_the_rules(promtool: str) -> None:
    done = run(promtool, "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules())} rules found" in done.stdout


def test_promtool_unit_tests_of_the_rules_pass(promtool: str) -> None:
    done = run(promtool, "test", "rules", str(RULES_TEST))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_promtool_test_fails_when_a_rule_is_wrong(promtool: str, tmp_path: Any) -> None:
    """The unit tests bite: with one threshold changed, they fail."""
    text = RULES.read_text()
    assert "for: 2m" in text
    (tmp_path / "rules.yml").write_text(text.replace("for: 2m", "for: 20m", 1))
    (tmp_path / "rules_test.yml").write_text(RULES_TEST.read_text())
    done = subprocess.run(
        [promtool, "test", "rules", "rules_test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "IotmonRoleDown" in done.stdout + done.stderr


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if a["exp_alerts"]}
    quiet = {
        a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if not a["exp_alerts"]
    }
    alerts = {r["alert"] for r in rules()}
    assert alerts - fired == set(), "alerts never shown firing"
    assert alerts - quiet == set(), "alerts never shown quiet"


def test_every_rule_has_severity_summary_and_description() -> None:
    for r in rules():
        assert r["labels"]["severity"] in ("critical", "warning"), r["alert"]
        assert r["annotations"]["summary"], r["alert"]
        assert r["annotations"]["description"], r["alert"]


def test_promtool_checks_the_config_and_it_scrapes_every_role(promtool: str) -> None:
    done = run(promtool, "check", "config", str(CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["rules.yml"]
    jobs = {s["job_name"] for s in config["scrape_configs"]}
    # The rules and dashboards select a role by job = its name.
    assert jobs == set(ROLES) | {"prometheus"}
    role_re = next(r for r in rules() if r["alert"] == "IotmonRoleDown")["expr"]
    for role in ROLES:
        assert role in role_re, f"IotmonRoleDown does not watch {role}"


def _board(path: Any) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_dashboards_are_an_overview_and_one_per_role() -> None:
    names = {p.stem for p in DASHBOARDS}
    assert names == {"overview", "web", "ingestion", "processing", "alerts", "mqtt"}
    boards = [_board(p) for p in DASHBOARDS]
    uids = [b["uid"] for b in boards]
    assert len(set(uids)) == len(uids)
    roles_shown = {
        v["query"]
        for b in boards
        for v in b["templating"]["list"]
        if v["type"] == "constant" and v["name"] == "role"
    }
    jobs_in_exprs = " ".join(q.promql for q in queries())
    for role in set(ROLES) - {"simulator"}:
        assert role in roles_shown or f'job="{role}"' in jobs_in_exprs, role


def test_dashboards_use_the_provisioned_datasource_and_do_not_overlap() -> None:
    ds = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    uid = ds["datasources"][0]["uid"]
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "iotmon.yml").read_text()
    )
    assert provider["providers"][0]["type"] == "file"
    for path in DASHBOARDS:
        board = _board(path)
        taken: set[tuple[int, int]] = set()
        ids = set()
        for p in panels(board):
            assert p["id"] not in ids, f"{path.name}: panel id {p['id']} twice"
            ids.add(p["id"])
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{path.name}: {p['title']} wider than the grid"
            cells = {(g["x"] + dx, g["y"] + dy) for dx in range(g["w"]) for dy in range(g["h"])}
            assert not cells & taken, f"{path.name}: {p['title']} overlaps another panel"
            taken |= cells
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == uid, f"{path.name}: {p['title']}"
            assert p["targets"], f"{path.name}: {p['title']} has no query"
            for t in p["targets"]:
                assert t["datasource"]["uid"] == uid


def test_every_dashboard_variable_is_substituted() -> None:
    qs = queries()
    assert len(qs) > 50
    for q in qs:
        assert "$" not in q.promql, q

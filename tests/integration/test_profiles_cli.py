"""``iotmon profiles ...`` on the real database: list, show (JSON that apply takes back), apply
(checked as the API checks, errors with the field path), assign, delete (refused while devices
use the profile), sensor-types."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from iotmon.cli import app
from tests.integration.helpers import query

AIR: dict[str, Any] = {
    "name": "air-quality",
    "description": "CO2 and humidity",
    "channels": [
        {
            "name": "co2",
            "topic": "air/{device}/telemetry",
            "path": "co2",
            "encoding": "json_number",
            "sensorType": "co2",
            "range": {"min": 0, "max": 5000},
            "unit": "ppm",
            "thresholds": {"normalMax": 1000, "alertMax": 2000},
        },
        {
            "name": "humidity",
            "topic": "air/{device}/telemetry",
            "path": "rh",
            "encoding": "json_number",
            "sensorType": "humidity",
            "unit": "percent",
        },
    ],
}


@pytest.fixture
def cli(database_url: str, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("IOTMON_DATABASE_URL", database_url)
    return CliRunner()


def write(tmp_path: Path, doc: Any, name: str = "profile.json") -> str:
    path = tmp_path / name
    path.write_bytes(doc if isinstance(doc, bytes) else orjson.dumps(doc))
    return str(path)


def test_profiles_are_managed_from_the_command_line(
    cli: CliRunner, database_url: str, tmp_path: Path
) -> None:
    listed = cli.invoke(app, ["profiles", "list"])
    assert listed.exit_code == 0, listed.output
    assert "f2-smart-controller" in listed.output
    assert "spec-quality" in listed.output

    # show prints JSON that apply takes back unchanged.
    shown = cli.invoke(app, ["profiles", "show", "spec-quality"])
    assert shown.exit_code == 0, shown.output
    doc = orjson.loads(shown.stdout)
    assert set(doc) == {"name", "description", "channels"}
    assert "device-005" in shown.stderr
    again = cli.invoke(app, ["profiles", "apply", write(tmp_path, doc)])
    assert again.exit_code == 0, again.output
    assert "profile spec-quality replaced" in again.output
    assert cli.invoke(app, ["profiles", "show", "nope"]).exit_code == 1

    made = cli.invoke(app, ["profiles", "apply", write(tmp_path, AIR)])
    assert made.exit_code == 0, made.output
    assert "profile air-quality created: 2 channel(s), sensor types co2, humidity" in made.output
    stored = query(database_url, "SELECT channels FROM device_profiles WHERE name = 'air-quality'")
    assert stored[0][0][0]["range"] == {"min": 0, "max": 5000}
    types = cli.invoke(app, ["profiles", "sensor-types"])
    assert types.exit_code == 0, types.output
    line = next(x for x in types.output.splitlines() if x.startswith("co2 "))
    assert "[0, 5000]" in line
    assert "declared" in line
    assert "air-quality" in line

    # Assigned, it cannot be deleted; detached, it can.
    assigned = cli.invoke(app, ["profiles", "assign", "air-001", "air-quality"])
    assert assigned.exit_code == 0, assigned.output
    assert query(database_url, "SELECT profile FROM devices WHERE device_id = 'air-001'") == [
        ("air-quality",)
    ]
    refused = cli.invoke(app, ["profiles", "delete", "air-quality"])
    assert refused.exit_code == 1
    assert "used by 1 device(s)" in refused.output
    assert cli.invoke(app, ["profiles", "assign", "air-001", "nope"]).exit_code == 1
    assert cli.invoke(app, ["profiles", "assign", "air-001"]).exit_code == 1  # nor --none
    detached = cli.invoke(app, ["profiles", "assign", "air-001", "--none"])
    assert detached.exit_code == 0, detached.output
    deleted = cli.invoke(app, ["profiles", "delete", "air-quality"])
    assert deleted.exit_code == 0, deleted.output
    assert query(
        database_url, "SELECT count(*) FROM device_profiles WHERE name = 'air-quality'"
    ) == [(0,)]
    assert cli.invoke(app, ["profiles", "delete", "air-quality"]).exit_code == 1


def test_apply_refuses_what_the_api_refuses_naming_the_field(
    cli: CliRunner, database_url: str, tmp_path: Path
) -> None:
    bad = orjson.loads(orjson.dumps(AIR))
    bad["channels"][0]["topic"] = "air/x/telemetry"
    del bad["channels"][1]["unit"]
    bad["colour"] = "red"
    got = cli.invoke(app, ["profiles", "apply", write(tmp_path, bad)])
    assert got.exit_code == 1
    assert "channels.0.topic: Value error, needs exactly one '{device}' level" in got.output
    assert "channels.1.unit: Field required" in got.output
    assert "colour: Extra inputs are not permitted" in got.output
    assert "3 problem(s), nothing applied" in got.output

    no_range = orjson.loads(orjson.dumps(AIR))
    del no_range["channels"][0]["range"]
    got = cli.invoke(app, ["profiles", "apply", write(tmp_path, no_range)])
    assert got.exit_code == 1
    assert "sensor type 'co2' is not built in" in got.output

    got = cli.invoke(app, ["profiles", "apply", write(tmp_path, b"{not json")])
    assert got.exit_code == 1
    assert "is not JSON" in got.output
    got = cli.invoke(app, ["profiles", "apply", str(tmp_path / "missing.json")])
    assert got.exit_code == 1
    assert "cannot read" in got.output

    # A range another profile gives the type otherwise: refused, naming that profile.
    assert cli.invoke(app, ["profiles", "apply", write(tmp_path, AIR)]).exit_code == 0
    other = orjson.loads(orjson.dumps(AIR))
    other["name"] = "air-2"
    other["channels"][0]["range"] = {"min": 0, "max": 10000}
    got = cli.invoke(app, ["profiles", "apply", write(tmp_path, other)])
    assert got.exit_code == 1
    assert "sensor type 'co2' has range [0, 5000] in profile 'air-quality'" in got.output
    assert query(database_url, "SELECT count(*) FROM device_profiles WHERE name = 'air-2'") == [
        (0,)
    ]
    # From stdin too.
    other["channels"][0]["range"] = {"min": 0, "max": 5000}
    got = cli.invoke(app, ["profiles", "apply", "-"], input=orjson.dumps(other).decode())
    assert got.exit_code == 0, got.output
    assert "profile air-2 created" in got.output

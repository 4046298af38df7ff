from __future__ import annotations

import pytest
from typer.testing import CliRunner

from iotmon.cli import app
from tests.integration.helpers import query


def test_an_operator_mutes_a_device_from_the_command_line(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IOTMON_DATABASE_URL", database_url)
    runner = CliRunner()
    made = runner.invoke(
        app,
        [
            "silence",
            "create",
            "--device",
            "device-002",
            "--for",
            "2h",
            "--reason",
            "pump swap",
            "--by",
            "olivia",
        ],
    )
    assert made.exit_code == 0, made.output
    rows = query(
        database_url,
        "SELECT device_id, alert_type, reason, created_by,"
        " round(extract(epoch FROM ends_at - now()))::int FROM silences",
    )
    assert len(rows) == 1
    device, alert_type, reason, by, seconds = rows[0]
    assert (device, alert_type, reason, by) == ("device-002", None, "pump swap", "olivia")
    assert 7190 <= seconds <= 7200
    listed = runner.invoke(app, ["silence", "list"])
    assert "device-002" in listed.output
    assert "pump swap" in listed.output
    bad = runner.invoke(app, ["silence", "create", "--type", "boil", "--for", "1h"])
    assert bad.exit_code == 1
    assert "unknown alert type 'boil'" in bad.output
    gone = runner.invoke(app, ["silence", "delete", "1"])
    assert gone.exit_code == 0, gone.output
    assert query(database_url, "SELECT count(*) FROM silences") == [(0,)]

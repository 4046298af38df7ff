from __future__ import annotations

import orjson
import pytest
from typer.testing import CliRunner

from iotmon.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("IOTMON_KAFKA_BOOTSTRAP", "IOTMON_DATABASE_URL", "IOTMON_REDIS_URL"):
        monkeypatch.delenv(key, raising=False)


def test_config_show_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTMON_DATABASE_URL", "postgresql://u:hunter2@db/iotmon")
    monkeypatch.setenv("IOTMON_SIMULATOR_DEVICES", "12")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    shown = orjson.loads(result.stdout)
    assert shown["database_url"] == "**********"
    assert "hunter2" not in result.output
    assert shown["simulator_devices"] == 12


def test_unknown_role_is_a_clear_error() -> None:
    result = runner.invoke(app, ["run", "nonsense"])
    assert result.exit_code == 1
    assert "unknown role 'nonsense'" in result.output
    assert "ingestion" in result.output


def test_a_role_alone_needs_kafka() -> None:
    result = runner.invoke(app, ["run", "ingestion"])
    assert result.exit_code == 1
    assert "IOTMON_KAFKA_BOOTSTRAP" in result.output


def test_bad_scenario_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTMON_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    result = runner.invoke(app, ["run", "simulator", "--scenario", "device-001:boil:10"])
    assert result.exit_code == 1
    assert "unknown scenario kind 'boil'" in result.output


def test_bad_setting_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTMON_SIMULATOR_RATE", "-1")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code != 0
    assert "simulator_rate" in str(result.exception) + result.output

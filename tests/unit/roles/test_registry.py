"""Every role imports, and every Kafka role declares what it reads, its group and its DLQ."""

from __future__ import annotations

import importlib

import pytest

from iotmon.bus import topic_specs
from iotmon.roles import ROLES

TOPICS = {s.name for s in topic_specs()}


@pytest.mark.parametrize("name", sorted(ROLES))
def test_role_module_imports_and_builds(name: str) -> None:
    definition = ROLES[name]
    assert definition.name == name
    module = importlib.import_module(definition.module)
    assert callable(module.build)
    assert definition.needs <= {"bus", "database", "redis"}


@pytest.mark.parametrize("name", sorted(ROLES))
def test_kafka_roles_declare_topics_group_and_dlq(name: str) -> None:
    definition = ROLES[name]
    assert set(definition.consumes) <= TOPICS
    assert set(definition.produces) <= TOPICS
    if definition.consumes:
        assert definition.group, f"{name} consumes without a consumer group"
        assert definition.dlq in TOPICS, f"{name} consumes without a dead-letter topic"


def test_ports_are_distinct() -> None:
    ports = [d.default_port for d in ROLES.values()]
    assert len(ports) == len(set(ports))

"""A private instance of the services per test module: these tests stop, kill and restart
PostgreSQL, Redis and Kafka, which must never happen to the shared ones of `scripts/infra.sh`."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.system import PrivateInfra


@pytest.fixture(scope="module")
def private_infra() -> Iterator[PrivateInfra]:
    # Not under pytest's tmp dir: that is 0700, and PostgreSQL runs as `postgres` when the
    # tests run as root (infra.sh would then put its data under /var/tmp instead).
    state = Path(tempfile.mkdtemp(prefix="iotmon-reliability-", dir="/tmp"))
    state.chmod(0o755)
    infra = PrivateInfra(state)
    try:
        infra.up()
        yield infra
    finally:
        infra.down()
        location = state / "pg-location"
        if location.exists():
            shutil.rmtree(Path(location.read_text().strip()).parent, ignore_errors=True)
        shutil.rmtree(state, ignore_errors=True)

"""The role supervisor: a role that raises is run again, the process keeps going."""

from __future__ import annotations

import asyncio

import pytest

from iotmon.roles import runtime
from iotmon.roles.runtime import ROLE_RESTARTS, supervise


class Flaky:
    """Raises on its first ``failures`` runs, then runs until told to stop."""

    def __init__(self, name: str, failures: int) -> None:
        self.name, self.failures, self.runs = name, failures, 0

    async def run(self, stop: asyncio.Event) -> None:
        self.runs += 1
        if self.runs <= self.failures:
            raise RuntimeError(f"bug #{self.runs}")
        await stop.wait()


async def test_a_crashing_role_is_run_again_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "ROLE_RESTART_MIN_S", 0.01)
    role = Flaky("flaky-test", failures=3)
    before = ROLE_RESTARTS.labels(role=role.name)._value.get()
    stop = asyncio.Event()
    task = asyncio.create_task(supervise(role, stop))
    for _ in range(200):
        if role.runs == 4:
            break
        await asyncio.sleep(0.01)
    assert role.runs == 4
    assert not task.done()
    stop.set()
    await asyncio.wait_for(task, 5)
    assert ROLE_RESTARTS.labels(role=role.name)._value.get() - before == 3


async def test_a_stopped_supervisor_does_not_restart(monkeypatch: pytest.MonkeyPatch) -> None:
    role = Flaky("flaky-stop", failures=100)
    stop = asyncio.Event()
    task = asyncio.create_task(supervise(role, stop))
    await asyncio.sleep(0.05)  # first run raised; now in its 1 s pause
    stop.set()
    await asyncio.wait_for(task, 5)
    assert role.runs == 1

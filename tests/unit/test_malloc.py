"""malloc tuning (iotmon/malloc.py): applied at start where malloc is glibc's, left to the
operator when MALLOC_ARENA_MAX is set, and never an error."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from iotmon import malloc

PROBE = "from iotmon import malloc; print(malloc.tune_malloc()); malloc.release_memory()"
GLIBC = platform.libc_ver()[0] == "glibc"


def _probe(**env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=base | env, capture_output=True, text=True, check=True
    )
    return out.stdout.strip()


@pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")
def test_arenas_are_limited_at_start_on_glibc() -> None:
    assert _probe() == "True"


def test_the_operators_malloc_arena_max_wins() -> None:
    assert _probe(MALLOC_ARENA_MAX="8") == "False"


def test_the_iotmon_command_enters_through_main() -> None:
    # cli.main tunes malloc before the app starts a thread; `python -m iotmon` calls it too
    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "iotmon"]
    assert script.value == "iotmon.cli:main"


def test_release_memory_is_harmless_anywhere() -> None:
    malloc.release_memory()
    malloc.release_memory()

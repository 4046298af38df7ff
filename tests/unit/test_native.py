"""The statistics engine compiled with mypyc, and its pure-Python fallback (iotmon/native.py).

``make setup`` compiles it; on a machine that can (a C compiler and Python's headers, as here
and in CI) the test process must be running the compiled modules. The same unit tests of the
engine also run on the pure-Python path, in a child process with IOTMON_NATIVE=0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import iotmon.stats.processor
import iotmon.stats.windows
from iotmon import native

ROOT = Path(__file__).resolve().parents[2]


def test_compiled_engine_in_use_where_it_can_be_built() -> None:
    why_not = native.missing_prerequisites()
    if why_not is not None:
        pytest.skip(f"this machine cannot compile: {why_not}")
    st = native.status()
    assert st.compiled, f"{st.reason} (make setup builds it: `iotmon native build`)"
    for module in (iotmon.stats.windows, iotmon.stats.processor):
        assert module.__file__ is not None
        assert module.__file__.endswith(native.ext_suffix()), module.__file__
    assert set(st.modules) == set(native.MODULES)


def _copy_build(tmp_path: Path) -> Path:
    if not native.check().compiled:
        pytest.skip("no compiled build to copy")
    target = tmp_path / "_native"
    shutil.copytree(native.NATIVE_DIR, target)
    return target


def test_an_edited_source_falls_back_to_pure_python(tmp_path: Path) -> None:
    build = _copy_build(tmp_path)
    assert native.check(build).compiled
    manifest = json.loads((build / native.MANIFEST).read_text())
    manifest["sources"]["iotmon.stats.windows"] = "0" * 64  # as if windows.py changed since
    (build / native.MANIFEST).write_text(json.dumps(manifest))
    st = native.check(build)
    assert not st.compiled
    assert "iotmon.stats.windows changed since compiled" in st.reason


def test_a_build_for_another_python_or_incomplete_is_not_used(tmp_path: Path) -> None:
    build = _copy_build(tmp_path)
    manifest = json.loads((build / native.MANIFEST).read_text())
    (build / native.MANIFEST).write_text(json.dumps({**manifest, "ext_suffix": ".cpython-39.so"}))
    assert "compiled for .cpython-39.so" in native.check(build).reason
    (build / native.MANIFEST).write_text(json.dumps(manifest))
    next(build.rglob(f"windows{native.ext_suffix()}")).unlink()
    assert "incomplete" in native.check(build).reason
    (build / native.MANIFEST).write_text("{not json")
    assert "unreadable" in native.check(build).reason
    assert "not compiled" in native.check(tmp_path / "nothing").reason


def test_a_build_that_does_not_load_is_not_used(tmp_path: Path) -> None:
    """A compiled library the loader refuses (a damaged file, a libc it was not built for):
    the finder is taken out again and the engine runs as Python."""
    build = _copy_build(tmp_path)
    next(build.glob(f"{native.GROUP}__mypyc*")).write_bytes(b"\x7fELF not really")
    code = (
        "import os, sys; os.environ['IOTMON_NATIVE'] = '0'; import iotmon;"
        "from pathlib import Path; from iotmon import native; del os.environ['IOTMON_NATIVE'];"
        "st = native.activate(Path(sys.argv[1])); import iotmon.stats.windows as w;"
        "print(st.compiled, w.__file__.endswith('.py')); print(st.reason)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(build)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "False True", out
    assert out[1].startswith("pure Python: the build does not load"), out


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IOTMON_NATIVE", "0")
    assert native.check().reason == "pure Python: IOTMON_NATIVE=0"


def test_the_engine_tests_pass_in_pure_python() -> None:
    """The fallback is not a second-class path: the engine's own tests pass on it."""
    env = {**os.environ, "IOTMON_NATIVE": "0"}
    which = subprocess.run(
        [
            sys.executable,
            "-c",
            "import iotmon.stats.windows as w, iotmon.native as n;"
            "print(w.__file__); print(n.status().reason)",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert which.stdout.splitlines() == [
        str(native.source_of("iotmon.stats.windows")),
        "pure Python: IOTMON_NATIVE=0",
    ]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/unit/stats"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]

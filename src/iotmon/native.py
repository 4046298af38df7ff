"""The live-statistics engine compiled to C with mypyc, when this machine can; pure Python when not.

The modules in ``MODULES`` (the windows, sketch, trend, anomaly score and the processor: where
the processing role spends most of its time per reading) are plain typed Python. ``build()``
compiles them with mypyc (part of mypy) and a C compiler into ``src/iotmon/_native/``, with a
manifest of the sources' hashes. ``activate()``, called when ``iotmon`` is imported, puts an
import finder in front that loads the compiled modules, but only when every source still has
the hash it was compiled from and the build is for this Python: otherwise (never built, no
compiler, a source edited since, ``IOTMON_NATIVE=0``) the ``.py`` files are imported as always.
The two paths compute the same thing (tests/unit/stats runs on both); the compiled one is about
2.7 times faster per reading (BENCHMARKS.md, processing).

``make setup`` / ``make setup-run`` build it (``iotmon native build``, a few seconds when up to
date, ~20 s when not); ``iotmon native status`` says which path is in use, and so do
``iotmon up``'s banner and the processing role's first log event.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent
NATIVE_DIR = PACKAGE_DIR / "_native"
MANIFEST = "manifest.json"
GROUP = "iotmon_native"  # the name of the shared library the compiled modules load
MODULES = (
    "iotmon.stats.sketch",
    "iotmon.stats.trend",
    "iotmon.stats.anomaly",
    "iotmon.stats.windows",
    "iotmon.stats.processor",
)
_OFF = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Status:
    compiled: bool
    reason: str
    modules: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"compiled": self.compiled, "reason": self.reason, "modules": list(self.modules)}


_status = Status(False, "not activated")


def source_of(module: str) -> Path:
    return PACKAGE_DIR.parent.joinpath(*module.split(".")).with_suffix(".py")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def ext_suffix() -> str:
    return str(sysconfig.get_config_var("EXT_SUFFIX") or ".so")


def check(native_dir: Path = NATIVE_DIR, *, honour_env: bool = True) -> Status:
    """Whether the build in ``native_dir`` can be used by this interpreter with these sources
    (and, with ``honour_env``, is not switched off by IOTMON_NATIVE)."""
    if honour_env and os.environ.get("IOTMON_NATIVE", "1").strip().lower() in _OFF:
        return Status(False, "pure Python: IOTMON_NATIVE=0")
    try:
        manifest = json.loads((native_dir / MANIFEST).read_text())
    except FileNotFoundError:
        return Status(False, "pure Python: not compiled (`iotmon native build`)")
    except (OSError, ValueError) as exc:
        return Status(False, f"pure Python: unreadable build manifest ({exc})")
    if manifest.get("ext_suffix") != ext_suffix():
        return Status(
            False,
            f"pure Python: compiled for {manifest.get('ext_suffix')}, this Python is "
            f"{ext_suffix()} (`iotmon native build`)",
        )
    sources: dict[str, str] = manifest.get("sources", {})
    if set(sources) != set(MODULES):
        return Status(False, "pure Python: compiled for other modules (`iotmon native build`)")
    changed = [m for m, sha in sources.items() if _sha256(source_of(m)) != sha]
    if changed:
        return Status(
            False,
            f"pure Python: {', '.join(changed)} changed since compiled (`iotmon native build`)",
        )
    files = {name: str(native_dir / rel) for name, rel in manifest.get("files", {}).items()}
    missing = [f for f in files.values() if not Path(f).is_file()]
    if missing or not set(MODULES) <= set(files):
        return Status(False, "pure Python: the build is incomplete (`iotmon native build`)")
    return Status(True, f"compiled with mypyc {manifest.get('mypy', '?')}", MODULES, files)


class _Finder(importlib.abc.MetaPathFinder):
    """Finds the compiled modules (and their shared library) in the native build."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def find_spec(
        self, fullname: str, path: Any = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


def activate(native_dir: Path = NATIVE_DIR) -> Status:
    """Load the compiled modules from now on, if the build is usable (see ``check``). Called
    once, when ``iotmon`` is imported and before any of them is."""
    global _status
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return _status
    _status = check(native_dir)
    loaded = [m for m in MODULES if m in sys.modules]
    if _status.compiled and loaded:  # too late to swap (cannot happen via iotmon/__init__)
        _status = Status(False, f"pure Python: {', '.join(loaded)} imported before activation")
    if _status.compiled:
        finder = _Finder(_status.files)
        sys.meta_path.insert(0, finder)
        try:  # the shared library every compiled module loads: if it cannot be, none is used
            importlib.import_module(f"{GROUP}__mypyc")
        except Exception as exc:
            sys.meta_path.remove(finder)
            sys.modules.pop(f"{GROUP}__mypyc", None)
            _status = Status(False, f"pure Python: the build does not load ({exc})"[:300])
    return _status


def status() -> Status:
    """The path in use: compiled or pure Python, and why."""
    return _status


# --- building -------------------------------------------------------------------------------

_BUILD = """
import sys
from setuptools import setup
from mypyc.build import mypycify

lib, temp, group, *paths = sys.argv[1:]
setup(
    name="iotmon-native",
    ext_modules=mypycify(paths, opt_level="3", group_name=group),
    script_args=["build_ext", "--build-lib", lib, "--build-temp", temp],
)
"""


def missing_prerequisites() -> str | None:
    """Why this machine cannot compile (None when it can)."""
    for needed in ("mypyc", "setuptools"):
        if importlib.util.find_spec(needed) is None:
            return f"{needed} is not installed (uv sync --group native)"
    cc = str(sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    include = Path(sysconfig.get_paths()["include"])
    if not (include / "Python.h").is_file():
        return f"no Python headers ({include}/Python.h; Debian: python3-dev)"
    return None


def _expected() -> dict[str, str]:
    return {m: _sha256(source_of(m)) for m in MODULES}


def up_to_date(native_dir: Path = NATIVE_DIR) -> bool:
    return check(native_dir, honour_env=False).compiled


def build(native_dir: Path = NATIVE_DIR, *, force: bool = False, log: Any = print) -> bool:
    """Compile ``MODULES`` into ``native_dir`` (nothing to do when it is up to date). True when
    a usable build is there afterwards; False (after saying why) when this machine cannot
    compile, in which case everything runs as pure Python."""
    if not force and up_to_date(native_dir):
        log(f"native: up to date ({native_dir})")
        return True
    why = missing_prerequisites()
    if why is not None:
        log(f"native: not compiled, running pure Python: {why}")
        return False
    from mypy.version import __version__ as mypy_version

    began = time.monotonic()
    log(f"native: compiling {len(MODULES)} modules with mypyc {mypy_version} (about 20 s) ...")
    with tempfile.TemporaryDirectory(prefix="iotmon-native-") as tmp:
        work = Path(tmp)
        paths = [str(source_of(m)) for m in MODULES]
        sources = _expected()  # hashed before compiling: an edit meanwhile shows
        logfile = work / "build.log"
        with logfile.open("wb") as out:
            proc = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    _BUILD,
                    str(work / "lib"),
                    str(work / "temp"),
                    GROUP,
                    *paths,
                ],
                cwd=work,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "IOTMON_NATIVE": "0"},
                check=False,
            )
        if proc.returncode != 0:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-15:]
            log("native: mypyc failed, running pure Python:\n  " + "\n  ".join(tail))
            return False
        suffix = ext_suffix()
        files: dict[str, str] = {}
        try:
            staged = Path(tempfile.mkdtemp(prefix="_native.", dir=native_dir.parent))
        except OSError as exc:
            log(f"native: cannot write {native_dir.parent} ({exc}), running pure Python")
            return False
        for name in (*MODULES, f"{GROUP}__mypyc"):
            rel = Path(*name.split(".")).with_suffix("").as_posix() + suffix
            built = work / "lib" / rel
            if not built.is_file():
                shutil.rmtree(staged, ignore_errors=True)
                log(f"native: mypyc did not produce {rel}, running pure Python")
                return False
            (staged / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(built, staged / rel)
            files[name] = rel
        (staged / MANIFEST).write_text(
            json.dumps(
                {
                    "ext_suffix": suffix,
                    "mypy": mypy_version,
                    "sources": sources,
                    "files": files,
                    "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                },
                indent=2,
            )
            + "\n"
        )
        # Swap in whole: a running process keeps the files it loaded (they are unlinked,
        # not overwritten).
        old = native_dir.with_name(native_dir.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if native_dir.exists():
            native_dir.rename(old)
        staged.rename(native_dir)
        shutil.rmtree(old, ignore_errors=True)
    log(f"native: compiled in {time.monotonic() - began:.0f} s ({native_dir})")
    return up_to_date(native_dir)

#!/usr/bin/env bash
# Print the path of a working `uv`, installing it from PyPI first when the machine has none.
# Needs only python3. Used by the Makefile; safe to run again.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$REPO/var/tools"

if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
if [ -x "$TOOLS/uv-venv/bin/uv" ]; then echo "$TOOLS/uv-venv/bin/uv"; exit 0; fi

PY="$(command -v python3 || true)"
if [ -z "$PY" ]; then
  echo "error: python3 is needed to install uv (apt-get install python3)" >&2
  exit 1
fi
echo "[bootstrap] installing uv into $TOOLS/uv-venv ..." >&2
mkdir -p "$TOOLS"
if ! "$PY" -m venv "$TOOLS/uv-venv" >/dev/null 2>&1; then
  # Debian's python3 without python3-venv: fall back to a user install.
  rm -rf "$TOOLS/uv-venv"
  "$PY" -m pip install --user --quiet uv >&2 || "$PY" -m pip install --user --quiet --break-system-packages uv >&2
  if command -v uv >/dev/null 2>&1; then command -v uv; exit 0; fi
  echo "$HOME/.local/bin/uv"; exit 0
fi
"$TOOLS/uv-venv/bin/python" -m pip install --quiet --disable-pip-version-check uv >&2
echo "$TOOLS/uv-venv/bin/uv"

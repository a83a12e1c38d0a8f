#!/usr/bin/env bash
# Create .venv and install nowcast with everything it needs, offline-friendly:
# torch first from its pinned CPU build (a plain `torch` would pull a multi-GB
# CUDA build), then the package with its extras. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${NOWCAST_VENV:-.venv}"
EXTRAS="${1:-test}"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    "$VENV/bin/python" -m pip install --quiet torch==2.13.0
fi
"$VENV/bin/python" -m pip install --quiet -e ".[${EXTRAS}]"
echo "nowcast installed in $VENV" >&2

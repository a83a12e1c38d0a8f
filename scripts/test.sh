#!/usr/bin/env bash
# Install (if needed) and run the test suite; extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
VENV="${NOWCAST_VENV:-.venv}"
exec "$VENV/bin/python" -m pytest "$@"

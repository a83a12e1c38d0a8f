#!/usr/bin/env bash
# Install (if needed) and run the main job end to end on the default region:
# ingest the embedded sample radar frames, forecast, verify and render.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh all
VENV="${NOWCAST_VENV:-.venv}"
exec "$VENV/bin/nowcast" demo "$@"

#!/usr/bin/env bash
# The hybrid demo pipeline on the embedded defaults (ephemeral Prefect, local engines).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}/env.sh"
cd "$ROOT/examples/demo"
exec ansflow run pipeline.yaml "$@"

#!/usr/bin/env bash
# The hybrid demo pipeline on the embedded defaults: ephemeral Prefect, the local Docker
# engine and registry that the set-up started, and the local dev cluster (saved as the
# cluster block `local`).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}/env.sh"
unset PREFECT_API_URL  # the demo runs on Prefect's ephemeral server
ansflow dev-cluster up --name local
cd "$ROOT/examples/demo"
exec ansflow run pipeline.yaml --var "registry=${ANSFLOW_TEST_REGISTRY:-}" "$@"

#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (packages, venv, binaries, services), then pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}/env.sh"
cd "$ROOT"
exec python -m pytest "$@"

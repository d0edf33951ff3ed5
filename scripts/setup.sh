#!/usr/bin/env bash
# One-shot set-up of a fresh machine (idempotent; cheap when everything is already there):
# Debian packages, the Python venv from the lock file, the dev-cluster binaries, and the
# services the tests and the demo use. Every piece lives in scripts/setup.d/, run in order.
# Prints `export` lines for the environment it prepared to scripts/.env (sourced by callers).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export ANSFLOW_CACHE_DIR="${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}"
export VENV="$ANSFLOW_CACHE_DIR/venv"
export ANSFLOW_ENV_FILE="$ANSFLOW_CACHE_DIR/env.sh"
mkdir -p "$ANSFLOW_CACHE_DIR"
: > "$ANSFLOW_ENV_FILE"
for part in "$ROOT"/scripts/setup.d/*.sh; do
  echo "== setup: $(basename "$part")" >&2
  # shellcheck source=/dev/null
  source "$part"
done

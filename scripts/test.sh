#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (packages, venv, binaries, services), then
# pytest; then, for a full run (no arguments), the server tests again on PostgreSQL (the
# Prefect server's database and ansflow's store), the set-up's private cluster.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}/env.sh"
cd "$ROOT"
if [ $# -gt 0 ] || [ -z "${ANSFLOW_POSTGRES_URL:-}" ]; then
  exec python -m pytest "$@"
fi
python -m pytest --durations=25
echo "== second pass: server tests on PostgreSQL" >&2
# Fresh databases for the pass, so its results do not depend on an earlier run.
python - <<'EOF'
import os

import psycopg2

conn = psycopg2.connect(os.environ["ANSFLOW_POSTGRES_URL"] + "/postgres")
conn.autocommit = True
with conn.cursor() as cur:
    for db in ("ansflow_test", "prefect_test"):
        cur.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        cur.execute(f"CREATE DATABASE {db}")
conn.close()
EOF
export ANSFLOW_TEST_DATABASE_URL="${ANSFLOW_POSTGRES_URL/postgresql:/postgresql+psycopg2:}/ansflow_test"
if python -c "import asyncpg" 2>/dev/null; then
  export ANSFLOW_TEST_PREFECT_DATABASE_URL="${ANSFLOW_POSTGRES_URL/postgresql:/postgresql+asyncpg:}/prefect_test"
else
  # Prefect's server needs the asyncpg driver for PostgreSQL; without it only the store
  # moves to PostgreSQL and the server stays on SQLite (said loudly, not hidden).
  echo "warning: asyncpg is not installed: the Prefect server stays on SQLite in this pass" >&2
  pg_pass_tmp="$(mktemp -d)"
  trap 'rm -rf "$pg_pass_tmp"' EXIT
  export ANSFLOW_TEST_PREFECT_DATABASE_URL="sqlite+aiosqlite:///$pg_pass_tmp/prefect.db"
fi
python -m pytest -m "server and not docker and not k8s" -k "not sigkill and not run_form"

#!/usr/bin/env bash
# The whole test suite on a fresh machine: set-up (packages, venv, binaries, services), then
# pytest; then, for a full run (no arguments), the tests marked `postgres` again on PostgreSQL
# (the Prefect server's database and ansflow's store), the set-up's private cluster.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
# shellcheck source=/dev/null
source "${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}/env.sh"
cd "$ROOT"
if [ $# -gt 0 ] || [ -z "${ANSFLOW_POSTGRES_URL:-}" ]; then
  exec python -m pytest "$@"
fi
# Two workers (pytest-xdist), whole files per worker (tests/conftest.py groups them; the
# tests of the shared sshd on one worker): most tests wait on servers, clusters
# and engines, so two in flight use the two cores better. Each worker has its own Prefect
# server, homes and dev cluster (tests/conftest.py); they share the Docker engine.
python -m pytest -n "${ANSFLOW_TEST_WORKERS:-2}" --dist loadgroup --durations=25
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
# Only the tests marked `postgres`: the shared store's build numbers under concurrency, runs
# across two serve processes, a served run's events and parameters on the server's database.
python -m pytest -m postgres --durations=10

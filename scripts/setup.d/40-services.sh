# Services for the deployment tests: Debian's chromium (the Prefect UI test, with a CJK font
# for the demo's step names) and a private
# PostgreSQL on a loopback port (the second test pass: Prefect's database and ansflow's store).
# Idempotent: an initialised cluster is reused, a running one is left running.
need_apt chromium postgresql fonts-dejavu-core fonts-wqy-microhei  # CJK step names in the UI

pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
pg_state="$ANSFLOW_CACHE_DIR/postgres"
mkdir -p "$pg_state"
if [ "$(id -u)" = 0 ]; then
  pg_run() { runuser -u postgres -- "$@"; }
  # The server runs as `postgres`, which cannot enter a private home (/root is 0700).
  if runuser -u postgres -- test -x "$pg_state"; then pg_data="$pg_state/data"
  else pg_data="/var/lib/postgresql/ansflow/data"; fi
else
  pg_run() { "$@"; }
  pg_data="$pg_state/data"
fi
pg_sock="$(dirname "$pg_data")/run"

pg_port_free() {  # pg_port_free PORT: nothing listens on 127.0.0.1:PORT
  ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

if [ ! -s "$pg_state/password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$pg_state/password")
fi
pg_password="$(cat "$pg_state/password")"

if [ ! -f "$pg_data/PG_VERSION" ]; then
  echo "initialising PostgreSQL in $pg_data" >&2
  mkdir -p "$pg_data" "$pg_sock"
  [ "$(id -u)" = 0 ] && chown -R postgres:postgres "$(dirname "$pg_data")"
  pwfile="$(dirname "$pg_data")/.pw"
  (umask 077; echo "$pg_password" > "$pwfile")
  [ "$(id -u)" = 0 ] && chown postgres "$pwfile"
  pg_run "$pg_bin/initdb" -D "$pg_data" -U ansflow --pwfile="$pwfile" \
    --auth-host=scram-sha-256 --auth-local=trust -E UTF8 >/dev/null
  rm -f "$pwfile"
fi

if ! pg_run "$pg_bin/pg_ctl" -D "$pg_data" status >/dev/null 2>&1; then
  pg_port="$(cat "$pg_state/port" 2>/dev/null || true)"
  if [ -z "$pg_port" ] || ! pg_port_free "$pg_port"; then
    pg_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  fi
  echo "$pg_port" > "$pg_state/port"
  mkdir -p "$pg_sock"
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$pg_sock"
  pg_run "$pg_bin/pg_ctl" -D "$pg_data" -l "$(dirname "$pg_data")/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $pg_port -k $pg_sock -c max_connections=300" \
    start >&2
fi
pg_port="$(cat "$pg_state/port")"
for db in ansflow_test prefect_test; do
  if ! pg_run "$pg_bin/psql" -h "$pg_sock" -p "$pg_port" -U ansflow -d postgres -tAc \
      "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1; then
    pg_run "$pg_bin/createdb" -h "$pg_sock" -p "$pg_port" -U ansflow "$db"
  fi
done
# Not ANSFLOW_TEST_DATABASE_URL: that switches a test run to PostgreSQL (scripts/test.sh
# sets it for the second pass only).
echo "export ANSFLOW_POSTGRES_URL=\"postgresql://ansflow:$pg_password@127.0.0.1:$pg_port\"" \
  >> "$ANSFLOW_ENV_FILE"
echo "export ANSFLOW_POSTGRES_DIR=\"$pg_data\"" >> "$ANSFLOW_ENV_FILE"

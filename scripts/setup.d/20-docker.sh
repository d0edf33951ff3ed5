# Docker: the engine and two local registries for the tests and the demo (sourced by setup.sh).
#
# - Uses the engine in DOCKER_HOST, or the one on the default socket, when it answers.
#   Otherwise starts dockerd as root on a private socket, with its own data-root, exec-root,
#   pidfile and containerd namespace under $ANSFLOW_CACHE_DIR/docker/ (a user's engine, if
#   one is installed later, is not clobbered).
# - Starts an anonymous registry and an htpasswd (bcrypt) registry on free 127.0.0.1 ports.
# - Idempotent: a second run re-uses the running daemon and registries.
# - Appends DOCKER_HOST, ANSFLOW_TEST_REGISTRY, ANSFLOW_TEST_AUTH_REGISTRY,
#   ANSFLOW_TEST_REGISTRY_USER and ANSFLOW_TEST_REGISTRY_PASSWORD to $ANSFLOW_ENV_FILE.
# Stop everything with: scripts/docker-services.sh stop
# shellcheck shell=bash

need_apt docker.io docker-registry apache2-utils busybox-static

_dk_state="$ANSFLOW_CACHE_DIR/docker"
mkdir -p "$_dk_state"

_dk_ping() {  # _dk_ping HOST: does a Docker engine answer there?
  DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

_dk_port_answers() {  # _dk_port_answers PORT: does an HTTP registry answer on 127.0.0.1:PORT?
  "$VENV/bin/python" - "$1" <<'EOF' >/dev/null 2>&1
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v2/", timeout=3)
except urllib.error.HTTPError as exc:  # 401 from the auth registry: it answers
    sys.exit(0 if exc.code == 401 else 1)
except OSError:
    sys.exit(1)
EOF
}

_dk_free_port() {  # _dk_free_port [PREFERRED]: PREFERRED when it is free, else any free port
  "$VENV/bin/python" - "${1:-0}" <<'PY'
import socket, sys
for port in (int(sys.argv[1]), 0):
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the registry does
            s.bind(("127.0.0.1", port))
            print(s.getsockname()[1])
            break
    except OSError:
        continue
PY
}

_dk_alive() {  # _dk_alive PIDFILE
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

_dk_engine() {
  local private="unix://$_dk_state/docker.sock"
  if [ -n "${DOCKER_HOST:-}" ] && _dk_ping "$DOCKER_HOST"; then
    echo "docker: using the engine at DOCKER_HOST=$DOCKER_HOST" >&2
    return 0
  fi
  if _dk_ping "$private"; then
    export DOCKER_HOST="$private"
    echo "docker: re-using the private engine at $DOCKER_HOST" >&2
    return 0
  fi
  if [ -S /var/run/docker.sock ] && _dk_ping unix:///var/run/docker.sock; then
    export DOCKER_HOST=unix:///var/run/docker.sock
    echo "docker: using the engine at $DOCKER_HOST" >&2
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "docker: no engine answers and starting one needs root; start dockerd yourself" \
         "and export DOCKER_HOST" >&2
    return 1
  fi
  _dk_alive "$_dk_state/docker.pid" && kill "$(cat "$_dk_state/docker.pid")" 2>/dev/null
  rm -f "$_dk_state/docker.sock"
  mkdir -p "$_dk_state/data" "$_dk_state/exec"
  echo "docker: starting dockerd on $private (log: $_dk_state/dockerd.log)" >&2
  setsid dockerd \
    -H "$private" \
    --data-root "$_dk_state/data" \
    --exec-root "$_dk_state/exec" \
    --pidfile "$_dk_state/docker.pid" \
    --containerd-namespace ansflow \
    --containerd-plugins-namespace ansflow-plugins \
    </dev/null >"$_dk_state/dockerd.log" 2>&1 &
  local i
  for i in $(seq 1 60); do
    if _dk_ping "$private"; then
      export DOCKER_HOST="$private"
      return 0
    fi
    sleep 0.5
  done
  echo "docker: dockerd did not answer within 30 s; last lines of its log:" >&2
  tail -20 "$_dk_state/dockerd.log" >&2
  return 1
}

_dk_registry() {  # _dk_registry NAME [htpasswd-file]: start (or re-use) a registry; prints its port
  local name="$1" htpasswd="${2:-}" dir="$_dk_state/$1"
  mkdir -p "$dir/storage"
  if _dk_alive "$dir/pid" && [ -f "$dir/port" ] && _dk_port_answers "$(cat "$dir/port")"; then
    cat "$dir/port"
    return 0
  fi
  _dk_alive "$dir/pid" && kill "$(cat "$dir/pid")" 2>/dev/null
  local port
  # The port of last time when it is free, so addresses stay stable across restarts.
  port=$(_dk_free_port "$(cat "$dir/port" 2>/dev/null || echo 0)")
  {
    echo "version: 0.1"
    echo "log: {level: warn}"
    echo "storage:"
    echo "  filesystem: {rootdirectory: $dir/storage}"
    echo "  delete: {enabled: true}"
    echo "http: {addr: 127.0.0.1:$port}"
    if [ -n "$htpasswd" ]; then
      echo "auth:"
      echo "  htpasswd: {realm: ansflow-test, path: $htpasswd}"
    fi
  } >"$dir/config.yml"
  setsid docker-registry serve "$dir/config.yml" </dev/null >"$dir/registry.log" 2>&1 &
  echo $! >"$dir/pid"
  echo "$port" >"$dir/port"
  local i
  for i in $(seq 1 40); do
    _dk_port_answers "$port" && { echo "$port"; return 0; }
    sleep 0.25
  done
  echo "docker: registry $name did not start; its log:" >&2
  tail -20 "$dir/registry.log" >&2
  return 1
}

_dk_setup() {
  _dk_engine || return 1
  local user=ansflow password anon_port auth_port
  if [ ! -s "$_dk_state/registry-password" ]; then
    (umask 077; "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))' \
      >"$_dk_state/registry-password")
  fi
  password=$(cat "$_dk_state/registry-password")
  if [ ! -s "$_dk_state/htpasswd" ]; then
    (umask 077; htpasswd -B -b -c "$_dk_state/htpasswd" "$user" "$password" 2>/dev/null)
  fi
  anon_port=$(_dk_registry registry-anon) || return 1
  auth_port=$(_dk_registry registry-auth "$_dk_state/htpasswd") || return 1
  echo "docker: registries on 127.0.0.1:$anon_port (anonymous), 127.0.0.1:$auth_port (auth)" >&2
  {
    echo "export DOCKER_HOST=\"$DOCKER_HOST\""
    echo "export ANSFLOW_TEST_REGISTRY=127.0.0.1:$anon_port"
    echo "export ANSFLOW_TEST_AUTH_REGISTRY=127.0.0.1:$auth_port"
    echo "export ANSFLOW_TEST_REGISTRY_USER=$user"
    echo "export ANSFLOW_TEST_REGISTRY_PASSWORD=\"\$(cat '$_dk_state/registry-password')\""
  } >>"$ANSFLOW_ENV_FILE"
}

_dk_setup

#!/usr/bin/env bash
# The Docker engine and test registries on their own, without the rest of setup.sh.
#   scripts/docker-services.sh start   start (or re-use) them; print their `export` lines
#   scripts/docker-services.sh stop    stop the private dockerd and the registries it started
#   scripts/docker-services.sh status  show what runs
# State lives in $ANSFLOW_CACHE_DIR/docker (default ~/.cache/ansflow/docker).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ANSFLOW_CACHE_DIR="${ANSFLOW_CACHE_DIR:-$HOME/.cache/ansflow}"
export VENV="${VENV:-$ANSFLOW_CACHE_DIR/venv}"
[ -x "$VENV/bin/python" ] || VENV="$(dirname "$(dirname "$(command -v python3)")")"
state="$ANSFLOW_CACHE_DIR/docker"

need_apt() {  # same contract as setup.sh's: install what is missing
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >&2
  fi
}

stop_pidfile() {  # stop_pidfile FILE NAME
  if [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; then
    echo "stopping $2 (pid $(cat "$1"))" >&2
    kill "$(cat "$1")"
  fi
}

case "${1:-start}" in
  start)
    ANSFLOW_ENV_FILE="$(mktemp)"
    export ANSFLOW_ENV_FILE
    # shellcheck source=/dev/null
    source "$ROOT/scripts/setup.d/20-docker.sh"
    cat "$ANSFLOW_ENV_FILE"
    rm -f "$ANSFLOW_ENV_FILE"
    ;;
  stop)
    stop_pidfile "$state/registry-anon/pid" "anonymous registry"
    stop_pidfile "$state/registry-auth/pid" "auth registry"
    stop_pidfile "$state/docker.pid" "private dockerd"
    ;;
  status)
    for f in registry-anon/pid registry-auth/pid docker.pid; do
      if [ -f "$state/$f" ] && kill -0 "$(cat "$state/$f")" 2>/dev/null; then
        echo "$f: running (pid $(cat "$state/$f"))"
      else
        echo "$f: not running"
      fi
    done
    ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
